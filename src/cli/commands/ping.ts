import type { Command } from 'commander'
import { apiBase, getJson } from '../api-client.js'
import { formatMs, printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

export function registerPing (program: Command): void {
  clientOptions(program.command('ping'))
    .description('round-trip time to a peer')
    .argument('<peer>', 'peer id (12D3KooW…), as `krill peers --wide` shows it')
    .action(async (peer: string, _opts, command: Command) => {
      const opts = cliOptions(command)
      const answer = await getJson<{ peerId: string, rttMs: number }>(apiBase(opts.api), `/krill/v1/ping/${encodeURIComponent(peer)}`, { method: 'POST' })
      if (opts.json === true) printJson(answer)
      else process.stdout.write(`pong from ${answer.peerId}: ${formatMs(answer.rttMs)}\n`)
    })
}
