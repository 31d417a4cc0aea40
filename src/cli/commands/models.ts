import type { Command } from 'commander'
import type { ModelsAnswer } from '../../api/control.js'
import { apiBase, getJson } from '../api-client.js'
import { formatMs, printJson, shortDigest, tableText } from '../output.js'
import { cliOptions } from '../options.js'
import { watch } from '../watch.js'
import { clientOptions } from './common.js'

export function renderModels (answer: ModelsAnswer): string {
  const rows = answer.models.map(m => [
    m.name,
    m.digests.map(shortDigest).join(', '),
    m.servedHere ? `${m.providers} + this node` : m.providers,
    m.bestLatencyMs == null && m.servedHere ? 'local' : formatMs(m.bestLatencyMs)
  ])
  return tableText(['MODEL', 'DIGEST', 'PROVIDERS', 'BEST LATENCY'], rows, '(no models in the swarm yet)')
}

export function registerModels (program: Command): void {
  clientOptions(program.command('models'))
    .description("the network's model catalog: model, digest, number of providers, best latency")
    .option('--watch', 'refresh in place every 2 s until Ctrl-C')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const base = apiBase(opts.api)
      const load = async (signal?: AbortSignal): Promise<ModelsAnswer> => await getJson<ModelsAnswer>(base, '/krill/v1/models', { signal })
      if (opts.watch === true) {
        await watch({ title: 'krill models', load, render: renderModels, json: opts.json === true })
        return
      }
      const answer = await load()
      if (opts.json === true) printJson(answer)
      else process.stdout.write(renderModels(answer))
    })
}
