/**
 * A peer's standing with this node: tokens it served us against tokens we served
 * it, both decaying with a half-life, from receipts this node signed itself (as
 * provider, or as consumer countersigning). Nothing a peer shows us counts.
 *
 *   score = (given - taken) / (given + taken + smoothing)   in (-1, 1)
 *
 * A newcomer scores 0; a peer that only gives approaches +1, one that only takes
 * approaches -1. The slot queue adds waiting time on top, so nobody waits forever.
 */

export interface StandingOptions {
  /** tokens lose half their weight after this long (default 6 h) */
  halfLifeMs?: number
  /** tokens that keep a peer with little history near 0 (default 1000) */
  smoothingTokens?: number
  now?: () => number
}

interface Account {
  given: number
  taken: number
  at: number
}

export interface StandingView {
  given: number
  taken: number
  score: number
}

export const DEFAULT_HALF_LIFE_MS = 6 * 3_600_000

export class Standing {
  private readonly halfLifeMs: number
  private readonly smoothing: number
  private readonly now: () => number
  private readonly accounts = new Map<string, Account>()

  constructor (opts: StandingOptions = {}) {
    this.halfLifeMs = opts.halfLifeMs ?? DEFAULT_HALF_LIFE_MS
    this.smoothing = opts.smoothingTokens ?? 1000
    this.now = opts.now ?? Date.now
  }

  /** `peer` served us `tokens` at `atMs` */
  gave (peer: string, tokens: number, atMs = this.now()): void {
    this.add(peer, tokens, 0, atMs)
  }

  /** we served `peer` `tokens` at `atMs` */
  took (peer: string, tokens: number, atMs = this.now()): void {
    this.add(peer, 0, tokens, atMs)
  }

  score (peer: string): number {
    const v = this.view(peer)
    return v.score
  }

  view (peer: string): StandingView {
    const a = this.accounts.get(peer)
    if (a == null) return { given: 0, taken: 0, score: 0 }
    const f = this.decay(this.now() - a.at)
    const given = a.given * f
    const taken = a.taken * f
    return { given, taken, score: (given - taken) / (given + taken + this.smoothing) }
  }

  private add (peer: string, given: number, taken: number, atMs: number): void {
    if (given <= 0 && taken <= 0) return
    const now = this.now()
    // a token earned at atMs has decayed since then
    const age = this.decay(Math.max(0, now - atMs))
    const a = this.accounts.get(peer)
    if (a == null) {
      this.accounts.set(peer, { given: given * age, taken: taken * age, at: now })
      return
    }
    const f = this.decay(now - a.at)
    a.given = a.given * f + given * age
    a.taken = a.taken * f + taken * age
    a.at = now
  }

  private decay (ms: number): number {
    return ms <= 0 ? 1 : Math.pow(2, -ms / this.halfLifeMs)
  }
}
