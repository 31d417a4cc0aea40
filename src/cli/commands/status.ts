import type { Command } from 'commander'
import type { StatusAnswer } from '../../api/control.js'
import { apiBase, getJson } from '../api-client.js'
import { formatDuration, printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { watch } from '../watch.js'
import { clientOptions, watchOption } from './common.js'

function ollamaState (o: StatusAnswer['ollama']): string {
  if (!o.serving) return 'not serving: --no-serve'
  return o.reachable === true ? 'reachable' : 'unreachable'
}

function reachability (n: StatusAnswer['nat']): string {
  const relaying = n.relaying ? '; relaying for peers behind NATs' : ''
  if (n.reachable) return `public${relaying}`
  if (n.relays.length > 0) return `through relay ${n.relays.join(', ')}${relaying}`
  return `not publicly reachable${n.autonat ? '' : ' (AutoNAT off)'}${relaying}`
}

export function renderStatus (s: StatusAnswer): string {
  const lines: Array<[string, string]> = [
    ['peer id', s.peerId],
    ['version', s.version],
    ['uptime', formatDuration(s.uptimeMs)],
    ...s.addrs.map((a, i): [string, string] => [i === 0 ? 'addresses' : '', a]),
    ['connections', `${s.connections} (${s.peers} peer${s.peers === 1 ? '' : 's'})`],
    ['network', s.network == null ? '' : s.network.mode === 'public' ? 'public' : `private (${s.network.swarm === 'own' ? 'this node\'s own swarm' : s.network.swarm === 'joined' ? 'joined by invite' : 'swarm key file'})`],
    ['reachable', reachability(s.nat)],
    ['dht', `${s.dht.mode}${s.dht.configured === 'auto' ? ' (auto)' : ''}`],
    ['ollama', `${s.ollama.url} (${ollamaState(s.ollama)})`],
    ['serving', s.models.length > 0 ? s.models.map(m => m.name).join(', ') : '(no models)'],
    ['requests', `${s.requests.active}/${s.requests.slots} slots busy, ${s.requests.queued} queued for peers; ${s.requests.routing} for local clients`],
    ...(s.tokens == null ? [] : [['tokens', `served peers ${s.tokens.served.total} (${s.tokens.served.prompt} prompt + ${s.tokens.served.completion} completion); received ${s.tokens.consumed.total} (${s.tokens.consumed.prompt} + ${s.tokens.consumed.completion}); krill balance per peer`] as [string, string]])
  ]
  return lines.map(([k, v]) => `${k.padEnd(12)} ${v}`.trimEnd()).join('\n') + '\n'
}

export function registerStatus (program: Command): void {
  watchOption(clientOptions(program.command('status')))
    .description('node health: peer id, uptime, connections, Ollama, served models, active requests, tokens served and received')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const load = async (signal?: AbortSignal): Promise<StatusAnswer> => await getJson<StatusAnswer>(base, '/krill/v1/status', { signal })
      if (opts.watch === true) await watch({ title: 'krill status', load, render: renderStatus, json: opts.json === true })
      const status = await load()
      if (opts.json === true) printJson(status)
      else process.stdout.write(renderStatus(status))
    })
}
