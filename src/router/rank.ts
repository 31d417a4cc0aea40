/**
 * Provider ranking as pure functions, so the policy can be tested with plain data.
 * Order: peers in backoff last; exact digest matches before unknown digests before
 * other digests; the local engine when it has a free slot; more free capacity;
 * lower latency (bucketed, so 1.2 ms and 1.4 ms count as equal); then a random
 * tiebreak, which spreads load between equals.
 */
import type { Capacity, ProviderEntry } from '../discovery/types.js'

/** One place a request could run: the local engine or a peer. */
export interface Candidate {
  peerId: string
  local: boolean
  /** model name as the provider knows it */
  model: string
  /** '' when unknown (a DHT record carries no details) */
  digest: string
  /** undefined when unknown (DHT) */
  capacity?: Capacity
  /** when the capacity was announced; chats we started before that are already in it */
  capacityAt?: number
  source: 'local' | 'gossip' | 'dht'
  /** what the copy can do, as its provider announced; undefined when unknown */
  capabilities?: string[]
}

export interface RankContext {
  /** the request's pinned digest: other digests are not allowed at all */
  digest?: string
  /** a digest to prefer without excluding others (the one a failed-over answer started on) */
  preferDigest?: string
  /** measured round-trip time to a peer in ms; undefined when never measured */
  latencyMs: (peerId: string) => number | undefined
  /**
   * chats this node runs on the peer right now that started after `since` (those the
   * peer's announced load cannot show yet); all of them when `since` is undefined
   */
  inflight: (peerId: string, since?: number) => number
  /** until when the peer is backed off (0: not) */
  backoffUntil: (peerId: string) => number
  now: number
  /** in [0, 1); injectable for tests */
  random?: () => number
}

/** Latencies within one bucket are equals. */
export const LATENCY_BUCKET_MS = 10
/** Used for peers never measured: behind measured ones on a LAN, ahead of very far ones. */
export const UNKNOWN_LATENCY_MS = 250

export function candidateFromEntry (entry: ProviderEntry): Candidate {
  return {
    peerId: entry.peerId,
    local: false,
    model: entry.model.name,
    digest: entry.model.digest,
    capacity: entry.source === 'dht' ? undefined : entry.capacity,
    capacityAt: entry.source === 'dht' ? undefined : entry.receivedAt,
    source: entry.source,
    capabilities: entry.model.capabilities
  }
}

/** slots - active - queued, minus what we run there that the announcement does not show yet */
export function freeCapacity (c: Candidate, inflight: number): number {
  if (c.capacity == null) return 1 - inflight
  const { slots, active, queued } = c.capacity
  return slots - active - queued - inflight
}

function digestTier (c: Candidate, target: string | undefined): number {
  if (target == null || target === '') return 0
  if (c.digest === target) return 0
  return c.digest === '' ? 1 : 2
}

function latencyBucket (ms: number | undefined): number {
  return Math.floor((ms ?? UNKNOWN_LATENCY_MS) / LATENCY_BUCKET_MS)
}

/**
 * Removes candidates the request cannot use (other digest when one is pinned),
 * merges duplicates of one peer (gossip beats DHT), and sorts the rest best first.
 */
export function rankCandidates (candidates: Candidate[], ctx: RankContext): Candidate[] {
  const random = ctx.random ?? Math.random
  const target = ctx.digest != null && ctx.digest !== '' ? ctx.digest : ctx.preferDigest
  const byPeer = new Map<string, Candidate>()
  for (const c of candidates) {
    if (ctx.digest != null && ctx.digest !== '' && digestTier(c, ctx.digest) === 2) continue
    const seen = byPeer.get(c.peerId)
    const better = seen == null ||
      digestTier(c, target) < digestTier(seen, target) ||
      (digestTier(c, target) === digestTier(seen, target) && seen.source === 'dht' && c.source !== 'dht')
    if (better) byPeer.set(c.peerId, c)
  }
  const keyed = [...byPeer.values()].map(c => {
    const inflight = ctx.inflight(c.peerId, c.capacityAt)
    const free = freeCapacity(c, inflight)
    return {
      c,
      key: [
        ctx.backoffUntil(c.peerId) > ctx.now ? 1 : 0,
        digestTier(c, target),
        c.local && free > 0 ? 0 : 1,
        -free,
        c.local ? 0 : latencyBucket(ctx.latencyMs(c.peerId)),
        random()
      ]
    }
  })
  keyed.sort((a, b) => {
    for (let i = 0; i < a.key.length; i++) {
      if (a.key[i] !== b.key[i]) return a.key[i] - b.key[i]
    }
    return 0
  })
  return keyed.map(k => k.c)
}
