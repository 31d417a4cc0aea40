/**
 * Per-peer token buckets: each peer may send `burst` messages at once and `perMinute`
 * on average. Memory stays bounded: a full bucket carries no information, so buckets
 * are dropped once refilled, and the oldest goes first when there are too many.
 */
export interface RateLimitOptions {
  burst: number
  perMinute: number
  /** most peers tracked at once */
  maxPeers?: number
  now?: () => number
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export class PeerRateLimiter {
  private readonly burst: number
  private readonly perMs: number
  private readonly maxPeers: number
  private readonly now: () => number
  private readonly buckets = new Map<string, Bucket>()

  constructor (opts: RateLimitOptions) {
    this.burst = opts.burst
    this.perMs = opts.perMinute / 60_000
    this.maxPeers = opts.maxPeers ?? 10_000
    this.now = opts.now ?? Date.now
  }

  /** Takes one token for `peer`; false when the peer is over its rate. */
  take (peer: string): boolean {
    const now = this.now()
    const bucket = this.buckets.get(peer)
    let tokens = bucket == null ? this.burst : Math.min(this.burst, bucket.tokens + (now - bucket.updatedAt) * this.perMs)
    if (tokens < 1) {
      if (bucket != null) { bucket.tokens = tokens; bucket.updatedAt = now }
      return false
    }
    tokens -= 1
    // re-insert so Map order is least-recently-used first
    this.buckets.delete(peer)
    this.buckets.set(peer, { tokens, updatedAt: now })
    if (this.buckets.size > this.maxPeers) this.prune(now)
    return true
  }

  private prune (now: number): void {
    for (const [peer, b] of this.buckets) {
      if (b.tokens + (now - b.updatedAt) * this.perMs >= this.burst) this.buckets.delete(peer)
    }
    while (this.buckets.size > this.maxPeers) {
      const oldest = this.buckets.keys().next().value as string
      this.buckets.delete(oldest)
    }
  }
}
