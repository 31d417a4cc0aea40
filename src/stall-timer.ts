/**
 * A limit on silence that every token touches. Restarting a timer per token
 * (`refresh()`) costs about 100 ns, three times per token on a provider; `touch()`
 * only counts, and a timer looks every quarter of the limit whether the count
 * moved. It fires after `ms` to 1.25 × `ms` of silence (bench: throughput).
 */
const CHECKS_PER_LIMIT = 4

export class StallTimer {
  private touches = 0
  private seen = 0
  private quiet = 0
  private timer: ReturnType<typeof setInterval> | undefined

  /** starts counting at once: no touch within `ms` fires too */
  constructor (ms: number, onStall: () => void, opts: { unref?: boolean } = {}) {
    this.timer = setInterval(() => {
      if (this.touches !== this.seen) {
        this.seen = this.touches
        this.quiet = 0
        return
      }
      if (++this.quiet < CHECKS_PER_LIMIT) return
      this.clear()
      onStall()
    }, Math.max(1, ms / CHECKS_PER_LIMIT))
    if (opts.unref === true) this.timer.unref()
  }

  /** progress: the silence starts again */
  touch (): void {
    this.touches++
  }

  clear (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
