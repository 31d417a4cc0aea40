/**
 * Who serves which model: the network as this node sees it. Fed by signed gossip
 * announcements (authoritative, with details and capacity) and by DHT lookups
 * (name only, a fallback). Entries expire at the TTL their author chose, so a peer that
 * stops announcing is gone without anyone saying so.
 *
 * Connections do not decide membership: a provider whose direct connection to us
 * closed (trimmed to make room, or lost) keeps its entries while its announcements,
 * relayed by other peers, keep arriving; one that is gone expires at its TTL, and
 * one that says goodbye (an empty announcement) goes at once. `removePeer` is there
 * for callers that know a peer is gone for good; `forgetUnreachable` for a provider
 * a dial could not reach (at scale its announcements live an hour): it stays out
 * until it announces something newer than what we had.
 */
import type { ModelInfo } from '../engine/types.js'
import { DEFAULT_ANNOUNCEMENT_LIMITS, type ValidAnnouncement } from './announcement.js'
import { canonicalModelName, modelId } from '../models/index.js'
import type { CatalogEntry, ProviderDirectory, ProviderEntry, SignedAnnouncement } from './types.js'
import { modelShard } from './shards.js'

export type { SignedAnnouncement }

export interface ProviderChange {
  model: string
  digest: string
  peerId: string
}

export interface ProviderTableEvents {
  /** a peer now announces a model (or a new digest of it) */
  'model:appeared': CustomEvent<ProviderChange>
  /** a peer no longer serves a model (withdrawn, expired, disconnected, or the digest changed) */
  'model:vanished': CustomEvent<ProviderChange>
}

export type ApplyResult =
  | { ok: true, appeared: number, vanished: number }
  | { ok: false, reason: 'stale-seq' | 'self' | 'table-full', detail: string }

export interface ProviderTableOptions {
  /** this node: never listed */
  selfId: string
  /** peers remembered at once (live or recently seen); bounds memory against floods of identities */
  maxPeers?: number
  /** how often expired entries are dropped and their events sent (reads never see them anyway) */
  sweepMs?: number
  /**
   * How long a peer's last seq is kept after its announcement expired, so that a
   * replayed old copy cannot bring it back. Must cover the validator's clock-skew
   * window twice (an old message is still "fresh" within it).
   */
  seqMemoryMs?: number
  now?: () => number
}

export interface ApplyOptions {
  /** the signed original, for the sync exchange */
  signed?: SignedAnnouncement
  /**
   * keep it at most this long (an announcement handed on by the sync exchange lives
   * no longer than its giver would have kept it: ghosts cannot be passed around forever)
   */
  remainingMs?: number
  /**
   * the shard (krill/models/2/<shard>) the announcement came on: it replaces only
   * what the author serves in that shard. Absent: krill/models/1, the author's whole list.
   */
  shard?: number
}

/** the key of an author's record: its whole list (v1) or one shard of it (v2) */
function recordKey (peerId: string, shard?: number): string {
  return shard == null ? peerId : `${peerId}#${shard}`
}

interface GossipRecord {
  peerId: string
  shard?: number
  seq: number
  signed?: SignedAnnouncement
  /** model id (src/models) → entry */
  entries: Map<string, ProviderEntry>
  expiresAt: number
  /** the author said goodbye (empty announcement): the DHT must not resurrect it */
  withdrawn: boolean
  /** the record itself (its seq) is dropped after this */
  forgetAt: number
}

/** the entry that lives longest wins (an author's v1 list and its shard records may overlap for one TTL) */
function keepNewest (map: Map<string, ProviderEntry>, key: string, entry: ProviderEntry): void {
  const old = map.get(key)
  if (old == null || entry.receivedAt > old.receivedAt) map.set(key, entry)
}

function unknownModel (name: string, digest: string): ModelInfo {
  return { name, digest, size: 0, family: '', parameterSize: '', quantization: '', contextLength: 0 }
}

