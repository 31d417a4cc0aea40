import type { Command } from 'commander'
import { CliError } from '../cli-error.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

export interface ConnectAnswer {
  peerId: string
  /** the address of the connection: the one dialed, or the existing one when `dialed` is false */
  addr: string
  type: 'direct' | 'relayed'
  relay?: string
  /** false: the peer was already connected and the given address was not tried */
  dialed: boolean
  dialMs: number
}

export function registerConnect (program: Command): void {
  clientOptions(program.command('connect'))
    .description('dial a peer now')
    .argument('<multiaddr>', 'e.g. /ip4/192.0.2.10/tcp/4747/p2p/12D3KooW… (as `krill id` prints it)')
    .option('--force', 'dial this address even when the peer is already connected')
    .action(async (addr: string, _opts, command: Command) => {
      const opts = cliOptions(command)
      // checked here too, so a typo is exit 2 even without a running daemon
      const { multiaddr } = await import('@multiformats/multiaddr')
      try {
        multiaddr(addr)
      } catch (err: any) {
        throw new CliError('bad_multiaddr', `"${addr}" is not a valid multiaddr (${err.message})`, { hint: 'example: /ip4/192.0.2.10/tcp/4747/p2p/12D3KooW…', usage: true })
      }
      const answer = await getJson<ConnectAnswer>(apiBase(opts.api), '/krill/v1/connect', { body: { multiaddr: addr, ...(opts.force === true ? { force: true } : {}) } })
      if (opts.json === true) {
        printJson(answer)
        return
      }
      const via = answer.type === 'relayed' ? `relayed via ${answer.relay ?? '?'}` : 'direct'
      if (answer.dialed === false) {
        process.stdout.write(`already connected to ${answer.peerId} at ${answer.addr} (${via}); ${addr} was not dialed — pass --force to dial it anyway\n`)
      } else {
        process.stdout.write(`connected to ${answer.peerId} at ${answer.addr} (${via}, ${answer.dialMs} ms)\n`)
      }
    })
}
