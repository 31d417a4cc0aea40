/**
 * The fetch the engine hands the `ollama` client (its `fetch` option): the same
 * calls, made with node:http/https and a keep-alive agent instead of Node's
 * built-in fetch (undici). undici's fetch builds a Request, a Headers and a web
 * stream pipeline per call; on the provider it was about 0.3 ms of CPU per chat
 * (measured: a bare proxy, `ollama` client → stand-in, 1.64 → 1.29 ms CPU and
 * 3.86 → 3.2 ms TTFT per request with this instead). The answer is still a WHATWG
 * Response whose body the client reads as it arrives, with back-pressure.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** statuses whose Response may not have a body (the Response constructor refuses one) */
const NULL_BODY = new Set([101, 103, 204, 205, 304])

function plainHeaders (headers: RequestInit['headers']): Record<string, string> {
  if (headers == null) return {}
  if (headers instanceof Headers || Array.isArray(headers)) return Object.fromEntries(headers as Iterable<[string, string]>)
  return headers as Record<string, string>
}

function bodyOf (body: RequestInit['body']): string | Uint8Array | undefined {
  if (body == null) return undefined
  if (typeof body === 'string' || body instanceof Uint8Array) return body
  if (body instanceof ArrayBuffer) return new Uint8Array(body)
  throw new TypeError('the engine\'s fetch sends string or byte bodies only')
}

/** the message as a web ReadableStream: pulled as the reader asks, paused when it does not */
function webBody (res: IncomingMessage, signal: AbortSignal | undefined, done: () => void): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let over = false
  const body = new ReadableStream<Uint8Array>({
    start: c => { controller = c },
    pull: () => { res.resume() },
    cancel: () => { over = true; done(); res.destroy() }
  }, { highWaterMark: 0 })
  res.on('data', (chunk: Buffer) => {
    if (over) return
    controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    if ((controller.desiredSize ?? 0) <= 0) res.pause()
  })
  res.once('end', () => {
    if (over) return
    over = true
    done()
    controller.close()
  })
  // an abort or a broken connection mid-answer: the reader's read() rejects
  const fail = (err: unknown): void => {
    if (over) return
    over = true
    done()
    controller.error(signal?.aborted === true ? signal.reason : err)
  }
  res.on('error', fail)
  res.once('close', () => { if (!res.complete) fail(Object.assign(new Error('the connection closed before the answer ended'), { code: 'ECONNRESET' })) })
  return body
}

/**
 * The answer as the `ollama` client reads it: ok, status, statusText, headers.get,
 * body (a web stream), json() and text() — the members of a WHATWG Response it
 * uses (engine.test.ts drives the real client through all of them), made without
 * undici's Response and Headers (about 0.1 ms per call); both are built only when
 * asked for.
 */
function answerOf (res: IncomingMessage, status: number, signal: AbortSignal | undefined, done: () => void): Response {
  const bodyless = NULL_BODY.has(status)
  if (bodyless) {
    done()
    res.resume()
  }
  let body: ReadableStream<Uint8Array> | undefined
  let headers: Headers | undefined
  const stream = (): ReadableStream<Uint8Array> | null => {
    if (bodyless) return null
    body ??= webBody(res, signal, done)
    return body
  }
  const text = async (): Promise<string> => {
    const b = stream()
    return b == null ? '' : await new Response(b).text()
  }
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: res.statusMessage ?? '',
    get headers () {
      if (headers == null) {
        headers = new Headers()
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i], res.rawHeaders[i + 1])
      }
      return headers
    },
    get body () { return stream() },
    text,
    json: async () => JSON.parse(await text()) as unknown
  } as unknown as Response
}

/** A fetch over node:http(s) with a keep-alive agent of its own (one per engine). */
export function httpFetch (): FetchLike {
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
    const secure = url.protocol === 'https:'
    if (!secure && url.protocol !== 'http:') throw new TypeError(`cannot fetch ${url.protocol} URLs`)
    const signal = init.signal ?? undefined
    signal?.throwIfAborted()
    const body = bodyOf(init.body)
    return await new Promise<Response>((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)({
        protocol: url.protocol,
        // [::1] → ::1
        hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: init.method ?? 'GET',
        headers: plainHeaders(init.headers),
        agent: secure ? agents.https : agents.http
      }, res => {
        resolve(answerOf(res, res.statusCode ?? 0, signal, done))
      })
      // the signal by hand: node's `signal` option costs ~50 µs a request (end-of-stream watchers)
      const onAbort = (): void => { req.destroy(signal?.reason) }
      const done = (): void => { signal?.removeEventListener('abort', onAbort) }
      signal?.addEventListener('abort', onAbort, { once: true })
      req.on('error', err => {
        done()
        reject(signal?.aborted === true ? signal.reason : err)
      })
      req.end(body)
    })
  }
}
