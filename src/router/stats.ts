/**
 * Counters of the router, read by the metrics endpoint. Time to first token is
 * delivered to listeners sample by sample (a histogram needs each one) and the
 * most recent samples are kept for quick summaries.
 */
import type { ErrorCodeName } from '../errors.js'

const KEPT_SAMPLES = 1024

export type TtftListener = (ms: number, model: string, local: boolean) => void

export class RouterStats {
  /** chats started */
  requests = 0
  /** chats that ended with a done */
  completed = 0
  /** chats that ended with an error (the client saw it) */
  failed = 0
  /** chats the client abandoned */
  cancelled = 0
  /** tokens delivered to clients */
  tokens = 0
  /** attempts abandoned for another provider, before or after the first token */
  failovers = 0
  /** of those, after tokens had flowed (answer continued elsewhere) */
  continuations = 0
  /**
   * attempts repeated on the same provider because the connection under them was
   * replaced (DCUtR): not failures, so not counted as failovers
   */
  reconnects = 0
  /**
   * second providers asked because the first had not accepted in time (hedging);
   * the slower of the two is cancelled
   */
  hedges = 0
  /** chats served by the local engine / by peers */
  local = 0
  remote = 0
  /** errors the client saw, by code */
  readonly errors: Partial<Record<ErrorCodeName, number>> = {}
  /** recent time-to-first-token samples in ms, oldest first */
  readonly ttftMs: number[] = []
  private readonly listeners = new Set<TtftListener>()

  /** Calls `listener` for each time-to-first-token sample; returns the unsubscribe function. */
  onTtft (listener: TtftListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  recordTtft (ms: number, model: string, local: boolean): void {
    this.ttftMs.push(ms)
    if (this.ttftMs.length > KEPT_SAMPLES) this.ttftMs.splice(0, this.ttftMs.length - KEPT_SAMPLES)
    for (const listener of this.listeners) {
      try {
        listener(ms, model, local)
      } catch { /* a broken metrics listener must not break a chat */ }
    }
  }

  recordError (code: ErrorCodeName): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1
  }
}
