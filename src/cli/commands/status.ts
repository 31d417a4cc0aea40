import type { Command } from 'commander'
import { apiBase, getJson } from '../api-client.js'
import { formatDuration, printJson } from '../output.js'
import { cliOptions } from '../options.js'

export function registerStatus (program: Command): void {
  program.command('status')
    .description('node health: peer id, uptime, connections, Ollama, served models, active requests')
    .option('--api <host:port>', 'daemon API address (env KRILL_API)')
    .option('--json', 'machine-readable output')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const status = await getJson<Record<string, any>>(apiBase(opts.api), '/krill/v1/status')
      if (opts.json === true) {
        printJson(status)
        return
      }
      const lines: Array<[string, unknown]> = [
        ['peer id', status.peerId],
        ['version', status.version],
        ['uptime', formatDuration(status.uptimeMs)],
        ['connections', status.connections]
      ]
      for (const [k, v] of lines) process.stdout.write(`${k.padEnd(12)} ${String(v)}\n`)
    })
}
