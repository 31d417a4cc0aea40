/**
 * A chat stream negotiated ahead of time, one per connection to a provider we
 * chatted with recently, so the next chat's request goes out at once instead of
 * after a multistream-select round trip (and both ends' peer-store merge, stream
 * set-up and loggers). The wire is unchanged: a ready stream is an ordinary
 * `/krill/chat/1.0.0` stream whose ChatRequest comes a little later, well within
 * the provider's request-arrival timeout (`requestTimeoutMs`, 10 s by default).
 *
 * - After a chat takes (or opens) a stream on a connection, `refill` negotiates the
 *   next one in the background.
 * - A ready stream is let go (reset, before any byte) after `maxAgeMs`, under the
 *   provider's arrival timeout; while the provider was used within `activeMs` a
 *   fresh one replaces it, so chats minutes apart still find one ready.
 * - `take` hands out only a stream that is still open both ways and has received
 *   nothing (a provider that timed it out, shut down or refused it has written an
 *   Error frame into it, or closed it); anything else is dropped.
 * - Only direct, unlimited connections get one: a relayed connection has a data
 *   and time budget and may be about to be replaced by DCUtR.
 */
import { logger, type Logger } from '../log.js'
import { MAX_OUTBOUND_CHAT_STREAMS } from '../limits/index.js'
import { CHAT_PROTOCOL } from './ids.js'
import type { ComponentLogger, Connection, Stream } from '@libp2p/interface'

export interface ReadyStreamsOptions {
  /** how long a ready stream is kept unused; under the provider's request-arrival timeout (default 8 s) */
  maxAgeMs?: number
  /** a provider used within this long keeps getting a ready stream (default 60 s) */
  activeMs?: number
  /** how long negotiating a ready stream may take (default 10 s) */
  openTimeoutMs?: number
  logger?: ComponentLogger
}

export interface ReadyStreamsStats {
  /** ready streams negotiated */
  opened: number
  /** handed to a chat */
  taken: number
  /** let go unused after maxAgeMs */
  expired: number
  /** found closed or written to when a chat wanted it */
  stale: number
}

interface Entry {
  stream?: Stream
  /** set while a ready stream is being negotiated */
  opening?: Promise<void>
  lastUsed: number
  expiry?: ReturnType<typeof setTimeout>
  onClose: () => void
}

export const DEFAULT_READY_MAX_AGE_MS = 8_000
export const DEFAULT_READY_ACTIVE_MS = 60_000

export class ReadyStreams {
  private readonly entries = new Map<Connection, Entry>()
  private readonly maxAgeMs: number
  private readonly activeMs: number
  private readonly openTimeoutMs: number
  private readonly log: Logger
  private stopped = false
  readonly stats: ReadyStreamsStats = { opened: 0, taken: 0, expired: 0, stale: 0 }

  constructor (opts: ReadyStreamsOptions = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? DEFAULT_READY_MAX_AGE_MS
    this.activeMs = opts.activeMs ?? DEFAULT_READY_ACTIVE_MS
    this.openTimeoutMs = opts.openTimeoutMs ?? 10_000
    this.log = logger('ready-streams', opts.logger != null ? { logger: opts.logger } : undefined)
  }

  /** The ready stream on `conn`, if there is a usable one; the caller owns it from now on. */
  take (conn: Connection): Stream | undefined {
    const entry = this.entries.get(conn)
    const stream = entry?.stream
    if (entry == null || stream == null) return undefined
    entry.stream = undefined
    clearTimeout(entry.expiry)
    if (isUnused(stream)) {
      this.stats.taken++
      return stream
    }
    this.stats.stale++
    stream.abort(new Error('ready chat stream went stale'))
    return undefined
  }

  /**
   * Like take(), but when a ready stream is being negotiated on `conn` right now,
   * waits for it: it started before the caller, so it is ready sooner than a
   * stream the caller would negotiate itself (back-to-back chats).
   */
  async takeSoon (conn: Connection, signal?: AbortSignal): Promise<Stream | undefined> {
    const pending = this.entries.get(conn)?.opening
    if (pending != null) {
      await raceAbort(pending, signal)
      if (signal?.aborted === true) return undefined
    }
    return this.take(conn)
  }

  /** A chat just started on `conn`: have the next stream ready for the one after it. */
  refill (conn: Connection): void {
    if (this.stopped || conn.status !== 'open' || conn.limits != null) return
    let entry = this.entries.get(conn)
    if (entry == null) {
      const onClose = (): void => { this.forget(conn) }
      entry = { lastUsed: 0, onClose }
      this.entries.set(conn, entry)
      conn.addEventListener('close', onClose, { once: true })
    }
    entry.lastUsed = Date.now()
    this.open(conn, entry)
  }

  /** Lets every ready stream go; refill does nothing from now on. */
  stop (): void {
    this.stopped = true
    for (const conn of [...this.entries.keys()]) this.forget(conn)
  }

  /** true for a ready stream held here, waiting for a chat */
  holds (stream: Stream): boolean {
    for (const e of this.entries.values()) if (e.stream === stream) return true
    return false
  }

  /** ready streams held now (for tests and status) */
  get size (): number {
    let n = 0
    for (const e of this.entries.values()) if (e.stream != null) n++
    return n
  }

  private open (conn: Connection, entry: Entry): void {
    if (entry.stream != null || entry.opening != null) return
    entry.opening = conn.newStream(CHAT_PROTOCOL, {
      signal: AbortSignal.timeout(this.openTimeoutMs),
      maxOutboundStreams: MAX_OUTBOUND_CHAT_STREAMS,
      runOnLimitedConnection: true
    }).then(stream => {
      entry.opening = undefined
      if (this.stopped || this.entries.get(conn) !== entry) {
        stream.abort(new Error('ready chat stream not needed'))
        return
      }
      this.stats.opened++
      entry.stream = stream
      stream.addEventListener('close', () => { if (entry.stream === stream) entry.stream = undefined }, { once: true })
      entry.expiry = setTimeout(() => { this.expire(conn, entry, stream) }, this.maxAgeMs)
      entry.expiry.unref?.()
    }, (err: unknown) => {
      entry.opening = undefined
      // the next chat negotiates its own stream, as without a ready one
      this.log.debug(`could not open a ready chat stream to ${conn.remotePeer.toString()}: ${err instanceof Error ? err.message : String(err)}`)
    })
  }

  private expire (conn: Connection, entry: Entry, stream: Stream): void {
    if (entry.stream !== stream) return
    entry.stream = undefined
    this.stats.expired++
    // a reset before any byte: the provider lets it go without an answer
    stream.abort(new Error('ready chat stream expired'))
    if (!this.stopped && conn.status === 'open' && Date.now() - entry.lastUsed < this.activeMs) this.open(conn, entry)
    else this.forget(conn)
  }

  private forget (conn: Connection): void {
    const entry = this.entries.get(conn)
    if (entry == null) return
    this.entries.delete(conn)
    clearTimeout(entry.expiry)
    conn.removeEventListener('close', entry.onClose)
    entry.stream?.abort(new Error('ready chat stream let go'))
    entry.stream = undefined
  }
}

async function raceAbort (p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (signal == null) { await p; return }
  if (signal.aborted) return
  await new Promise<void>(resolve => {
    const done = (): void => { signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done, { once: true })
    p.then(done, done)
  })
}

/** open both ways, nothing received: the provider still waits for our request on it */
function isUnused (stream: Stream): boolean {
  return stream.status === 'open' &&
    stream.writeStatus === 'writable' &&
    stream.remoteWriteStatus === 'writable' &&
    stream.readBufferLength === 0
}
