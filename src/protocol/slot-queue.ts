/**
 * A bounded FIFO in front of a fixed number of slots: at most `slots` holders at
 * once, at most `maxQueue` waiting; anything beyond that is refused at once so the
 * caller can answer BUSY instead of piling work up.
 */

export type Release = () => void

export interface SlotTicket {
  /** 0: got a slot now; n >= 1: n-th in the waiting line */
  position: number
  /** resolves with the slot's release function; rejects if the wait is aborted */
  ready: Promise<Release>
}

interface Waiter {
  resolve: (release: Release) => void
  reject: (reason: unknown) => void
  detach: () => void
}

export class SlotQueue {
  readonly slots: number
  readonly maxQueue: number
  private running = 0
  private readonly waiters: Waiter[] = []

  constructor (slots: number, maxQueue: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`)
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError(`maxQueue must be a non-negative integer, got ${maxQueue}`)
    this.slots = slots
    this.maxQueue = maxQueue
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
  enter (signal?: AbortSignal): SlotTicket | undefined {
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

  private startWaiting (): void {
    while (this.running < this.slots && this.waiters.length > 0) {
      const waiter = this.waiters.shift() as Waiter
      waiter.detach()
      this.running++
      waiter.resolve(this.releaser())
    }
  }
}
