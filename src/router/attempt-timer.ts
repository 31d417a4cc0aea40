/**
 * Time limits of one attempt: the first token must come within `firstTokenMs` of
 * the start (queueing and model loading included), and after that the provider may
 * not fall silent for longer than `stallMs`. Firing aborts the attempt's controller.
 */
import { KrillError } from '../errors.js'

export class AttemptTimer {
  private timer: NodeJS.Timeout | undefined
  private fired: 'first-token' | 'stall' | undefined
  private armed: 'first-token' | 'stall' | undefined
  private started = false

  constructor (
    private readonly ac: AbortController,
    private readonly firstTokenMs: number,
    private readonly stallMs: number
  ) {
    this.arm('first-token', firstTokenMs)
  }

  /** call on every token-bearing event */
  progress (): void {
    this.started = true
    this.arm('stall', this.stallMs)
  }

  get tokensStarted (): boolean {
    return this.started
  }

  /** the timeout error when this timer ended the attempt, else undefined */
  error (peer: string): KrillError | undefined {
    if (this.fired === 'first-token') return new KrillError('TIMEOUT', `provider ${peer} sent no token within ${this.firstTokenMs} ms`, { peer })
    if (this.fired === 'stall') return new KrillError('TIMEOUT', `provider ${peer} went silent for ${this.stallMs} ms mid-answer`, { peer })
    return undefined
  }

  clear (): void {
    this.armed = undefined
    clearTimeout(this.timer)
  }

  private arm (kind: 'first-token' | 'stall', ms: number): void {
    // every token re-arms the stall timer: restarting it is cheaper than a new one
    if (kind === 'stall' && this.armed === 'stall' && this.timer != null && this.fired == null) {
      this.timer.refresh()
      return
    }
    this.armed = kind
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.fired = kind
      this.ac.abort(new KrillError('TIMEOUT', `${kind} timeout`))
    }, ms)
    this.timer.unref()
  }
}
