/**
 * Length-prefixed frames on a libp2p v3 stream: an unsigned varint length, then that
 * many bytes. We do this by hand rather than with @libp2p/utils' lpStream because we
 * need (a) the declared length checked before the body arrives (TOO_LARGE at once),
 * (b) a clean end-of-stream at a frame boundary told apart from a truncated frame,
 * and (c) real read backpressure: lpStream buffers without pausing and resets the
 * stream at 4 MiB, while a paused yamux stream stops granting send window.
 */
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { writeVarint } from './frames.js'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

/** The peer declared a frame longer than we accept. */
export class FrameTooLargeError extends Error {
  readonly length: number
  readonly max: number
  constructor (length: number, max: number) {
    super(`frame of ${length} bytes exceeds the limit of ${max} bytes`)
    this.name = 'FrameTooLargeError'
    this.length = length
    this.max = max
  }
}

/** The bytes cannot be a frame (length prefix is not a sane varint). */
export class FrameFormatError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'FrameFormatError'
  }
}

/** The stream ended in the middle of a frame. */
export class TruncatedFrameError extends Error {
  readonly received: number
  constructor (received: number) {
    super(`stream ended inside a frame after ${received} bytes`)
    this.name = 'TruncatedFrameError'
    this.received = received
  }
}

/** A length prefix longer than this cannot encode a length we would ever accept (53-bit safe integers). */
export const MAX_PREFIX_BYTES = 8

export type LengthPrefix =
  | { status: 'ok', value: number, bytes: number }
  /** more bytes are needed */
  | { status: 'incomplete' }
  /** longer than MAX_PREFIX_BYTES: never a length we accept */
  | { status: 'overlong' }

/**
 * The unsigned-varint length prefix at the start of `buf` (decoded by uint8-varint),
 * telling a prefix still arriving from one that can never be valid.
 */
export function readLengthPrefix (buf: Uint8ArrayList | Uint8Array): LengthPrefix {
  const list = buf instanceof Uint8Array ? undefined : buf
  const available = Math.min(buf.byteLength, MAX_PREFIX_BYTES)
  // decoded while scanning (as uint8-varint decodes it): this runs once per frame
  let value = 0
  let scale = 1
  for (let i = 0; i < available; i++) {
    const b = list != null ? list.get(i) : (buf as Uint8Array)[i]
    value += (b & 0x7f) * scale
    if (b < 0x80) return { status: 'ok', value, bytes: i + 1 }
    scale *= 128
  }
  return buf.byteLength >= MAX_PREFIX_BYTES ? { status: 'overlong' } : { status: 'incomplete' }
}

/** yamux's default maximum stream window (@chainsafe/libp2p-yamux MAX_STREAM_WINDOW) */
const DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024

/**
 * The bytes a FrameReader holds: the chunks as they arrived, read from an offset
 * into the first. A frame inside one chunk (nearly every one) comes back as a view
 * of it, without a list or a copy; only a frame split between chunks is copied
 * together (bench: throughput, the consumer's per-token cost).
 */
class ChunkQueue {
  private chunks: Uint8Array[] = []
  /** where the unread bytes of chunks[0] start */
  private offset = 0
  byteLength = 0

  append (data: Uint8Array | Uint8ArrayList): void {
    if (data instanceof Uint8Array) {
      if (data.byteLength > 0) this.chunks.push(data)
    } else {
      for (const chunk of data) if (chunk.byteLength > 0) this.chunks.push(chunk)
    }
    this.byteLength += data.byteLength
  }

  /** the length prefix at the front (see readLengthPrefix) */
  prefix (): LengthPrefix {
    const first = this.chunks[0]
    if (first == null) return { status: 'incomplete' }
    if (first.byteLength - this.offset >= MAX_PREFIX_BYTES) return readLengthPrefix(first.subarray(this.offset, this.offset + MAX_PREFIX_BYTES))
    // a prefix at the end of a chunk: gather its bytes
    const bytes = new Uint8Array(Math.min(this.byteLength, MAX_PREFIX_BYTES))
    this.copyTo(bytes, 0)
    return readLengthPrefix(bytes)
  }

  /** bytes [start, end) of what is held, then drops the first `end` bytes */
  take (start: number, end: number): Uint8Array {
    const first = this.chunks[0]
    let out: Uint8Array
    if (this.offset + end <= first.byteLength) {
      out = first.subarray(this.offset + start, this.offset + end)
    } else {
      out = new Uint8Array(end - start)
      this.copyTo(out, start)
    }
    this.consume(end)
    return out
  }

