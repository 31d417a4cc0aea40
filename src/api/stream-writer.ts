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

export class StreamWriter {
  private readonly res: ServerResponse
  private readonly stallMs: number

  constructor (res: ServerResponse, status: number, headers: Record<string, string>, opts: { stallMs?: number } = {}) {
    this.res = res
    this.stallMs = opts.stallMs ?? WRITE_STALL_MS
    res.writeHead(status, headers)
    // headers go out now: a client waiting for the first token sees the stream open
    res.flushHeaders()
  }

  get open (): boolean {
    return !this.res.destroyed && !this.res.writableEnded
  }

  /** Writes and waits while the client's buffer is full; false once the client is gone. */
  async write (text: string): Promise<boolean> {
    if (!this.open) return false
    if (this.res.write(text)) return true
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

  end (text?: string): void {
    if (!this.open) return
    if (text != null) this.res.end(text)
    else this.res.end()
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
