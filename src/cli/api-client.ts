import { DEFAULT_API, parseHostPort } from '../node/defaults.js'
import { DaemonUnreachableError } from '../errors.js'
import { CliError } from './cli-error.js'
import { httpCall, HttpUnreachableError, type HttpAnswer } from './http.js'

/** Every answer of a krill daemon carries this header: how the CLI tells krill from Ollama. */
export const KRILL_VERSION_HEADER = 'x-krill-version'

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
  headers?: Record<string, string>
}

export const NO_DAEMON_HINT = 'start one with `krill daemon` (or point --api / KRILL_API at a running one)'

/** the bearer token of KRILL_API_TOKEN, as the daemon wants it */
export function authHeaders (env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const token = env.KRILL_API_TOKEN
  return token != null && token !== '' ? { authorization: `Bearer ${token}` } : {}
}

/**
 * Something answered at `base`, but not krill (no x-krill-version header): say
 * what it is when we can tell. Ollama answers /api/version with {"version": …}.
 */
async function notKrill (base: string, status: number): Promise<CliError> {
  let what = `it answered HTTP ${status} without krill's ${KRILL_VERSION_HEADER} header`
  try {
    const res = await httpCall(`${base}/api/version`, { signal: AbortSignal.timeout(1_000) })
    const body = JSON.parse(await res.text()) as { version?: unknown }
    if (res.ok && res.header(KRILL_VERSION_HEADER) == null && typeof body?.version === 'string') what = `it is Ollama ${body.version}`
  } catch { /* the first answer is all we know */ }
  return new CliError('not_krill', `${base} is not a krill daemon: ${what}`, {
    hint: `point --api / KRILL_API at krill's API (${DEFAULT_API} by default, Ollama's is 127.0.0.1:11434; \`krill daemon\` prints its own)`
  })
}

/** Calls the daemon's HTTP API; turns "nobody listening" and "not krill" into advice. */
export async function callApi (base: string, path: string, opts: ApiCallOptions = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = { ...authHeaders(), ...opts.headers }
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  let res: HttpAnswer
  try {
    res = await httpCall(base + path, {
      method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal ?? AbortSignal.timeout(30_000)
    })
  } catch (err: any) {
    if (err.name === 'TimeoutError') throw new CliError('timeout', `the daemon at ${base} did not answer ${path} in time`, { hint: 'is it overloaded? `krill status` shows its load', cause: err })
    if (!(err instanceof HttpUnreachableError)) throw err
    if (process.env.KRILL_LOG === 'debug') process.stderr.write(`${err.message}\n`)
    throw new DaemonUnreachableError(`no daemon at ${base}`, { hint: NO_DAEMON_HINT, cause: err })
  }
  if (res.header(KRILL_VERSION_HEADER) == null) {
    res.cancel()
    throw await notKrill(base, res.status)
  }
  return res
}

/** The daemon's error message from a non-2xx body (OpenAI, Ollama and control API shapes). */
export function errorMessage (body: any, fallback: string): string {
  const message = body?.error?.message ?? body?.error ?? body?.message
  return typeof message === 'string' && message !== '' ? message : fallback
}

/** The daemon's error code, if its answer has one ("unknown_peer", "model_not_found", …). */
function errorCode (body: any, status: number): string {
  const code = body?.error?.code
  if (typeof code === 'string' && code !== '') return code
  if (status === 401) return 'unauthorized'
  if (status === 404) return 'not_found'
  return status === 400 ? 'bad_request' : `http_${status}`
}

/** A non-2xx answer as an error: 400 means the user typed something the daemon cannot use (exit 2). */
export async function httpError (res: HttpAnswer): Promise<CliError> {
  const text = await res.text()
  let body: any
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    body = text
  }
  const hint = res.status === 401 ? 'set KRILL_API_TOKEN to the daemon\'s API token' : undefined
  return new CliError(errorCode(body, res.status), errorMessage(body, `${res.status} ${res.statusText} ${text}`.trim()), { hint, usage: res.status === 400 })
}

/** GET/POST returning JSON; a non-2xx answer becomes an error carrying the daemon's message. */
export async function getJson<T> (base: string, path: string, opts: ApiCallOptions = {}): Promise<T> {
  const res = await callApi(base, path, opts)
  if (!res.ok) throw await httpError(res)
  const text = await res.text()
  return (text === '' ? undefined : JSON.parse(text)) as T
}
