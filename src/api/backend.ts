/**
 * What the OpenAI- and Ollama-compatible routes need from the daemon: a chat that
 * routes across the network, the model catalog, the chats running now, and the
 * local Ollama's own description of a model. Kept narrow so the routes do not
 * depend on the daemon's internals.
 */
import type { CatalogEntry } from '../discovery/types.js'
import type { ChatEvent, ChatRequest, ModelInfo } from '../engine/types.js'
import { modelId } from '../models/index.js'
import type { RunningChat } from '../router/router.js'

export interface ApiBackend {
  chat: (request: ChatRequest, opts: { signal: AbortSignal }) => AsyncIterable<ChatEvent>
  /** every model this node can route to: its own and the network's */
  models: () => CatalogModel[]
  running: () => RunningChat[]
  /** Ollama's /api/show answer for a model the local Ollama has; undefined when it has not */
  showLocal: (name: string, signal: AbortSignal) => Promise<Record<string, unknown> | undefined>
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
