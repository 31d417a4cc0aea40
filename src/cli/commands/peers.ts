import type { Command } from 'commander'
import type { PeerView } from '../../api/control.js'
import { apiBase, getJson } from '../api-client.js'
import { addrCell, fitWidth, formatMs, peerCell, printJson, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { watch } from '../watch.js'
import { clientOptions, watchOption, wideOption } from './common.js'

export interface PeersAnswer {
  peers: PeerView[]
}

export function renderPeers (answer: PeersAnswer, opts: { wide?: boolean } = {}): string {
  const wide = opts.wide === true
  const rows = answer.peers.map(p => [
    peerCell(p.id, wide),
    addrCell(p.addr, p.id, wide),
    p.type === 'relayed' ? `relayed via ${p.relay != null ? peerCell(p.relay, wide) : '?'}` : 'direct',
    formatMs(p.latencyMs),
    p.agent,
    p.models.map(m => m.name).join(', ')
  ])
  // ids stay long enough to tell peers apart; address, agent and models give way
  return tableText(['PEER', 'ADDRESS', 'TYPE', 'LATENCY', 'AGENT', 'MODELS'], rows, '(no peers connected)', { width: fitWidth(wide), shrink: [1, 4, 5] })
}


export function registerPeers (program: Command): void {
  watchOption(wideOption(clientOptions(program.command('peers'))))
    .description('connected peers: id, address, direct or relayed, latency, agent version, models')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const load = async (signal?: AbortSignal): Promise<PeersAnswer> => await getJson<PeersAnswer>(base, '/krill/v1/peers', { signal })
      const render = (a: PeersAnswer): string => renderPeers(a, { wide: opts.wide })
      if (opts.watch === true) await watch({ title: 'krill peers', load, render, json: opts.json === true })
      const answer = await load()
      if (opts.json === true) printJson(answer)
      else process.stdout.write(render(answer))
    })
}
