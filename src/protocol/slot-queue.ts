/**
 * A bounded line in front of a fixed number of slots: at most `slots` holders at
 * once, at most `maxQueue` waiting; anything beyond that is refused at once so the
 * caller can answer BUSY instead of piling work up.
 *
 * Fair share: when a slot frees up, the waiter with the highest
 *   standing(peer) + waited / agingMs
 * goes next (the earliest on a tie). `standing` is in (-1, 1) (src/receipts/standing.ts
 * via the `standing` option; 0 for everyone without it), so standing orders the line
 * while waiting time guarantees progress: a request that has waited 2 × agingMs
 * longer than another goes before it whatever the two peers' standing. Without a
 * `standing` source the line is first in, first out.
 */

export type Release = () => void

export interface SlotTicket {
  /** 0: got a slot now; n >= 1: n-th in the waiting line */
  position: number
  /** resolves with the slot's release function; rejects if the wait is aborted */
  ready: Promise<Release>
}

export interface SlotQueueOptions {
  /** a requester's standing with us, in (-1, 1); higher goes first */
  standing?: (peer: string) => number
  /** waiting this long is worth one full point of standing (default 5 s) */
  agingMs?: number
  now?: () => number
}

export const DEFAULT_AGING_MS = 5_000

interface Waiter {
  peer: string
  since: number
  resolve: (release: Release) => void
  reject: (reason: unknown) => void
  detach: () => void
}

export class SlotQueue {
  readonly slots: number
  readonly maxQueue: number
  private running = 0
  private readonly waiters: Waiter[] = []
  private readonly standing: ((peer: string) => number) | undefined
  private readonly agingMs: number
  private readonly now: () => number

  constructor (slots: number, maxQueue: number, opts: SlotQueueOptions = {}) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`)
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError(`maxQueue must be a non-negative integer, got ${maxQueue}`)
    this.slots = slots
    this.maxQueue = maxQueue
    this.standing = opts.standing
    this.agingMs = opts.agingMs ?? DEFAULT_AGING_MS
    this.now = opts.now ?? Date.now
  }

  /** true when a request entering now would run at once */
  get hasFreeSlot (): boolean {
    return this.running < this.slots && this.waiters.length === 0
  }

  get active (): number {
    return this.running
  }

  get queued (): number {
    return this.waiters.length
  }

  /**
   * Takes a slot or a place in line; undefined when both are full. Aborting
   * `signal` while waiting leaves the line and rejects `ready` with its reason.
   */
  enter (signal?: AbortSignal, peer = ''): SlotTicket | undefined {
    if (signal?.aborted === true) return { position: 0, ready: Promise.reject(signal.reason) }
    if (this.running < this.slots && this.waiters.length === 0) {
      this.running++
      return { position: 0, ready: Promise.resolve(this.releaser()) }
    }
    if (this.waiters.length >= this.maxQueue) return undefined

    const { promise, resolve, reject } = Promise.withResolvers<Release>()
    const onAbort = (): void => {
      const i = this.waiters.indexOf(waiter)
      if (i >= 0) this.waiters.splice(i, 1)
      reject(signal?.reason)
    }
    const waiter: Waiter = {
      peer,
      since: this.now(),
      resolve,
      reject,
      detach: () => signal?.removeEventListener('abort', onAbort)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    this.waiters.push(waiter)
    return { position: this.waiters.length, ready: promise }
  }

  /** Rejects everyone waiting (e.g. on shutdown); holders keep their slots. */
  rejectWaiting (reason: unknown): void {
    for (const waiter of this.waiters.splice(0)) {
      waiter.detach()
      waiter.reject(reason)
    }
  }

  private releaser (): Release {
    let released = false
    return () => {
      if (released) return
      released = true
      this.running--
      this.startWaiting()
    }
  }

  /** index of the waiter to go next */
  private next (): number {
    if (this.standing == null) return 0
    const now = this.now()
    let best = 0
    let bestScore = -Infinity
    const scores = new Map<string, number>()
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i]
      let standing = scores.get(w.peer)
      if (standing == null) {
        standing = clampStanding(this.standing(w.peer))
        scores.set(w.peer, standing)
      }
      const score = standing + (now - w.since) / this.agingMs
      if (score > bestScore) {
        best = i
        bestScore = score
      }
    }
    return best
  }

  private startWaiting (): void {
    while (this.running < this.slots && this.waiters.length > 0) {
      const waiter = this.waiters.splice(this.next(), 1)[0]
      waiter.detach()
      this.running++
      waiter.resolve(this.releaser())
    }
  }
}

function clampStanding (x: number): number {
  return Number.isFinite(x) ? Math.max(-1, Math.min(1, x)) : 0
}
