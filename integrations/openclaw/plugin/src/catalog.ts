/**
 * krill's model catalog as an OpenClaw provider: the models the local krill daemon
 * can route to (GET /v1/models: its own and the swarm's), each described by what
 * krill knows about it (POST /api/show: context length and capabilities, the
 * serving peer's own facts). krill speaks OpenAI's chat API with streaming usage
 * and tool calls, so the provider uses OpenClaw's `openai-completions` route.
 */
import type { ProviderCatalogResult } from 'openclaw/plugin-sdk/plugin-entry'

/** the provider block OpenClaw merges into models.providers.krill */
export type KrillProviderConfig = Extract<NonNullable<ProviderCatalogResult>, { provider: unknown }>['provider']
export type KrillModel = KrillProviderConfig['models'][number]

export const DEFAULT_API = 'http://127.0.0.1:11435'
/** OpenClaw's output budget for a model whose context length krill does not know */
export const DEFAULT_MAX_TOKENS = 8192
/** /api/show lookups at once: the catalog of a big swarm must not flood the daemon */
const SHOW_CONCURRENCY = 8

export interface KrillSettings {
  /** the daemon's API, without /v1 */
  baseUrl: string
  /** bearer token of a daemon bound beyond loopback */
  apiToken?: string
}

/** Plugin config beats the environment (KRILL_API as the CLI reads it, KRILL_API_TOKEN). */
export function resolveSettings (pluginConfig: Record<string, unknown> | undefined, env: NodeJS.ProcessEnv): KrillSettings {
  const configured = typeof pluginConfig?.baseUrl === 'string' && pluginConfig.baseUrl !== '' ? pluginConfig.baseUrl : undefined
  const fromEnv = env.KRILL_API != null && env.KRILL_API !== '' ? env.KRILL_API : undefined
  let baseUrl = configured ?? fromEnv ?? DEFAULT_API
  if (!/^https?:\/\//.test(baseUrl)) baseUrl = `http://${baseUrl}`
  baseUrl = baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '')
  const token = typeof pluginConfig?.apiToken === 'string' && pluginConfig.apiToken !== '' ? pluginConfig.apiToken : env.KRILL_API_TOKEN
  return token != null && token !== '' ? { baseUrl, apiToken: token } : { baseUrl }
}

interface Shown {
  capabilities?: string[]
  model_info?: Record<string, unknown>
}

/** the context length in /api/show's model_info (`<architecture>.context_length`) */
export function contextLengthOf (shown: Shown): number | undefined {
  for (const [key, value] of Object.entries(shown.model_info ?? {})) {
    if (key.endsWith('.context_length') && typeof value === 'number' && value > 0) return value
  }
  return undefined
}

/** One catalog row from krill's facts; undefined for a model OpenClaw cannot chat with. */
export function modelFrom (id: string, shown: Shown | undefined): KrillModel | undefined {
  const capabilities = shown?.capabilities
  // an embedding-only model is no chat model
  if (capabilities != null && capabilities.includes('embedding') && !capabilities.includes('completion')) return undefined
  const contextWindow = shown != null ? contextLengthOf(shown) : undefined
  const model: KrillModel = {
    id,
    name: id,
    reasoning: capabilities?.includes('thinking') ?? false,
    input: capabilities?.includes('vision') === true ? ['text', 'image'] : ['text'],
    // the swarm asks nothing for a token
    cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
    maxTokens: contextWindow ?? DEFAULT_MAX_TOKENS,
    compat: {
      supportsUsageInStreaming: true,
      // a model krill reports without "tools" is not sent tool definitions
      ...(capabilities != null ? { supportsTools: capabilities.includes('tools') } : {})
    }
  }
  if (contextWindow != null) model.contextWindow = contextWindow
  return model
}

async function getJson (url: string, init: RequestInit, signal: AbortSignal): Promise<unknown> {
  const res = await fetch(url, { ...init, signal })
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`)
  return await res.json()
}

/**
 * The provider block for the daemon at `settings.baseUrl`; null when no krill
 * daemon answers there (OpenClaw then leaves the provider out).
 */
export async function krillProvider (settings: KrillSettings, opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<KrillProviderConfig | null> {
  const signal = AbortSignal.any([opts.signal ?? new AbortController().signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)])
  const headers: Record<string, string> = settings.apiToken != null ? { authorization: `Bearer ${settings.apiToken}` } : {}
  let listed: unknown
  try {
    listed = await getJson(`${settings.baseUrl}/v1/models`, { headers }, signal)
  } catch (err) {
    if (opts.signal?.aborted === true) throw err
    return null
  }
  const rows = ((listed as { data?: Array<{ id?: unknown, context_length?: unknown, capabilities?: unknown }> })?.data ?? [])
    .filter(m => typeof m?.id === 'string' && m.id !== '')
  const ids = rows.map(m => m.id as string)
  const shown = new Map<string, Shown | undefined>()
  // a krill that lists a model's facts in /v1/models itself needs no /api/show for it
  for (const row of rows) {
    if (Array.isArray(row.capabilities) && typeof row.context_length === 'number') {
      shown.set(row.id as string, { capabilities: row.capabilities.filter((c): c is string => typeof c === 'string'), model_info: { 'krill.context_length': row.context_length } })
    }
  }
  const queue = ids.filter(id => !shown.has(id))
  await Promise.all(Array.from({ length: Math.min(SHOW_CONCURRENCY, queue.length) }, async () => {
    for (let id = queue.shift(); id != null; id = queue.shift()) {
      try {
        shown.set(id, await getJson(`${settings.baseUrl}/api/show`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ model: id })
        }, signal) as Shown)
      } catch {
        // facts unknown: the model is still listed, as plain text chat
        shown.set(id, undefined)
      }
    }
  }))
  const models = ids.map(id => modelFrom(id, shown.get(id))).filter((m): m is KrillModel => m != null)
  return {
    baseUrl: `${settings.baseUrl}/v1`,
    api: 'openai-completions',
    // a loopback daemon takes any key; one bound beyond loopback needs its token
    apiKey: settings.apiToken ?? 'krill',
    models
  }
}
