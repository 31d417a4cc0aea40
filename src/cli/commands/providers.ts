import type { Command } from 'commander'
import type { ProvidersAnswer } from '../../api/control.js'
import type { Capacity } from '../../discovery/types.js'
import { apiBase, getJson } from '../api-client.js'
import { unknownModel } from '../known-models.js'
import { fitWidth, formatMs, peerCell, printJson, shortDigest, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions, wideOption } from './common.js'

/** "1/4, 2 queued": busy slots of all slots, and the waiting line */
export function formatLoad (c: Capacity | undefined): string {
  if (c == null || c.slots === 0) return '-'
  return `${c.active}/${c.slots}, ${c.queued} queued`
}

export function renderProviders (answer: ProvidersAnswer, opts: { wide?: boolean } = {}): string {
  const wide = opts.wide === true
  // digests stay as `ollama list` shows them (12 digits; --json has them whole)
  const digest = shortDigest
  const rows = answer.providers.map(p => [peerCell(p.peerId, wide), digest(p.model.digest), formatLoad(p.capacity), formatMs(p.latencyMs), p.source])
  if (answer.local != null) {
    rows.unshift([`${peerCell(answer.local.peerId, wide)} (this node)`, digest(answer.local.model.digest), formatLoad(answer.local.capacity), 'local', 'local'])
  }
  return tableText(['PEER', 'DIGEST', 'LOAD', 'LATENCY', 'SOURCE'], rows, '(none)', { width: fitWidth(wide), shrink: [1] })
}

export function registerProviders (program: Command): void {
  wideOption(clientOptions(program.command('providers')))
    .description('who serves a model, with load and latency')
    .argument('<model>', 'model name, e.g. llama3.2:1b (see `krill models`)')
    .action(async (model: string, _opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const answer = await getJson<ProvidersAnswer>(base, `/krill/v1/providers/${model.split('/').map(encodeURIComponent).join('/')}`)
      const nobody = answer.providers.length === 0 && answer.local == null
      if (opts.json === true) printJson(answer)
      else if (!nobody) process.stdout.write(renderProviders(answer, { wide: opts.wide }))
      // "nobody" is an answer, but scripts asking "can I use this model?" want a failure
      if (nobody) throw await unknownModel(base, model)
    })
}
