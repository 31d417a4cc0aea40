import type { Command } from 'commander'
import type { ProvidersAnswer } from '../../api/control.js'
import type { Capacity } from '../../discovery/types.js'
import { ModelNotServedError } from '../../errors.js'
import { apiBase, getJson } from '../api-client.js'
import { formatMs, printJson, shortDigest, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

/** "1/4, 2 queued": busy slots of all slots, and the waiting line */
export function formatLoad (c: Capacity | undefined): string {
  if (c == null || c.slots === 0) return '-'
  return `${c.active}/${c.slots}, ${c.queued} queued`
}

export function renderProviders (answer: ProvidersAnswer): string {
  const rows = answer.providers.map(p => [p.peerId, shortDigest(p.model.digest), formatLoad(p.capacity), formatMs(p.latencyMs), p.source])
  if (answer.local != null) {
    rows.unshift([`${answer.local.peerId} (this node)`, shortDigest(answer.local.model.digest), formatLoad(answer.local.capacity), 'local', 'local'])
  }
  return tableText(['PEER', 'DIGEST', 'LOAD', 'LATENCY', 'SOURCE'], rows)
}

export function registerProviders (program: Command): void {
  clientOptions(program.command('providers'))
    .description('who serves a model, with load and latency')
    .argument('<model>', 'model name, e.g. llama3.2:1b (see `krill models`)')
    .action(async (model: string, _opts, command: Command) => {
      const opts = cliOptions(command)
      const answer = await getJson<ProvidersAnswer>(apiBase(opts.api), `/krill/v1/providers/${model.split('/').map(encodeURIComponent).join('/')}`)
      const nobody = answer.providers.length === 0 && answer.local == null
      if (opts.json === true) printJson(answer)
      else if (!nobody) process.stdout.write(renderProviders(answer))
      // "nobody" is an answer, but scripts asking "can I use this model?" want a failure
      if (nobody) throw new ModelNotServedError(`model "${model}" is not served by anyone in the swarm — see \`krill models\``)
    })
}
