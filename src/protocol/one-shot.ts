/**
 * What the request/answer protocols next to chat (/krill/embed/1.0.0,
 * /krill/show/1.0.0) share with it on the provider side: who may open a stream
 * (peer policy, requests per minute, concurrent streams per peer, with the chat
 * protocol's limits), reading the one request frame within the arrival timeout,
 * and ending the stream after the terminal frame.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { PeerRateLimiter } from '../limits/index.js'
import { KrillError, type ErrorCodeName } from '../errors.js'
import type { Logger } from '../log.js'
import { BreachLog } from './breach-log.js'
import { FrameFormatError, FrameReader, FrameTooLargeError, TruncatedFrameError, writeFrame } from './frame-io.js'
import type { Limits } from '../limits/index.js'

/** Who may use this provider: why not (answered FORBIDDEN), or undefined to serve. */
export type Authorize = (peer: string, connection: Connection) => string | undefined

export class PeerAdmission {
  private readonly limits: Limits
  private readonly authorize?: Authorize
  private readonly rate: PeerRateLimiter
  private readonly perPeer = new Map<string, number>()
  readonly breaches: BreachLog
  private readonly what: string

  constructor (what: string, limits: Limits, log: Logger, authorize?: Authorize) {
    this.what = what
    this.limits = limits
    this.authorize = authorize
    this.rate = new PeerRateLimiter({ burst: limits.requestBurst, perMinute: limits.requestsPerMinute })
    this.breaches = new BreachLog(log)
  }

  /**
   * Counts the stream against its peer and says why it may not go on, if so. Call
   * `leave(peer)` when the stream is over, admitted or not.
   */
  enter (peer: string, connection: Connection): { code: ErrorCodeName, message: string } | undefined {
    const open = (this.perPeer.get(peer) ?? 0) + 1
    this.perPeer.set(peer, open)
    const refusal = this.authorize?.(peer, connection)
    if (refusal != null) return { code: 'FORBIDDEN', message: `this provider does not serve your peer: ${refusal}` }
    if (!this.rate.take(peer)) {
      return { code: 'RATE_LIMITED', message: `too many ${this.what} requests from your peer (limit ${this.limits.requestsPerMinute} a minute, bursts of ${this.limits.requestBurst}); slow down` }
    }
    if (open > this.limits.maxStreamsPerPeer) {
      return { code: 'RATE_LIMITED', message: `too many concurrent ${this.what} streams from your peer (limit ${this.limits.maxStreamsPerPeer})` }
    }
    return undefined
  }

  leave (peer: string): void {
    const left = (this.perPeer.get(peer) ?? 1) - 1
    if (left <= 0) this.perPeer.delete(peer)
    else this.perPeer.set(peer, left)
  }
}

/**
 * Reads the one request frame of a stream within `timeoutMs`. Throws KrillError
 * (BAD_REQUEST, TOO_LARGE, TIMEOUT) for what deserves an Error frame; anything else
 * means the stream itself failed.
 */
export async function readRequestFrame (stream: Stream, maxBytes: number, timeoutMs: number, signal: AbortSignal, what: string): Promise<Uint8Array> {
  const reader = new FrameReader(stream, { maxFrameBytes: maxBytes })
  const arrival = AbortSignal.timeout(timeoutMs)
  try {
    const payload = await reader.read(AbortSignal.any([arrival, signal]))
    if (payload == null) throw new KrillError('BAD_REQUEST', `stream ended before the ${what} arrived`)
    return payload
  } catch (err) {
    if (err instanceof KrillError) throw err
    if (err instanceof FrameTooLargeError) throw new KrillError('TOO_LARGE', `${what} of ${err.length} bytes exceeds the limit of ${err.max} bytes`)
    if (err instanceof FrameFormatError) throw new KrillError('BAD_REQUEST', err.message)
    if (err instanceof TruncatedFrameError) throw new KrillError('BAD_REQUEST', `stream ended inside the ${what} after ${err.received} bytes`)
    if (arrival.aborted) throw new KrillError('TIMEOUT', `no complete ${what} within ${timeoutMs} ms`)
    if (signal.aborted) throw signal.reason
    throw err
  } finally {
    reader.discardRest()
  }
}

export function isWritable (stream: Stream): boolean {
  return stream.status === 'open' && stream.writeStatus === 'writable'
}

/**
 * Sends the terminal frame and closes our writable end; a consumer that does not
 * close its end within `lingerMs` is reset. Never throws.
 */
export async function endWith (stream: Stream, payload: Uint8Array, lingerMs: number): Promise<void> {
  if (!isWritable(stream)) {
    stream.abort(new Error('stream is no longer writable'))
    return
  }
  try {
    await writeFrame(stream, payload, AbortSignal.timeout(lingerMs))
    await stream.close({ signal: AbortSignal.timeout(lingerMs) })
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    return
  }
  if (stream.status === 'open' || stream.status === 'closing') {
    const linger = setTimeout(() => { stream.abort(new Error('consumer did not close the stream')) }, lingerMs)
    linger.unref()
    stream.addEventListener('close', () => { clearTimeout(linger) }, { once: true })
  }
}
