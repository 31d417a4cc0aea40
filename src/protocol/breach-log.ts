/**
 * One log line per limit breach, without letting a flood flood the log: the first
 * breach of a kind by a peer is logged at once; repeats within `windowMs` are
 * counted and summed up in the next line after the window. Memory stays bounded by
 * `maxKeys` (the oldest keys are forgotten first).
 */
import type { Logger } from '../log.js'

interface Entry {
  loggedAt: number
  suppressed: number
}

export interface BreachLogOptions {
  windowMs?: number
  maxKeys?: number
  now?: () => number
}

export class BreachLog {
  private readonly log: Logger
  private readonly windowMs: number
  private readonly maxKeys: number
  private readonly now: () => number
  private readonly entries = new Map<string, Entry>()

  constructor (log: Logger, opts: BreachLogOptions = {}) {
    this.log = log
    this.windowMs = opts.windowMs ?? 60_000
    this.maxKeys = opts.maxKeys ?? 1_000
    this.now = opts.now ?? Date.now
  }

  /** Logs `line` (a breach of kind `kind` by `peer`) unless the same was logged just now. */
  note (peer: string, kind: string, line: string): void {
    const key = `${kind} ${peer}`
    const now = this.now()
    const entry = this.entries.get(key)
    if (entry != null && now - entry.loggedAt < this.windowMs) {
      entry.suppressed++
      return
    }
    const more = entry != null && entry.suppressed > 0 ? ` (and ${entry.suppressed} more like it from this peer since the last line)` : ''
    this.log.warn(line + more)
    this.entries.delete(key)
    this.entries.set(key, { loggedAt: now, suppressed: 0 })
    while (this.entries.size > this.maxKeys) {
      this.entries.delete(this.entries.keys().next().value as string)
    }
  }
}
