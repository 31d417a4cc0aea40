/**
 * Time limits of one attempt: the first token must come within `firstTokenMs` of
 * the start (queueing and model loading included), and after that the provider may
 * not fall silent for longer than `stallMs`. Firing aborts the attempt's controller.
 */
import { KrillError } from '../errors.js'
import { StallTimer } from '../stall-timer.js'

export class AttemptTimer {
  private firstToken: NodeJS.Timeout | undefined
  /** after the first token: touched per token (cheaper than restarting a timer each time) */
  private stall: StallTimer | undefined
  private fired: 'first-token' | 'stall' | undefined
  private started = false
  private cleared = false

  constructor (
    private readonly ac: AbortController,
    private readonly firstTokenMs: number,
    private readonly stallMs: number
  ) {
    this.firstToken = setTimeout(() => { this.fire('first-token') }, firstTokenMs)
    this.firstToken.unref()
  }

  /** call on every token-bearing event */
  progress (): void {
    if (this.stall != null) {
      this.stall.touch()
      return
    }
    this.started = true
    if (this.cleared || this.fired != null) return
    clearTimeout(this.firstToken)
    this.stall = new StallTimer(this.stallMs, () => { this.fire('stall') }, { unref: true })
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
    this.cleared = true
    clearTimeout(this.firstToken)
    this.stall?.clear()
  }

  private fire (kind: 'first-token' | 'stall'): void {
    this.fired = kind
    this.ac.abort(new KrillError('TIMEOUT', `${kind} timeout`))
  }
}
