/**
 * The DHT half of discovery (DESIGN §2): we provide a name key and a digest key for
 * every model we share, and look models up there when no fresh announcement names a
 * provider (e.g. a node that joined after the last announcement, or one that does not
 * take part in gossip). Nothing here blocks start-up: provide runs in the background.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { ModelInfo } from '../engine/types.js'
import { logger } from '../log.js'
import { digestKey, modelKey } from './keys.js'
import type { ProviderTable } from './provider-table.js'
import type { ProviderEntry } from './types.js'

const log = logger('discovery')

export interface DhtProviderOptions {
  libp2p: Pick<Libp2p, 'peerId' | 'contentRouting' | 'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'>
  table: ProviderTable
  /** peers in the DHT routing table now: decides when a provide deserves a repeat */
  routingTableSize: () => number
  /** how long DHT-found providers stay in the table */
  ttlMs: number
  /** limit for one provide (default 60 s) */
  provideTimeoutMs?: number
}

export interface FindProvidersOptions {
  signal?: AbortSignal
  /** default 10 s */
  timeoutMs?: number
  /** look up this exact copy (digest key) instead of the name */
  digest?: string
  /** stop after this many providers (default 20) */
  maxProviders?: number
  /** once one provider is found, wait at most this long for more (default 1 s) */
  settleMs?: number
  /**
   * Dial up to this many found peers we are not connected to (default 3). Only
   * peers we are connected to (before or by this dial) are listed: once connected,
   * the sync exchange brings their announcement with details and capacity.
   */
  dial?: number
}

interface Provided {
  cid: CID
  /** DHT routing table size when it was last provided; -1 while not yet */
  peersAtProvide: number
}

export class DhtProvider {
  private readonly opts: DhtProviderOptions
  private readonly self: string
  private readonly provided = new Map<string, Provided>()
  private readonly queue: string[] = []
  private working = false
  private readonly stopController = new AbortController()
  private reprovideTimer?: NodeJS.Timeout
  private readonly onPeerConnect = (): void => {
    // debounced: a node joining a swarm connects to many peers at once
    if (this.reprovideTimer != null || this.stopController.signal.aborted) return
    this.reprovideTimer = setTimeout(() => {
      this.reprovideTimer = undefined
      this.reprovideIfGrown()
    }, 1_000)
    this.reprovideTimer.unref()
  }

  constructor (opts: DhtProviderOptions) {
    this.opts = opts
    this.self = opts.libp2p.peerId.toString()
  }

  start (): void {
    this.opts.libp2p.addEventListener('peer:connect', this.onPeerConnect)
  }

  stop (): void {
    this.stopController.abort()
    clearTimeout(this.reprovideTimer)
    this.opts.libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    this.queue.length = 0
  }

  /** Provides keys for models new in `models` and stops re-providing the ones gone. */
  setModels (models: ModelInfo[]): void {
    const wanted = new Map<string, CID>()
    for (const m of models) {
      for (const cid of [modelKey(m.name), digestKey(m.digest)]) wanted.set(cid.toString(), cid)
    }
    for (const [key, p] of this.provided) {
      if (wanted.has(key)) continue
      this.provided.delete(key)
      // records already stored elsewhere live on until they expire; gossip outranks them
      this.opts.libp2p.contentRouting.cancelReprovide(p.cid).catch((err: any) => { log.debug(`cancelReprovide ${key}: ${err.message}`) })
    }
    for (const [key, cid] of wanted) {
      if (this.provided.has(key)) continue
      this.provided.set(key, { cid, peersAtProvide: -1 })
      this.enqueue(key)
    }
  }

