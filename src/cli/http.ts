import { request as httpRequest, type IncomingMessage } from 'node:http'

/**
 * The CLI's HTTP client: node:http rather than fetch, which would load undici and
 * cost every client command some 40 ms of start-up (bench: cli).
 */
export interface HttpAnswer {
  status: number
  statusText: string
  ok: boolean
  header: (name: string) => string | undefined
  text: () => Promise<string>
  /** the body as it arrives */
  body: AsyncIterable<Uint8Array>
  /** stop reading (closes the connection) */
  cancel: () => void
}

export interface HttpOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
  signal?: AbortSignal
}

/** a failure to reach the server at all (refused, reset, unknown host) */
export class HttpUnreachableError extends Error {
  constructor (message: string, options: { cause?: unknown } = {}) {
    super(message, options)
    this.name = 'HttpUnreachableError'
  }
}

function answer (res: IncomingMessage): HttpAnswer {
  return {
    status: res.statusCode ?? 0,
    statusText: res.statusMessage ?? '',
    ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300,
    header: name => {
      const value = res.headers[name.toLowerCase()]
      return Array.isArray(value) ? value.join(', ') : value
    },
    text: async () => {
      let text = ''
      res.setEncoding('utf8')
      for await (const chunk of res) text += chunk as string
      return text
    },
    body: res,
    cancel: () => { res.destroy() }
  }
}

export async function httpCall (url: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
  return await new Promise<HttpAnswer>((resolve, reject) => {
    const headers: Record<string, string | number> = { ...opts.headers }
    if (opts.body != null) headers['content-length'] = Buffer.byteLength(opts.body)
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers, signal: opts.signal }, res => { resolve(answer(res)) })
    req.on('error', (err: any) => {
      if (opts.signal?.aborted === true) {
        const reason = opts.signal.reason
        reject(reason instanceof Error ? reason : Object.assign(new Error('aborted'), { name: 'AbortError' }))
      } else {
        reject(new HttpUnreachableError(`${url}: ${String(err?.code ?? err?.message)}`, { cause: err }))
      }
    })
    req.end(opts.body)
  })
}
