import type { Command } from 'commander'
import { UsageError } from '../../errors.js'
import { parseDuration } from '../../network/invite-token.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

export interface InviteAnswer {
  token: string
  /** ms since the epoch; null: never */
  expires: number | null
  addrs: string[]
}

export function registerInvite (program: Command): void {
  clientOptions(program.command('invite'))
    .description('print a token that lets one more node join this node\'s private swarm: krill daemon --join TOKEN')
    .option('--expires <duration>', 'refuse the token after this long, e.g. 30m, 1h, 7d (default: never)')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      let expiresInMs: number | undefined
      if (opts.expires != null) {
        expiresInMs = parseDuration(String(opts.expires))
        if (expiresInMs == null) throw new UsageError(`--expires "${String(opts.expires)}" is not a duration; examples: 90s, 30m, 1h, 7d`)
      }
      const answer = await getJson<InviteAnswer>(apiBase(opts.api), '/krill/v1/invite', { body: expiresInMs != null ? { expiresInMs } : {} })
      if (opts.json === true) {
        printJson({ token: answer.token, expires: answer.expires })
        return
      }
      process.stdout.write(`${answer.token}\n`)
      const until = answer.expires != null ? `until ${new Date(answer.expires).toISOString()}` : 'with no expiry'
      process.stderr.write(`valid ${until}; on the new node run: krill daemon --join <token>\n` +
        'anyone holding it can join your swarm and use its Ollama: send it only to people you trust\n')
    })
}
