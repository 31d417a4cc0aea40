/**
 * Writes a streamed answer (SSE or NDJSON) to a raw Node response with backpressure,
 * and turns the client going away into an abort signal that reaches the provider.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Aborts when the client disconnects before the response was completely sent. */
export function clientGone (req: IncomingMessage, res: ServerResponse): AbortController {
  const ac = new AbortController()
  const onClose = (): void => {
    if (!res.writableFinished) ac.abort(new Error('client disconnected'))
  }
  // 'close' on the response also fires when the socket goes before anything was written
  res.once('close', onClose)
  req.once('error', onClose)
  return ac
}

/**
 * How long a write may wait for a client that stopped reading: beyond it the
 * response is destroyed, which cancels the chat upstream (as a disconnect does).
 */
export const WRITE_STALL_MS = 60_000

/** Text a StreamWriter batch may hold before it is written without waiting for the turn to end. */
const MAX_BATCH_CHARS = 64 * 1024

export class StreamWriter {
  private readonly res: ServerResponse
  private readonly stallMs: number
  /**
   * Events written after the first one of a turn of the event loop, sent as one
   * chunk when the turn ends: a burst of tokens from the provider then costs one
   * chunk and one socket write instead of one each (the largest per-token cost of
   * the API side; bench: throughput).
   */
  private batch: string[] = []
  private batchChars = 0
  /** text held (hold()) for the front of the next write */
  private held: string[] = []
  /** set while a turn is open */
  private turn: NodeJS.Immediate | undefined

  constructor (res: ServerResponse, status: number, headers: Record<string, string>, opts: { stallMs?: number } = {}) {
    this.res = res
    this.stallMs = opts.stallMs ?? WRITE_STALL_MS
    // The headers go out with the first write, in one socket write with the first
    // token (a writer is only made once the first output is at hand, so nothing
    // waits for them): flushing them apart cost a second write and a second packet
    // for the client to read before it saw the token.
    res.writeHead(status, headers)
  }

  get open (): boolean {
    return !this.res.destroyed && !this.res.writableEnded
  }

  /**
   * Writes `text`: true when the client can take more at once, a promise (of the
   * same answer) while its buffer is full, false once the client is gone. A
   * promise only when there is something to wait for: the usual token costs none.
   */
  write (text: string): boolean | Promise<boolean> {
    if (!this.open) return false
    if (this.queue(text)) return true
    return this.drained()
  }

  private async drained (): Promise<boolean> {
    await new Promise<void>(resolve => {
      // a client that keeps the socket open but never reads must not pin the answer,
      // its buffers and a provider slot forever
      const stall = setTimeout(() => {
        this.res.destroy(new Error(`client read nothing for ${this.stallMs} ms`))
      }, this.stallMs)
      const done = (): void => {
        clearTimeout(stall)
        this.res.off('drain', done)
        this.res.off('close', done)
        resolve()
      }
      this.res.on('drain', done)
      this.res.on('close', done)
    })
    return this.open
  }

  /**
   * Holds `text` to go out in front of the next write (or the end), in the same
   * chunk: a preamble, such as OpenAI's role chunk, then does not make the first
   * token the second event of its turn (which would hold it until the turn ends).
   */
  hold (text: string): void {
    if (!this.open) return
    this.held.push(text)
  }

  end (text?: string): void {
    if (!this.open) return
    if (this.turn != null) {
      clearImmediate(this.turn)
      this.turn = undefined
    }
    if (this.held.length > 0) {
      this.batch.push(...this.held)
      this.held = []
    }
    if (text != null) this.batch.push(text)
    const rest = this.takeBatch()
    if (rest !== '') this.res.end(rest)
    else this.res.end()
  }

  /**
   * Writes `text`: at once when it is the first of this turn of the event loop (the
   * first token waits for nothing), otherwise with the rest of the turn's events in a
   * setImmediate — right after the current I/O callback and its microtasks. While
   * the socket still holds bytes it could not pass on, the first one waits for the
   * turn's end too: it would wait behind those bytes anyway, and the turn then costs
   * one write and one chunk instead of two (bench: throughput). False when the
   * client's buffer is full (wait for drain).
   */
  private queue (text: string): boolean {
    if (this.held.length > 0) {
      this.batch.push(...this.held)
      this.held = []
    }
    this.batch.push(text)
    this.batchChars += text.length
    if (this.turn == null) {
      this.turn = setImmediate(this.endTurn)
      if (this.res.writableLength === 0) this.send()
    } else if (this.batchChars >= MAX_BATCH_CHARS) {
      this.send()
    }
    return !this.res.writableNeedDrain
  }

  private readonly endTurn = (): void => {
    this.turn = undefined
    this.send()
  }

  private send (): void {
    const text = this.takeBatch()
    if (text !== '' && this.open) this.res.write(text)
  }

  private takeBatch (): string {
    const text = this.batch.length === 1 ? this.batch[0] : this.batch.join('')
    this.batch = []
    this.batchChars = 0
    return text
  }
}

export const SSE_HEADERS: Record<string, string> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  // reverse proxies must not buffer token streams
  'X-Accel-Buffering': 'no'
}

export const NDJSON_HEADERS: Record<string, string> = {
  'Content-Type': 'application/x-ndjson',
  'Cache-Control': 'no-cache'
}
