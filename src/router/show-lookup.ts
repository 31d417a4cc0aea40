/**
 * Who tells us what a model is: the local Ollama when this node has the model,
 * else one of its providers over /krill/show/1.0.0. A provider's answer is kept
 * while its announcement lives (per peer and digest), so /api/show costs the
 * network one exchange per copy and announcement, not one per call.
 */
import type { ProviderDirectory, ProviderEntry } from '../discovery/types.js'
import type { ModelInfo } from '../engine/types.js'
import { KrillError } from '../errors.js'
import { logger } from '../log.js'
import { sameModel } from '../models/index.js'

const log = logger('router')

export interface ShowLookupDeps {
  selfId: string
  providers: ProviderDirectory
  /** the local models and the local Ollama's /api/show, when this node serves */
  local?: () => { models: ModelInfo[], show: (name: string, signal: AbortSignal) => Promise<Record<string, unknown>> } | undefined
  /** asks a peer over /krill/show/1.0.0 */
  remoteShow: (peerId: string, model: string, digest: string | undefined, signal: AbortSignal) => Promise<Record<string, unknown>>
  now?: () => number
}

interface Cached { show: Record<string, unknown>, expiresAt: number }

/** How long a DHT-only provider's answer is kept (it has no announcement lifetime). */
const DHT_ANSWER_MS = 60_000
/** providers asked at most per lookup */
const MAX_TRIES = 3
const MAX_CACHED = 1024

export class ShowLookup {
  private readonly deps: ShowLookupDeps
  private readonly now: () => number
  private readonly cache = new Map<string, Cached>()

  constructor (deps: ShowLookupDeps) {
    this.deps = deps
    this.now = deps.now ?? Date.now
  }

  /**
   * The /api/show answer of a copy of `model` and who gave it ("local" or a peer
   * id); undefined when nobody could say. `peer` pins the provider asked.
   */
  async show (model: string, opts: { signal: AbortSignal, peer?: string }): Promise<{ show: Record<string, unknown>, provider: string } | undefined> {
    const local = this.deps.local?.()
    const pinnedLocal = opts.peer === 'local' || opts.peer === this.deps.selfId
    if (local != null && (opts.peer == null || pinnedLocal)) {
      const mine = local.models.find(m => sameModel(m.name, model))
      if (mine != null) return { show: await local.show(mine.name, opts.signal), provider: 'local' }
    }
    if (pinnedLocal) throw new KrillError('UNKNOWN_MODEL', `this node does not serve model "${model}"`)
    let entries = this.deps.providers.providersFor(model).filter(e => e.peerId !== this.deps.selfId)
    if (opts.peer != null) {
      entries = entries.filter(e => e.peerId === opts.peer)
      if (entries.length === 0) throw new KrillError('UNKNOWN_MODEL', `peer ${opts.peer} does not serve model "${model}"`)
    }
    // announced copies first: they have a lifetime to cache for
    entries.sort((a, b) => (a.source === 'gossip' ? 0 : 1) - (b.source === 'gossip' ? 0 : 1))
    let lastError: unknown
    for (const entry of entries.slice(0, MAX_TRIES)) {
      const key = `${entry.peerId}\u0000${entry.model.digest}\u0000${entry.model.name}`
      const hit = this.cache.get(key)
      if (hit != null && hit.expiresAt > this.now()) return { show: hit.show, provider: entry.peerId }
      try {
        const show = await this.deps.remoteShow(entry.peerId, entry.model.name, entry.model.digest !== '' ? entry.model.digest : undefined, opts.signal)
        this.remember(key, show, entry)
        return { show, provider: entry.peerId }
      } catch (err) {
        if (opts.signal.aborted) throw err
        lastError = err
        log.debug(`peer ${entry.peerId} could not describe ${model}: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
    if (opts.peer != null && lastError != null) throw new KrillError('NO_PROVIDER', `peer ${opts.peer} could not describe model "${model}": ${lastError instanceof Error ? lastError.message : String(lastError)}`)
    return undefined
  }

  private remember (key: string, show: Record<string, unknown>, entry: ProviderEntry): void {
    const now = this.now()
    for (const [k, v] of this.cache) if (v.expiresAt <= now) this.cache.delete(k)
    while (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(key, { show, expiresAt: entry.source === 'gossip' ? entry.expiresAt : now + DHT_ANSWER_MS })
  }
}
