/**
 * KrillError codes as HTTP statuses, and the error bodies of both APIs:
 * OpenAI's {"error": {message, type, param, code}} and Ollama's {"error": "..."}.
 */
import { KrillError, type ErrorCodeName } from '../errors.js'

export const STATUS: Record<ErrorCodeName, number> = {
  BAD_REQUEST: 400,
  FORBIDDEN: 403,
  UNKNOWN_MODEL: 404,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  ENGINE_FAILED: 502,
  BUSY: 503,
  NO_PROVIDER: 503,
  SHUTTING_DOWN: 503,
  TIMEOUT: 504,
  // the client is gone; nobody reads this (nginx's "client closed request")
  CANCELLED: 499
}

/** An HTTP-level error raised while reading a request, before the router sees it. */
export class HttpError extends Error {
  readonly status: number
  readonly param: string | null
  readonly code: string | null

  constructor (status: number, message: string, opts: { param?: string, code?: string } = {}) {
    super(message)
    this.name = 'HttpError'
    this.status = status
    this.param = opts.param ?? null
    this.code = opts.code ?? null
  }
}

export interface OpenAiErrorBody {
  error: { message: string, type: string, param: string | null, code: string | null }
}

export interface DescribedError {
  status: number
  message: string
  param: string | null
  code: string | null
}

/**
 * Any error thrown while serving a request, described for a client. Fastify's own
 * errors (body too large, malformed JSON) carry a statusCode; unknown errors are 500s
 * whose details stay in the log.
 */
export function describeError (err: unknown): DescribedError {
  if (err instanceof HttpError) return { status: err.status, message: err.message, param: err.param, code: err.code }
  if (err instanceof KrillError) {
    const code = err.code === 'UNKNOWN_MODEL' ? 'model_not_found' : err.code.toLowerCase()
    return { status: STATUS[err.code], message: err.message, param: err.code === 'UNKNOWN_MODEL' ? 'model' : null, code }
  }
  const e = err as { statusCode?: unknown, code?: unknown, message?: unknown }
  const fastifyCode = typeof e?.code === 'string' ? e.code : ''
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, message: 'request body is too large', param: null, code: 'request_too_large' }
  if (fastifyCode === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    return { status: 400, message: `request body is not valid JSON: ${String(e.message ?? '')}`, param: null, code: 'invalid_json' }
  }
  if (fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') return { status: 400, message: 'request body is empty; send a JSON object', param: null, code: 'invalid_json' }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, message: String(e.message ?? 'bad request'), param: null, code: fastifyCode !== '' ? fastifyCode.toLowerCase() : null }
  }
  return { status: 500, message: 'internal error', param: null, code: 'internal_error' }
}

function openAiType (status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'invalid_request_error'
  if (status === 429) return 'rate_limit_error'
  if (status < 500) return 'invalid_request_error'
  return 'server_error'
}

export function openAiError (d: DescribedError): OpenAiErrorBody {
  return { error: { message: d.message, type: openAiType(d.status), param: d.param, code: d.code } }
}

/** Ollama's error body; unknown models get Ollama's own wording so its clients recognize it. */
export function ollamaError (d: DescribedError, model?: string): { error: string } {
  // a pinned peer that does not serve the model says so; otherwise Ollama's own words
  if (d.status === 404 && d.code === 'model_not_found' && model != null && !d.message.includes('does not serve')) return { error: `model "${model}" not found, try pulling it first` }
  return { error: d.message }
}
