/**
 * Peers that failed recently are tried last, for a while: the wait doubles with
 * each failure in a row (capped), and one success forgets the peer's record.
 * A peer is never banned for good; its record simply runs out.
 */
export interface BackoffOptions {
  /** wait after the first failure (default 1 s) */
  baseMs?: number
  /** longest wait (default 60 s) */
  maxMs?: number
  now?: () => number
}

interface Record { failures: number, until: number }

export class Backoff {
  private readonly baseMs: number
  private readonly maxMs: number
  private readonly now: () => number
  private readonly peers = new Map<string, Record>()

  constructor (opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 1_000
    this.maxMs = opts.maxMs ?? 60_000
    this.now = opts.now ?? Date.now
  }

  /** Records a failure; returns until when the peer is backed off. */
  fail (peer: string): number {
    const now = this.now()
    const prev = this.peers.get(peer)
    const failures = (prev?.failures ?? 0) + 1
    const wait = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(failures - 1, 30))
    const until = now + wait
    this.peers.set(peer, { failures, until })
    this.prune(now)
    return until
  }

  succeed (peer: string): void {
    this.peers.delete(peer)
  }

  /** until when `peer` is backed off; 0 when it is not */
  until (peer: string): number {
    const rec = this.peers.get(peer)
    return rec != null && rec.until > this.now() ? rec.until : 0
  }

  failures (peer: string): number {
    return this.peers.get(peer)?.failures ?? 0
  }

  /**
   * Records whose wait ended long ago go, so the map stays as small as the set of
   * recently failing peers; a peer that fails again soon after keeps its count.
   */
  private prune (now: number): void {
    if (this.peers.size < 256) return
    for (const [peer, rec] of this.peers) {
      if (rec.until + this.maxMs < now) this.peers.delete(peer)
    }
  }
}
