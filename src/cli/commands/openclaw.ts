import type { Command } from 'commander'
import type { ModelsAnswer } from '../../api/control.js'
import { CliError } from '../cli-error.js'
import { apiBase, getJson } from '../api-client.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

/** one entry of models.providers.<id>.models in openclaw.json */
export interface OpenClawModel {
  id: string
  name: string
  input: Array<'text' | 'image'>
  reasoning?: boolean
  contextWindow?: number
}

export interface OpenClawProvider {
  baseUrl: string
  apiKey: string
  api: 'ollama' | 'openai-completions'
  models: OpenClawModel[]
}

export interface OpenClawConfig {
  models: { providers: Record<string, OpenClawProvider> }
}

interface V1Model { id: string, context_length?: number, capabilities?: string[] }

/** what krill knows of a model: context length (0 = unknown) and capabilities, when a provider told */
interface Facts { contextLength?: number, capabilities?: string[] }

function openClawModel (id: string, facts: Facts, v1: V1Model): OpenClawModel {
  const caps = v1.capabilities ?? facts.capabilities
  const context = v1.context_length ?? facts.contextLength
  return {
    id,
    name: `${id} (krill)`,
    input: caps?.includes('vision') === true ? ['text', 'image'] : ['text'],
    ...(caps != null ? { reasoning: caps.includes('thinking') } : {}),
    ...(context != null && context > 0 ? { contextWindow: context } : {})
  }
}

/**
 * The provider block(s) for openclaw.json pointing at the daemon at `base`:
 * OpenClaw's built-in Ollama route (`api: "ollama"`, baseUrl without /v1: the
 * OpenClaw docs warn /v1 breaks tool calls there) and the OpenAI-compatible one.
 */
export function openClawConfig (base: string, models: OpenClawModel[], opts: { id?: string, routes?: Array<'ollama' | 'openai'>, apiKey?: string } = {}): OpenClawConfig {
  const id = opts.id ?? 'krill'
  const apiKey = opts.apiKey ?? 'krill-local'
  const routes = opts.routes ?? ['ollama', 'openai']
  const providers: Record<string, OpenClawProvider> = {}
  if (routes.includes('ollama')) providers[id] = { baseUrl: base, apiKey, api: 'ollama', models }
  if (routes.includes('openai')) providers[`${id}-openai`] = { baseUrl: `${base}/v1`, apiKey, api: 'openai-completions', models }
  return { models: { providers } }
}

async function loadModels (base: string): Promise<OpenClawModel[]> {
  const [v1, catalog] = await Promise.all([
    getJson<{ data: V1Model[] }>(base, '/v1/models'),
    getJson<ModelsAnswer>(base, '/krill/v1/models').catch(() => undefined)
  ])
  const facts = new Map<string, Facts>()
  for (const m of [...(catalog?.models.map(e => e.model) ?? []), ...(catalog?.local ?? [])]) {
    const info = m as { name: string, contextLength?: number, capabilities?: string[] }
    const known = facts.get(info.name)
    facts.set(info.name, { contextLength: Math.max(known?.contextLength ?? 0, info.contextLength ?? 0), capabilities: info.capabilities ?? known?.capabilities })
  }
  return v1.data.map(m => openClawModel(m.id, facts.get(m.id) ?? {}, m)).sort((a, b) => a.id.localeCompare(b.id))
}

export function registerOpenclaw (program: Command): void {
  const openclaw = program.command('openclaw').description('OpenClaw integration: print the provider block for openclaw.json')
  clientOptions(openclaw.command('config'))
    .description('print the models.providers block for ~/.openclaw/openclaw.json pointing at this daemon, with its models')
    .option('--route <route>', 'ollama (OpenClaw\'s built-in Ollama API, recommended for tools), openai (OpenAI-compatible /v1) or both', 'both')
    .option('--provider-id <id>', 'the provider id in openclaw.json (models are then "<id>/<model>")', 'krill')
    .action(async (_opts, command: Command) => {
      const opts = { ...command.opts(), ...cliOptions(command) }
      const route = String(opts.route)
      if (!['ollama', 'openai', 'both'].includes(route)) throw new CliError('bad_usage', `--route "${route}" is not ollama, openai or both`, { usage: true })
      const base = apiBase(opts.api)
      const models = await loadModels(base)
      const token = process.env.KRILL_API_TOKEN
      const config = openClawConfig(base, models, {
        id: opts.providerId,
        routes: route === 'both' ? ['ollama', 'openai'] : [route as 'ollama' | 'openai'],
        ...(token != null && token !== '' ? { apiKey: token } : {})
      })
      process.stdout.write(JSON.stringify(config, null, 2) + '\n')
      if (opts.json !== true) {
        const first = models[0]?.id ?? '<model>'
        process.stderr.write(`Merge this into ~/.openclaw/openclaw.json; then use "${String(opts.providerId)}/${first}" as a model ` +
          `(e.g. agents.defaults.model.primary). ${models.length === 0 ? 'The daemon knows no models yet: run it again once `krill models` lists some.' : `${models.length} model(s) from ${base}/v1/models.`}\n`)
      }
    })
}
