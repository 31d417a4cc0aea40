import { parseHostPort, DEFAULT_API } from '../node/config.js'
import { BadRequestError, DaemonUnreachableError, RequestFailedError } from '../errors.js'

/** Where the CLI finds the daemon: --api, then KRILL_API, then the default. */
export function apiBase (flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = flag ?? (env.KRILL_API != null && env.KRILL_API !== '' ? env.KRILL_API : DEFAULT_API)
  const { host, port } = parseHostPort(value)
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

export interface ApiCallOptions {
  method?: 'GET' | 'POST'
  body?: unknown
  signal?: AbortSignal
}

/** Calls the daemon's HTTP API; turns "nobody listening" into advice. */
export async function callApi (base: string, path: string, opts: ApiCallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  const token = process.env.KRILL_API_TOKEN
  if (token != null && token !== '') headers.authorization = `Bearer ${token}`
  try {
    return await fetch(base + path, {
      method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal ?? AbortSignal.timeout(30_000)
    })
  } catch (err: any) {
    if (err.name === 'AbortError' || err.name === 'TimeoutError') throw err
    throw new DaemonUnreachableError(`no daemon at ${base} — start one with \`krill daemon\` (or point --api / KRILL_API at a running one)`)
  }
}

/** The daemon's error message from a non-2xx body (OpenAI, Ollama and control API shapes). */
export function errorMessage (body: any, fallback: string): string {
  const message = body?.error?.message ?? body?.error ?? body?.message
  return typeof message === 'string' && message !== '' ? message : fallback
}

/**
 * GET/POST returning JSON; a non-2xx answer becomes an error carrying the daemon's
 * message. 400 means the user typed something the daemon cannot use: exit 2.
 */
export async function getJson<T> (base: string, path: string, opts: ApiCallOptions = {}): Promise<T> {
  const res = await callApi(base, path, opts)
  const text = await res.text()
  let body: any
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    body = text
  }
  if (!res.ok) {
    const message = errorMessage(body, `${res.status} ${res.statusText} ${text}`.trim())
    throw res.status === 400 ? new BadRequestError(message) : new RequestFailedError(message)
  }
  return body as T
}
