/**
 * What the OpenAI- and Ollama-compatible routes need from the daemon: a chat that
 * routes across the network, the model catalog, the chats running now, and the
 * local Ollama's own description of a model. Kept narrow so the routes do not
 * depend on the daemon's internals.
 */
import type { CatalogEntry } from '../discovery/types.js'
import type { ChatEvent, ChatRequest, EmbedRequest, ModelInfo } from '../engine/types.js'
import { modelId } from '../models/index.js'
import type { EmbedOutcome, RouteOptions, RunningChat } from '../router/router.js'

/** How one request is routed: its signal, a pinned peer (x-krill-peer), who answered. */
export type ApiRouteOptions = RouteOptions & { signal: AbortSignal }

/** Ollama's /api/show answer for a model, and who gave it ("local" or a peer id). */
export interface ShownModel {
  show: Record<string, unknown>
  provider: string
}

export interface ApiBackend {
  chat: (request: ChatRequest, opts: ApiRouteOptions) => AsyncIterable<ChatEvent>
  embed: (request: EmbedRequest, opts: ApiRouteOptions) => Promise<EmbedOutcome>
  /** every model this node can route to: its own and the network's */
  models: () => CatalogModel[]
  running: () => RunningChat[]
  /**
   * The /api/show answer of a copy of the model: the local Ollama's, else one
   * provider's over the network (/krill/show/1.0.0); undefined when nobody can say.
   */
  show: (name: string, opts: { signal: AbortSignal, peer?: string }) => Promise<ShownModel | undefined>
  /** the local Ollama's own /api/ps entries ([] when this node runs no Ollama) */
  psLocal: (signal: AbortSignal) => Promise<Array<Record<string, unknown>>>
}

export interface CatalogModel {
  name: string
  /** details of one copy (the local one when there is one) */
  info: ModelInfo
  digests: string[]
  /** peers serving it, this node included */
  providers: number
  local: boolean
}

/** Local models and the network's catalog as one list, one entry per model name. */
export function mergeCatalog (local: ModelInfo[], network: CatalogEntry[]): CatalogModel[] {
  const byName = new Map<string, CatalogModel>()
  for (const m of local) {
    const key = modelId(m.name)
    const seen = byName.get(key)
    if (seen != null) {
      if (!seen.digests.includes(m.digest)) seen.digests.push(m.digest)
      continue
    }
    byName.set(key, { name: m.name, info: m, digests: [m.digest], providers: 1, local: true })
  }
  for (const entry of network) {
    const key = modelId(entry.name)
    const seen = byName.get(key)
    if (seen == null) {
      byName.set(key, { name: entry.name, info: entry.model, digests: entry.digests.filter(d => d !== ''), providers: entry.providers, local: false })
      continue
    }
    seen.providers += entry.providers
    for (const d of entry.digests) if (d !== '' && !seen.digests.includes(d)) seen.digests.push(d)
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name))
}

export function findModel (models: CatalogModel[], name: string): CatalogModel | undefined {
  const key = modelId(name)
  return models.find(m => modelId(m.name) === key)
}
