import type { Command } from 'commander'
import type { PeerView } from '../../api/control.js'
import { apiBase, getJson } from '../api-client.js'
import { formatMs, printJson, shortPeer, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { watch } from '../watch.js'
import { clientOptions } from './common.js'

export interface PeersAnswer {
  peers: PeerView[]
}

export function renderPeers (answer: PeersAnswer): string {
  const rows = answer.peers.map(p => [
    // the full id: people copy it into `krill ping` / `krill providers`
    p.id,
    p.addr,
    p.type === 'relayed' ? `relayed via ${p.relay != null ? shortPeer(p.relay) : '?'}` : 'direct',
    formatMs(p.latencyMs),
    p.agent,
    p.models.map(m => m.name).join(', ')
  ])
  return tableText(['PEER', 'ADDRESS', 'TYPE', 'LATENCY', 'AGENT', 'MODELS'], rows, '(no peers connected)')
}

export function registerPeers (program: Command): void {
  clientOptions(program.command('peers'))
    .description('connected peers: id, address, direct or relayed, latency, agent version, models')
    .option('--watch', 'refresh in place every 2 s until Ctrl-C')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const load = async (signal?: AbortSignal): Promise<PeersAnswer> => await getJson<PeersAnswer>(base, '/krill/v1/peers', { signal })
      if (opts.watch === true) {
        await watch({ title: 'krill peers', load, render: renderPeers, json: opts.json === true })
        return
      }
      const answer = await load()
      if (opts.json === true) printJson(answer)
      else process.stdout.write(renderPeers(answer))
    })
}