  /**
   * Looks `model` up in the DHT; found peers join the table as 'dht' entries (name
   * only) unless their gossip says otherwise. Never throws for lookup failures: an
   * empty list means nobody was found in time.
   */
  async findProviders (model: string, opts: FindProvidersOptions = {}): Promise<ProviderEntry[]> {
    const cid = opts.digest != null ? digestKey(opts.digest) : modelKey(model)
    const max = opts.maxProviders ?? 20
    const lookup = new AbortController()
    const signal = AbortSignal.any([
      lookup.signal,
      this.stopController.signal,
      AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      ...(opts.signal != null ? [opts.signal] : [])
    ])
    const found = new Map<string, PeerId>()
    let settle: NodeJS.Timeout | undefined
    try {
      for await (const peer of this.opts.libp2p.contentRouting.findProviders(cid, { signal })) {
        const id = peer.id.toString()
        if (id === this.self || found.has(id)) continue
        found.set(id, peer.id)
        if (found.size >= max) break
        settle ??= setTimeout(() => { lookup.abort() }, opts.settleMs ?? 1_000)
      }
    } catch (err: any) {
      if (found.size === 0 && !signal.aborted) log.debug(`DHT lookup for ${model} failed: ${err.message}`)
    } finally {
      clearTimeout(settle)
    }
    // listed only once reached: a provider record outlives its provider by up to 48 h,
    // and a peer we cannot reach is no candidate (no ghosts)
    const reached = await this.reach([...found.values()], opts.dial ?? 3, opts.signal)
    return this.opts.table.addDhtProviders(model, reached, { ttlMs: this.opts.ttlMs, digest: opts.digest })
  }

  /**
   * The peers of `ids` we are connected to, plus those of up to `count` others we
   * could dial now (once connected, the sync exchange brings their signed
   * announcement with details and capacity).
   */
  private async reach (ids: PeerId[], count: number, signal?: AbortSignal): Promise<string[]> {
    const connected = new Set(this.opts.libp2p.getConnections().map(c => c.remotePeer.toString()))
    const reached = ids.filter(id => connected.has(id.toString())).map(String)
    const toDial = ids.filter(id => !connected.has(id.toString())).slice(0, count)
    const dialed = await Promise.allSettled(toDial.map(async id => {
      await this.opts.libp2p.dial(id, { signal: AbortSignal.any([this.stopController.signal, AbortSignal.timeout(5_000), ...(signal != null ? [signal] : [])]) })
      return id.toString()
    }))
    for (const [i, result] of dialed.entries()) {
      if (result.status === 'fulfilled') reached.push(result.value)
      else log.debug(`dialing DHT provider ${toDial[i].toString()} failed: ${result.reason?.message ?? result.reason}; not listed`)
    }
    return reached
  }

  /** Re-provides keys first provided to a much smaller DHT (e.g. to nobody, at start). */
  private reprovideIfGrown (): void {
    const size = this.opts.routingTableSize()
    for (const [key, p] of this.provided) {
      if (p.peersAtProvide >= 0 && size > p.peersAtProvide * 2) this.enqueue(key)
    }
  }

  private enqueue (key: string): void {
    if (this.stopController.signal.aborted || this.queue.includes(key)) return
    this.queue.push(key)
    if (!this.working) void this.work()
  }

  /** One provide at a time: they are slow and need not race each other. */
  private async work (): Promise<void> {
    this.working = true
    try {
      while (this.queue.length > 0 && !this.stopController.signal.aborted) {
        const key = this.queue.shift() as string
        const p = this.provided.get(key)
        if (p == null) continue
        const peers = this.opts.routingTableSize()
        try {
          const signal = AbortSignal.any([this.stopController.signal, AbortSignal.timeout(this.opts.provideTimeoutMs ?? 60_000)])
          await this.opts.libp2p.contentRouting.provide(p.cid, { signal })
          p.peersAtProvide = peers
          log.debug(`provided ${key} to a DHT of ${peers} peer(s)`)
        } catch (err: any) {
          // retried when the DHT grows
          p.peersAtProvide = 0
          if (!this.stopController.signal.aborted) log.debug(`providing ${key} failed: ${err.message}`)
        }
      }
    } finally {
      this.working = false
    }
  }
}