  consume (bytes: number): void {
    this.byteLength -= bytes
    while (bytes > 0) {
      const left = this.chunks[0].byteLength - this.offset
      if (bytes < left) {
        this.offset += bytes
        return
      }
      bytes -= left
      this.chunks.shift()
      this.offset = 0
    }
  }

  clear (): void {
    this.chunks = []
    this.offset = 0
    this.byteLength = 0
  }

  /** fills `out` with the held bytes from `from` on */
  private copyTo (out: Uint8Array, from: number): void {
    let skip = this.offset + from
    let at = 0
    for (const chunk of this.chunks) {
      if (at === out.byteLength) return
      if (skip >= chunk.byteLength) {
        skip -= chunk.byteLength
        continue
      }
      const piece = chunk.subarray(skip, skip + out.byteLength - at)
      out.set(piece, at)
      at += piece.byteLength
      skip = 0
    }
  }
}

export interface FrameReaderOptions {
  maxFrameBytes: number
  /** pause the stream when this many bytes are buffered unread (default: about 2 × maxFrameBytes, at least 64 KiB) */
  highWaterMark?: number
}

export class FrameReader {
  private readonly stream: Stream
  private readonly maxFrameBytes: number
  private readonly highWaterMark: number
  private readonly buffer = new ChunkQueue()
  private ended = false
  private error: Error | undefined
  private discarding = false
  private paused = false
  private wake: (() => void) | undefined

