import type { Command } from 'commander'
import { multiaddr } from '@multiformats/multiaddr'
import { UsageError } from '../../errors.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

export interface ConnectAnswer {
  peerId: string
  addr: string
  type: 'direct' | 'relayed'
  relay?: string
  dialMs: number
}

export function registerConnect (program: Command): void {
  clientOptions(program.command('connect'))
    .description('dial a peer now')
    .argument('<multiaddr>', 'e.g. /ip4/192.0.2.10/tcp/4747/p2p/12D3KooW… (as `krill id` prints it)')
    .action(async (addr: string, _opts, command: Command) => {
      const opts = cliOptions(command)
      // checked here too, so a typo is exit 2 even without a running daemon
      try {
        multiaddr(addr)
      } catch (err: any) {
        throw new UsageError(`"${addr}" is not a valid multiaddr (${err.message}); example: /ip4/192.0.2.10/tcp/4747/p2p/12D3KooW…`)
      }
      const answer = await getJson<ConnectAnswer>(apiBase(opts.api), '/krill/v1/connect', { body: { multiaddr: addr } })
      if (opts.json === true) {
        printJson(answer)
        return
      }
      const via = answer.type === 'relayed' ? `relayed via ${answer.relay ?? '?'}` : 'direct'
      process.stdout.write(`connected to ${answer.peerId} at ${answer.addr} (${via}, ${answer.dialMs} ms)\n`)
    })
}
