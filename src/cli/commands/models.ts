import type { Command } from 'commander'
import type { ModelsAnswer } from '../../api/control.js'
import { apiBase, getJson } from '../api-client.js'
import { fitWidth, formatMs, printJson, shortDigest, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { watch } from '../watch.js'
import { clientOptions, watchOption, wideOption } from './common.js'

/** who serves it: "2", "this node", "1 + this node" */
function providersCell (m: ModelsAnswer['models'][number]): string | number {
  if (!m.servedHere) return m.providers
  return m.providers > 0 ? `${m.providers} + this node` : 'this node'
}

/** said when the catalog is empty: true whether models never came or just went */
export const NO_MODELS = '(no models: neither this node nor any connected peer serves one right now)'

export function renderModels (answer: ModelsAnswer, opts: { wide?: boolean } = {}): string {
  const wide = opts.wide === true
  const rows = answer.models
    // a model nobody serves any more is not in the catalog, whatever a stale entry says
    .filter(m => m.providers > 0 || m.servedHere)
    .map(m => [
      m.name,
      m.digests.map(shortDigest).join(', '),
      providersCell(m),
      m.bestLatencyMs == null && m.servedHere ? 'local' : formatMs(m.bestLatencyMs)
    ])
  return tableText(['MODEL', 'DIGEST', 'PROVIDERS', 'BEST LATENCY'], rows, NO_MODELS, { width: fitWidth(wide), shrink: [0, 1] })
}

export function registerModels (program: Command): void {
  watchOption(wideOption(clientOptions(program.command('models'))))
    .description("the network's model catalog: model, digest, number of providers, best latency")
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const load = async (signal?: AbortSignal): Promise<ModelsAnswer> => await getJson<ModelsAnswer>(base, '/krill/v1/models', { signal })
      const render = (a: ModelsAnswer): string => renderModels(a, { wide: opts.wide })
      if (opts.watch === true) await watch({ title: 'krill models', load, render, json: opts.json === true })
      const answer = await load()
      if (opts.json === true) printJson(answer)
      else process.stdout.write(render(answer))
    })
}