  constructor (stream: Stream, options: FrameReaderOptions) {
    this.stream = stream
    this.maxFrameBytes = options.maxFrameBytes
    this.highWaterMark = options.highWaterMark ?? Math.max(2 * options.maxFrameBytes + 16, 64 * 1024)
    // While paused, the remote may still send whatever receive window it was
    // granted before (yamux grows it up to 16 MiB on fast links); the stream resets
    // itself if that overflows maxReadBufferLength (4 MiB by default), so make room.
    const window = (stream as { maxStreamWindowSize?: unknown }).maxStreamWindowSize
    const maxWindow = typeof window === 'number' ? window : DEFAULT_MAX_STREAM_WINDOW
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, maxWindow + this.highWaterMark)
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    stream.addEventListener('close', this.onClose)
    // the stream may already be over by the time we attach
    if (stream.remoteWriteStatus === 'closed' || ['closed', 'aborted', 'reset'].includes(stream.status)) this.ended = true
  }

  /** bytes received and not yet returned as a frame */
  get bufferedBytes (): number {
    return this.buffer.byteLength
  }

  /**
   * The next frame's payload, or null when the stream ended cleanly at a frame
   * boundary. Throws FrameTooLargeError, FrameFormatError, TruncatedFrameError, the
   * stream's own error (reset/abort) or the signal's reason.
   */
  async read (signal?: AbortSignal): Promise<Uint8Array | null> {
    let lateData = false
    while (true) {
      signal?.throwIfAborted()
      const payload = this.readBuffered()
      if (payload !== undefined) return payload
      if (this.paused && (this.ended || this.error != null)) {
        // the stream may still hold bytes it kept back while we were paused
        this.resumeNow()
        continue
      }
      if (this.error != null) throw this.error
      if (this.ended && !lateData && this.buffer.byteLength === 0 && this.stream.readBufferLength > 0) {
        // bytes that arrived before we attached (with the end right behind them, e.g.
        // a refusal sent on negotiation): the stream hands them over in a microtask
        lateData = true
        await new Promise<void>(resolve => { queueMicrotask(resolve) })
        continue
      }
      if (this.ended) {
        if (this.buffer.byteLength === 0) return null
        throw new TruncatedFrameError(this.buffer.byteLength)
      }
      await this.waitForData(signal)
    }
  }

  /**
   * The next frame's payload when it has arrived complete, else undefined (then
   * `read`, which waits): a caller reading a burst of frames gets them without a
   * promise each. Throws FrameTooLargeError or FrameFormatError as `read` does.
   */
  readBuffered (): Uint8Array | undefined {
    const prefix = this.buffer.prefix()
    if (prefix.status === 'overlong') throw new FrameFormatError('frame length prefix is not a valid varint')
    if (prefix.status !== 'ok') return undefined
    if (prefix.value > this.maxFrameBytes) throw new FrameTooLargeError(prefix.value, this.maxFrameBytes)
    const total = prefix.bytes + prefix.value
    if (this.buffer.byteLength < total) return undefined
    const payload = this.buffer.take(prefix.bytes, total)
    this.maybeResume()
    return payload
  }

  /** Stop buffering: anything the remote sends from now on is dropped. */
  discardRest (): void {
    this.discarding = true
    this.buffer.clear()
    this.maybeResume()
  }

  /** Detach from the stream. */
  release (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.stream.removeEventListener('close', this.onClose)
    this.wake?.()
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    if (this.discarding) return
    this.buffer.append(evt.data)
    if (!this.paused && this.buffer.byteLength > this.highWaterMark && this.stream.readStatus === 'readable') {
      // backpressure: yamux stops granting window while paused
      this.stream.pause()
      this.paused = true
    }
    this.wake?.()
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.ended = true
    this.wake?.()
  }

  private readonly onClose = (evt: StreamCloseEvent): void => {
    if (evt.error != null) this.error = evt.error
    this.ended = true
    this.wake?.()
  }

  private maybeResume (): void {
    if (this.paused && this.buffer.byteLength <= this.highWaterMark / 2) this.resumeNow()
  }

  private resumeNow (): void {
    this.paused = false
    // resume() synchronously re-emits what the stream buffered while paused
    if (this.stream.readStatus === 'paused') this.stream.resume()
  }

  private async waitForData (signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.wake = undefined
        reject(signal?.reason)
      }
      this.wake = () => {
        this.wake = undefined
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/** Prefixes `payload` with its length. */
export function lengthPrefixed (payload: Uint8Array): Uint8ArrayList {
  return new Uint8ArrayList(varint.encode(payload.byteLength), payload)
}

/**
 * Sends one frame and, when the stream asks for it, waits until it drained.
 * (Waits on the 'drain' event itself: in @libp2p/utils 7.4 `onDrain()` keeps
 * returning its first, already-settled promise, so it stops waiting after the
 * first drain.)
 */
export async function writeFrame (stream: Stream, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
  // one contiguous buffer: the layers below write a list's pieces to the socket one by one
  if (stream.send(lengthPrefixed(payload).subarray())) return
  await waitForDrain(stream, signal)
}

/**
 * Bytes a FrameWriter batch holds at most before it is sent (or `write` waits for a
 * drain): one batch is one yamux data frame (12-byte header) and that fits one noise
 * message (65,535 bytes less the 16-byte tag), so a full batch costs one encryption.
 */
export const MAX_BATCH_BYTES = 65_535 - 16 - 12

/** first capacity of a writer's batch buffer; it grows by doubling (to a little over MAX_BATCH_BYTES) */
const MIN_BATCH_CAPACITY = 256

/**
 * Writes frames to one stream, batching frames that follow each other closely.
 * Sent one by one, each frame costs a yamux frame, a noise encryption and two socket
 * writes on this side, and a read, a decryption and a yamux frame on the other; a
 * model emitting faster than that (Ollama hands tokens over one HTTP chunk, i.e.
 * one event-loop turn, at a time) made these the largest per-token cost of a stream
 * (bench: throughput).
 *
 * - When the writer is idle, a frame goes out at once (a model's usual token, tens
 *   of ms after the last one, waits for nothing) and opens a window of `holdMs`;
 *   frames written within the window go out together when it ends, and the window
 *   stays open while frames keep coming. `flush()` sends what is held and closes
 *   the window, so the next frame goes out at once again.
 * - While the stream asks for a drain, frames are held and go out together on the
 *   drain; `write` only waits (backpressure, as with writeFrame) once
 *   MAX_BATCH_BYTES are held.
 *
 * Frames are copied (or, for a content delta, encoded) straight into one batch
 * buffer, and `write` returns a promise only when the caller has to wait: the usual
 * token allocates nothing of its own and costs no promise (bench: throughput).
 */
export class FrameWriter {
  private readonly stream: Stream
  private readonly holdMs: number
  private buf: Buffer | undefined
  private used = 0
  private window: ReturnType<typeof setTimeout> | undefined
  private waitingForDrain = false
  /** a deferred send failed: the next write (or flush) reports it */
  private failed: Error | undefined

  constructor (stream: Stream, opts: { holdMs?: number } = {}) {
    this.stream = stream
    this.holdMs = opts.holdMs ?? 1
  }

  /**
   * Queues one frame. Returns a promise (to await) only while the stream needs a
   * drain and a full batch is held; undefined otherwise. Throws if an earlier
   * deferred send failed.
   */
  write (payload: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    if (this.failed != null) throw this.failed
    const n = payload.byteLength
    let at = this.reserve(varint.encodingLength(n) + n)
    at = writeVarint(this.buf as Buffer, at, n)
    ;(this.buf as Buffer).set(payload, at)
    this.used = at + n
    return this.queued(signal)
  }

  /**
   * Queues the frame ChatFrame { delta: Delta { content } }, encoded in place: the
   * same bytes as writing encodeContentDelta(content) (frames.ts), without a buffer
   * of its own.
   */
  writeContent (content: string, signal?: AbortSignal): Promise<void> | undefined {
    if (this.failed != null) throw this.failed
    const n = Buffer.byteLength(content, 'utf8')
    const inner = n === 0 ? 0 : 1 + varint.encodingLength(n) + n
    const frame = 1 + varint.encodingLength(inner) + inner
    let at = this.reserve(varint.encodingLength(frame) + frame)
    const buf = this.buf as Buffer
    at = writeVarint(buf, at, frame)
    buf[at++] = 0x12
    at = writeVarint(buf, at, inner)
    if (n > 0) {
      buf[at++] = 0x0a
      at = writeVarint(buf, at, n)
      at += buf.write(content, at, 'utf8')
    }
    this.used = at
    return this.queued(signal)
  }

  /** Hands everything held to the stream now and closes the window; throws if the stream refuses it. */
  flush (): void {
    clearTimeout(this.window)
    this.window = undefined
    if (this.failed != null) throw this.failed
    this.send()
  }

  /** Room for `bytes` more at the end of the batch; returns where they go. */
  private reserve (bytes: number): number {
    // a batch that would outgrow one noise message goes first, unless the stream is full
    if (this.used > 0 && this.used + bytes > MAX_BATCH_BYTES && !this.stream.writableNeedsDrain) this.send()
    const need = this.used + bytes
    if (this.buf == null) {
      this.buf = Buffer.allocUnsafe(Math.max(need, MIN_BATCH_CAPACITY))
    } else if (need > this.buf.byteLength) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.buf.byteLength))
      this.buf.copy(grown, 0, 0, this.used)
      this.buf = grown
    }
    return this.used
  }

  private queued (signal: AbortSignal | undefined): Promise<void> | undefined {
    if (this.stream.writableNeedsDrain) {
      this.sendOnDrain()
      return this.used >= MAX_BATCH_BYTES ? waitForDrain(this.stream, signal) : undefined
    }
    if (this.window == null) {
      this.send()
      this.window = setTimeout(this.endWindow, this.holdMs)
    } else if (this.used >= MAX_BATCH_BYTES) {
      this.send()
    }
    return undefined
  }

  /** true when frames were handed to the stream */
  private send (): boolean {
    if (this.used === 0 || this.buf == null) return false
    // the stream keeps what it is handed until it is out: a copy of the exact size
    // (from Node's pool when small), and the batch buffer is kept for the next batch.
    // A fresh, doubled buffer per batch instead raised a provider's peak RSS at
    // 1,000 streams from 285–347 to 312–416 MB (test/bench/conc-cpu.ts rss).
    const batch = Buffer.allocUnsafe(this.used)
    this.buf.copy(batch, 0, 0, this.used)
    this.used = 0
    this.stream.send(batch)
    return true
  }

  /** Sends and, when something went, keeps the window open for the frames still coming. */
  private sendBatched (): void {
    try {
      if (this.send() && this.window == null) this.window = setTimeout(this.endWindow, this.holdMs)
    } catch (err) {
      // the stream closed under us: whoever writes or flushes next learns why
      this.failed = err instanceof Error ? err : new Error(String(err))
    }
  }

  private sendOnDrain (): void {
    if (this.waitingForDrain) return
    this.waitingForDrain = true
    this.stream.addEventListener('drain', this.onDrain, { once: true })
  }

  private readonly onDrain = (): void => {
    this.waitingForDrain = false
    this.sendBatched()
  }

  private readonly endWindow = (): void => {
    this.window = undefined
    if (this.used === 0) return
    if (this.stream.writableNeedsDrain) this.sendOnDrain()
    else this.sendBatched()
  }
}



export async function waitForDrain (stream: Stream, signal?: AbortSignal): Promise<void> {
  if (!stream.writableNeedsDrain) return
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (evt: StreamCloseEvent): void => {
      cleanup()
      reject(evt.error ?? new Error('stream closed while waiting to send'))
    }
    const onAbort = (): void => { cleanup(); reject(signal?.reason) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}