export class ProviderTable extends EventTarget implements ProviderDirectory {
  private readonly selfId: string
  private readonly maxPeers: number
  private readonly sweepMs: number
  private readonly seqMemoryMs: number
  private readonly now: () => number
  private readonly gossip = new Map<string, GossipRecord>()
  /** peer id → model key → entry */
  private readonly dht = new Map<string, Map<string, ProviderEntry>>()
  /** peers forgotten as unreachable → the highest seq we had from them, and when that was */
  private readonly unreachable = new Map<string, { seq: number, at: number }>()
  private timer?: NodeJS.Timeout

  constructor (opts: ProviderTableOptions) {
    super()
    this.selfId = opts.selfId
    this.maxPeers = opts.maxPeers ?? 10_000
    this.sweepMs = opts.sweepMs ?? 1_000
    this.seqMemoryMs = opts.seqMemoryMs ?? 11 * 60_000
    this.now = opts.now ?? Date.now
  }

  /** Starts the periodic sweep (an unref'd timer: it never keeps the process alive). */
  start (): void {
    if (this.timer != null) return
    this.timer = setInterval(() => { this.sweep() }, this.sweepMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Typed addEventListener; returns a function that removes the listener. */
  on<K extends keyof ProviderTableEvents> (type: K, listener: (event: ProviderTableEvents[K]) => void): () => void {
    const fn = listener as (event: Event) => void
    this.addEventListener(type, fn)
    return () => { this.removeEventListener(type, fn) }
  }

  /**
   * Replaces everything `peerId` serves with what `ann` lists. The author's seq must
   * be higher than the last one accepted from it: replays and stale copies that took
   * a slower path change nothing.
   */
  applyAnnouncement (peerId: string, ann: ValidAnnouncement, opts: ApplyOptions = {}): ApplyResult {
    if (peerId === this.selfId) return { ok: false, reason: 'self', detail: 'our own announcement' }
    const now = this.now()
    const key = recordKey(peerId, opts.shard)
    const previous = this.gossip.get(key)
    if (previous != null && ann.seq <= previous.seq) {
      return { ok: false, reason: 'stale-seq', detail: `seq ${ann.seq} is not above ${previous.seq}` }
    }
    // forgotten as unreachable: only something newer than all we had brings it back
    // (not an old copy of another of its shards, handed on by the sync exchange)
    const floor = this.unreachable.get(peerId)
    if (floor != null) {
      if (ann.seq <= floor.seq) return { ok: false, reason: 'stale-seq', detail: `seq ${ann.seq} is not above ${floor.seq}, the last before it was unreachable` }
      this.unreachable.delete(peerId)
    }
    if (previous == null && this.gossip.size >= this.maxPeers) {
      this.sweep(now)
      if (this.gossip.size >= this.maxPeers) return { ok: false, reason: 'table-full', detail: `already tracking ${this.maxPeers} peers` }
    }

    const expiresAt = now + Math.max(0, Math.min(ann.ttlMs, opts.remainingMs ?? Infinity))
    const entries = new Map<string, ProviderEntry>()
    for (const model of ann.models) {
      entries.set(modelId(model.name), {
        peerId,
        model,
        capacity: ann.capacity,
        version: ann.version,
        source: 'gossip',
        receivedAt: now,
        expiresAt
      })
    }
    // entries expired but not yet swept count as present: listeners saw no 'vanished' yet
    const before = previous?.entries ?? new Map<string, ProviderEntry>()
    this.gossip.set(key, {
      peerId,
      shard: opts.shard,
      seq: ann.seq,
      signed: opts.signed,
      entries,
      expiresAt,
      withdrawn: ann.models.length === 0,
      forgetAt: Math.max(previous?.forgetAt ?? 0, expiresAt + this.seqMemoryMs)
    })
    // signed gossip is authoritative about this peer: forget what the DHT said
    this.dht.delete(peerId)
    return { ok: true, ...this.diff(peerId, before, entries, key) }
  }

  /**
   * The signed announcements of peers listed now (withdrawals and expired ones left
   * out), longest-lived first, each with how much longer we keep it: what the sync
   * exchange gives a newcomer.
   */
  signedAnnouncements (max: number): Array<SignedAnnouncement & { remainingMs: number }> {
    const now = this.now()
    const out: Array<SignedAnnouncement & { remainingMs: number }> = []
    for (const record of this.gossip.values()) {
      if (record.signed == null || record.expiresAt <= now || record.entries.size === 0) continue
      out.push({ ...record.signed, ...(record.shard != null ? { shard: record.shard } : {}), remainingMs: record.expiresAt - now })
    }
    return out.sort((a, b) => b.remainingMs - a.remainingMs).slice(0, max)
  }

  /**
   * Adds peers a DHT lookup returned for `model` (name only; `digest` when the lookup
   * was by digest). Peers whose gossip we trust more are left out: a live announcement
   * says exactly what they serve, and a withdrawal means they serve nothing, whatever
   * a 48-hour provider record still claims. Returns the entries now listed.
   */
  addDhtProviders (model: string, peerIds: string[], opts: { ttlMs: number, digest?: string }): ProviderEntry[] {
    const now = this.now()
    const key = modelId(model)
    const out: ProviderEntry[] = []
    for (const peerId of peerIds) {
      if (peerId === this.selfId) continue
      // the author's whole list (v1), else the record of the model's shard (v2)
      const whole = this.gossip.get(peerId)
      const part = this.gossip.get(recordKey(peerId, modelShard(model)))
      const record = [whole, part].find(r => r != null && r.expiresAt > now) ?? [whole, part].find(r => r?.withdrawn === true)
      if (record != null) {
        const entry = record.expiresAt > now ? record.entries.get(key) : undefined
        if (entry != null) out.push(entry)
        continue
      }
      let byModel = this.dht.get(peerId)
      if (byModel == null) {
        if (this.dht.size >= this.maxPeers) continue
        byModel = new Map()
        this.dht.set(peerId, byModel)
      }
      const entry: ProviderEntry = {
        peerId,
        model: unknownModel(canonicalModelName(model), opts.digest ?? byModel.get(key)?.model.digest ?? ''),
        capacity: { slots: 0, active: 0, queued: 0 },
        version: '',
        source: 'dht',
        receivedAt: now,
        expiresAt: now + opts.ttlMs
      }
      byModel.set(key, entry)
      out.push(entry)
    }
    return out
  }

  /** The peer's connection closed: drop what it announced now (its seq is kept). */
  removePeer (peerId: string): void {
    this.dht.delete(peerId)
    for (const record of this.recordsOf(peerId)) {
      if (record.expiresAt <= this.now()) continue
      const before = record.entries
      record.entries = new Map()
      record.expiresAt = this.now()
      this.diff(peerId, before, record.entries, recordKey(peerId, record.shard))
    }
  }

  /**
   * A dial to the peer failed (no connection, no route): drop everything it
   * announced, every shard included, until it announces with a higher seq than any
   * we had. A live provider re-announces within a refresh; a gone one stays out
   * instead of being listed for the rest of its TTL (an hour at scale). A DHT
   * lookup lists it again only once it is reached.
   */
  forgetUnreachable (peerId: string): void {
    const seq = this.lastSeq(peerId)
    if (seq != null) {
      if (this.unreachable.size >= this.maxPeers) this.unreachable.clear()
      this.unreachable.set(peerId, { seq, at: this.now() })
    }
    this.removePeer(peerId)
  }

  /** the highest seq accepted from `peerId` (any shard), if it is still remembered */
  lastSeq (peerId: string): number | undefined {
    const seqs = this.recordsOf(peerId).map(r => r.seq)
    return seqs.length > 0 ? Math.max(...seqs) : undefined
  }

  /** how many peers announce some model right now (by gossip or sync): the swarm's size as we see it */
  gossipProviders (): number {
    const now = this.now()
    const peers = new Set<string>()
    for (const record of this.gossip.values()) if (record.expiresAt > now && record.entries.size > 0) peers.add(record.peerId)
    return peers.size
  }

  private recordsOf (peerId: string): GossipRecord[] {
    const out: GossipRecord[] = []
    for (const record of this.gossip.values()) if (record.peerId === peerId) out.push(record)
    return out
  }

  /** true when some peer announces `model` right now (no DHT lookup needed) */
  hasFreshAnnouncement (model: string): boolean {
    return this.providersFor(model).some(e => e.source === 'gossip')
  }

  providersFor (model: string, digest?: string): ProviderEntry[] {
    const key = modelId(model)
    const now = this.now()
    const byPeer = new Map<string, ProviderEntry>()
    for (const record of this.gossip.values()) {
      if (record.expiresAt <= now) continue
      const entry = record.entries.get(key)
      if (entry != null && (digest == null || entry.model.digest === digest)) keepNewest(byPeer, entry.peerId, entry)
    }
    const out = [...byPeer.values()]
    for (const byModel of this.dht.values()) {
      const entry = byModel.get(key)
      if (entry != null && entry.expiresAt > now && (digest == null || entry.model.digest === digest)) out.push(entry)
    }
    return out
  }

  all (): ProviderEntry[] {
    const now = this.now()
    const byPeerModel = new Map<string, ProviderEntry>()
    for (const record of this.gossip.values()) {
      if (record.expiresAt <= now) continue
      for (const [key, entry] of record.entries) keepNewest(byPeerModel, `${entry.peerId}\n${key}`, entry)
    }
    const out = [...byPeerModel.values()]
    for (const byModel of this.dht.values()) {
      for (const entry of byModel.values()) if (entry.expiresAt > now) out.push(entry)
    }
    return out
  }

  catalog (): CatalogEntry[] {
    const groups = new Map<string, ProviderEntry[]>()
    for (const entry of this.all()) {
      const key = modelId(entry.model.name)
      const group = groups.get(key)
      if (group == null) groups.set(key, [entry])
      else group.push(entry)
    }
    const out: CatalogEntry[] = []
    for (const group of groups.values()) {
      const detailed = group.filter(e => e.source === 'gossip')
      const best = (detailed.length > 0 ? detailed : group)
        .reduce((a, b) => b.model.contextLength > a.model.contextLength ? b : a)
      out.push({
        name: best.model.name,
        digests: [...new Set(group.map(e => e.model.digest).filter(d => d !== ''))].sort(),
        providers: new Set(group.map(e => e.peerId)).size,
        model: best.model
      })
    }
    return out.sort((a, b) => a.name.localeCompare(b.name))
  }

  /** Drops expired entries (sending 'model:vanished') and forgets old seqs. */
  sweep (now = this.now()): void {
    for (const [key, record] of this.gossip) {
      if (record.expiresAt <= now && record.entries.size > 0) {
        const before = record.entries
        record.entries = new Map()
        this.diff(record.peerId, before, record.entries, key)
      }
      if (record.forgetAt <= now) this.gossip.delete(key)
    }
    for (const [peerId, byModel] of this.dht) {
      for (const [key, entry] of byModel) if (entry.expiresAt <= now) byModel.delete(key)
      if (byModel.size === 0) this.dht.delete(peerId)
    }
    // by then every announcement it made before has expired everywhere
    for (const [peerId, f] of this.unreachable) if (f.at + DEFAULT_ANNOUNCEMENT_LIMITS.maxTtlMs + this.seqMemoryMs <= now) this.unreachable.delete(peerId)
  }

  /** Sends the events for one peer's change from `before` to `after`. */
  private diff (peerId: string, before: Map<string, ProviderEntry>, after: Map<string, ProviderEntry>, recordKeyNow: string): { appeared: number, vanished: number } {
    let appeared = 0
    let vanished = 0
    // another live record of the same author (its v1 list next to its shards) still lists it: no event
    const now = this.now()
    const elsewhere = (key: string, digest: string): boolean => {
      for (const [k, r] of this.gossip) {
        if (k !== recordKeyNow && r.peerId === peerId && r.expiresAt > now && r.entries.get(key)?.model.digest === digest) return true
      }
      return false
    }
    for (const [key, old] of before) {
      const next = after.get(key)
      if ((next == null || next.model.digest !== old.model.digest) && !elsewhere(key, old.model.digest)) {
        vanished++
        this.dispatchEvent(new CustomEvent('model:vanished', { detail: { model: old.model.name, digest: old.model.digest, peerId } }))
      }
    }
    for (const [key, next] of after) {
      const old = before.get(key)
      if ((old == null || old.model.digest !== next.model.digest) && !elsewhere(key, next.model.digest)) {
        appeared++
        this.dispatchEvent(new CustomEvent('model:appeared', { detail: { model: next.model.name, digest: next.model.digest, peerId } }))
      }
    }
    return { appeared, vanished }
  }
}
