/**
 * The Ollama adapter: krill's Engine on top of the official `ollama` npm client.
 *
 * Two things matter more than anything else here:
 * - nothing but whitelisted keys ever reaches Ollama (requests may come from any peer);
 * - an aborted chat closes the HTTP request to Ollama at once, so no tokens are
 *   generated for nobody.
 */
import { Ollama } from 'ollama'
import type {
  AbortableAsyncIterator,
  ChatRequest as OllamaChatRequest,
  ChatResponse as OllamaChatResponse,
  Message as OllamaMessage,
  ModelResponse as OllamaModel,
  Tool as OllamaTool
} from 'ollama'
import { KrillError } from '../errors.js'
import { httpFetch, type FetchLike } from './http-fetch.js'
import { StallTimer } from '../stall-timer.js'
import { normalizeCapabilities } from '../models/capabilities.js'
import { normalizeDigest } from '../models/index.js'
import {
  CHAT_OPTION_KEYS,
  EMBED_OPTION_KEYS,
  type ChatEvent,
  type ChatMessage,
  type ChatOptions,
  type ChatRequest,
  type EmbedEngine,
  type EmbedRequest,
  type EmbedResult,
  type Engine,
  type ModelInfo,
  type ShowEngine,
  type ToolCall,
  type Usage
} from './types.js'

export interface OllamaEngineOptions {
  /** Ollama's base URL, e.g. http://127.0.0.1:11434 (same forms OLLAMA_HOST accepts) */
  host: string
  /** limit for list/show/version calls (default 10 s) */
  requestTimeoutMs?: number
  /** limit for the isHealthy probe (default 2 s, never more than requestTimeoutMs) */
  healthTimeoutMs?: number
  /**
   * Longest silence tolerated from Ollama during a chat, model loading included,
   * before the chat fails with TIMEOUT (default 5 min, Ollama's own load timeout).
   */
  stallTimeoutMs?: number
}

type ChatStreamEvent = Exclude<ChatEvent, { type: 'accepted' }>

const ROLES = new Set(['system', 'user', 'assistant', 'tool'])
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const THINK_LEVELS = new Set(['low', 'medium', 'high'])
/** connection errors that mean "nobody is listening there" rather than "it broke" */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT'
])
/** errors of a reused connection that died before the answer started */
const STALE_SOCKET_CODES = new Set(['UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNRESET', 'EPIPE'])
/** how long a failed /api/show is remembered before it is tried again */
const SHOW_RETRY_MS = 60_000

function badRequest (message: string): KrillError {
  return new KrillError('BAD_REQUEST', message)
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function toOllamaOptions (options: ChatOptions | undefined): Partial<Record<string, unknown>> | undefined {
  if (options === undefined) return undefined
  if (!isRecord(options)) throw badRequest('options must be an object')
  const out: Record<string, unknown> = {}
  for (const key of CHAT_OPTION_KEYS) {
    const value = (options as Record<string, unknown>)[key]
    if (value === undefined) continue
    if (key === 'stop') {
      if (!Array.isArray(value) || !value.every(s => typeof s === 'string')) throw badRequest('options.stop must be a list of strings')
    } else if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw badRequest(`options.${key} must be a finite number`)
    }
    out[key] = value
  }
  return Object.keys(out).length > 0 ? out : undefined
}

function toOllamaToolCalls (calls: ToolCall[]): OllamaMessage['tool_calls'] {
  return calls.map(c => {
    if (!isRecord(c?.function) || typeof c.function.name !== 'string' || !isRecord(c.function.arguments)) {
      throw badRequest('a tool call needs function.name and function.arguments')
    }
    return { function: { name: c.function.name, arguments: c.function.arguments } }
  })
}

function toOllamaMessage (m: ChatMessage, i: number): OllamaMessage {
  if (!isRecord(m) || typeof m.role !== 'string' || !ROLES.has(m.role)) throw badRequest(`messages[${i}].role must be one of system, user, assistant, tool`)
  if (typeof m.content !== 'string') throw badRequest(`messages[${i}].content must be a string`)
  const out: OllamaMessage = { role: m.role, content: m.content }
  if (m.images !== undefined) {
    if (!Array.isArray(m.images)) throw badRequest(`messages[${i}].images must be a list`)
    // Bytes, not strings: the ollama client treats a string naming an existing file as
    // a path and uploads that file. A peer must never be able to make us read our disk.
    out.images = m.images.map((img, j) => {
      if (typeof img !== 'string' || !BASE64.test(img)) throw badRequest(`messages[${i}].images[${j}] is not base64`)
      return new Uint8Array(Buffer.from(img, 'base64'))
    })
  }
  if (m.thinking !== undefined) {
    if (typeof m.thinking !== 'string') throw badRequest(`messages[${i}].thinking must be a string`)
    out.thinking = m.thinking
  }
  if (m.toolCalls !== undefined) {
    if (!Array.isArray(m.toolCalls)) throw badRequest(`messages[${i}].toolCalls must be a list`)
    out.tool_calls = toOllamaToolCalls(m.toolCalls)
  }
  if (m.toolName !== undefined) {
    if (typeof m.toolName !== 'string') throw badRequest(`messages[${i}].toolName must be a string`)
    out.tool_name = m.toolName
  }
  return out
}

/** Function tools only, with only the keys Ollama reads; parameters is a JSON schema, passed whole. */
function toOllamaTool (tool: unknown, i: number): OllamaTool {
  if (!isRecord(tool) || !isRecord(tool.function)) throw badRequest(`tools[${i}] must be {type: 'function', function: {...}}`)
  const type = tool.type ?? 'function'
  if (type !== 'function') throw badRequest(`tools[${i}].type must be 'function'`)
  const fn = tool.function
  if (typeof fn.name !== 'string' || fn.name === '') throw badRequest(`tools[${i}].function.name is required`)
  const out: OllamaTool = { type, function: { name: fn.name } }
  if (fn.description !== undefined) {
    if (typeof fn.description !== 'string') throw badRequest(`tools[${i}].function.description must be a string`)
    out.function.description = fn.description
  }
  if (fn.parameters !== undefined) {
    if (!isRecord(fn.parameters)) throw badRequest(`tools[${i}].function.parameters must be a JSON schema object`)
    out.function.parameters = fn.parameters as OllamaTool['function']['parameters']
  }
  return out
}

/**
 * Maps a krill ChatRequest to the Ollama request, copying only whitelisted keys
 * (model, messages, options ⊂ CHAT_OPTION_KEYS, format, tools, think, keep_alive).
 * Throws KrillError BAD_REQUEST on values of the wrong type.
 */
export function toOllamaChatRequest (request: ChatRequest): OllamaChatRequest & { stream: true } {
  if (!isRecord(request)) throw badRequest('request must be an object')
  if (typeof request.model !== 'string' || request.model === '') throw badRequest('model is required')
  if (!Array.isArray(request.messages)) throw badRequest('messages must be a list')
  const out: OllamaChatRequest & { stream: true } = {
    model: request.model,
    messages: request.messages.map(toOllamaMessage),
    stream: true
  }
  const options = toOllamaOptions(request.options)
  if (options !== undefined) out.options = options
  if (request.format !== undefined) {
    if (request.format !== 'json' && !isRecord(request.format)) throw badRequest("format must be 'json' or a JSON schema object")
    out.format = request.format
  }
  if (request.tools !== undefined) {
    if (!Array.isArray(request.tools)) throw badRequest('tools must be a list')
    out.tools = request.tools.map(toOllamaTool)
  }
  if (request.think !== undefined) {
    if (typeof request.think !== 'boolean' && !THINK_LEVELS.has(request.think)) throw badRequest('think must be a boolean or low, medium, high')
    out.think = request.think
  }
  if (request.keepAlive !== undefined) {
    if (typeof request.keepAlive !== 'string' && (typeof request.keepAlive !== 'number' || !Number.isFinite(request.keepAlive))) {
      throw badRequest('keepAlive must be a duration string or a number of seconds')
    }
    out.keep_alive = request.keepAlive
  }
  return out
}

function num (v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0
}

function toDelta (part: OllamaChatResponse): ChatStreamEvent | undefined {
  const msg = isRecord(part.message) ? part.message : undefined
  const delta: { type: 'delta', content?: string, thinking?: string, toolCalls?: ToolCall[] } = { type: 'delta' }
  if (typeof msg?.content === 'string' && msg.content !== '') delta.content = msg.content
  if (typeof msg?.thinking === 'string' && msg.thinking !== '') delta.thinking = msg.thinking
  if (Array.isArray(msg?.tool_calls) && msg.tool_calls.length > 0) {
    delta.toolCalls = msg.tool_calls
      .filter(c => isRecord(c?.function) && typeof c.function.name === 'string')
      .map(c => ({ function: { name: c.function.name, arguments: isRecord(c.function.arguments) ? c.function.arguments : {} } }))
  }
  return delta.content !== undefined || delta.thinking !== undefined || (delta.toolCalls?.length ?? 0) > 0 ? delta : undefined
}

function toUsage (part: OllamaChatResponse): Usage {
  return {
    doneReason: typeof part.done_reason === 'string' && part.done_reason !== '' ? part.done_reason : 'stop',
    promptTokens: num(part.prompt_eval_count),
    completionTokens: num(part.eval_count),
    totalDurationNs: num(part.total_duration),
    loadDurationNs: num(part.load_duration),
    promptEvalDurationNs: num(part.prompt_eval_duration),
    evalDurationNs: num(part.eval_duration)
  }
}

/** The network error code buried in undici's `TypeError: fetch failed` chain, if any. */
function networkCode (err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 5 && e != null; depth++) {
    if (isRecord(e) || e instanceof Error) {
      const rec = e as unknown as Record<string, unknown>
      if (typeof rec.code === 'string' && rec.code !== 'ABORT_ERR') return rec.code
      if (Array.isArray(rec.errors)) {
        const inner = rec.errors.map(networkCode).find(c => c !== undefined)
        if (inner !== undefined) return inner
      }
      e = rec.cause
    } else {
      return undefined
    }
  }
  return undefined
}

function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** What /api/show tells about a model copy, kept per digest. */
interface ShowFacts {
  /** 0 when unknown */
  contextLength: number
  capabilities?: string[]
}

/** Maps an embedding request to Ollama's /api/embed body, whitelisted keys only. */
export function toOllamaEmbedRequest (request: EmbedRequest): Record<string, unknown> {
  if (!isRecord(request)) throw badRequest('request must be an object')
  if (typeof request.model !== 'string' || request.model === '') throw badRequest('model is required')
  if (!Array.isArray(request.input) || !request.input.every(i => typeof i === 'string')) throw badRequest('input must be a list of strings')
  const out: Record<string, unknown> = { model: request.model, input: request.input }
  if (request.truncate !== undefined) {
    if (typeof request.truncate !== 'boolean') throw badRequest('truncate must be a boolean')
    out.truncate = request.truncate
  }
  if (request.dimensions !== undefined) {
    if (!Number.isSafeInteger(request.dimensions) || request.dimensions < 1) throw badRequest('dimensions must be a positive integer')
    out.dimensions = request.dimensions
  }
  if (request.keepAlive !== undefined) {
    if (typeof request.keepAlive !== 'string' && (typeof request.keepAlive !== 'number' || !Number.isFinite(request.keepAlive))) {
      throw badRequest('keepAlive must be a duration string or a number of seconds')
    }
    out.keep_alive = request.keepAlive
  }
  if (request.options !== undefined) {
    if (!isRecord(request.options)) throw badRequest('options must be an object')
    const options: Record<string, unknown> = {}
    for (const key of EMBED_OPTION_KEYS) {
      const value = (request.options as Record<string, unknown>)[key]
      if (value === undefined) continue
      if (typeof value !== 'number' || !Number.isFinite(value)) throw badRequest(`options.${key} must be a finite number`)
      options[key] = value
    }
    if (Object.keys(options).length > 0) out.options = options
  }
  return out
}

export class OllamaEngine implements Engine, EmbedEngine, ShowEngine {
  readonly host: string
  private readonly requestTimeoutMs: number
  private readonly healthTimeoutMs: number
  private readonly stallTimeoutMs: number
  /** context length and capabilities per model digest: /api/show is asked once per digest */
  private readonly facts = new Map<string, { value: ShowFacts, retryAt?: number }>()
  private readonly showsInFlight = new Map<string, Promise<ShowFacts>>()
  /** node:http with a keep-alive agent: far less work per call than the built-in fetch (http-fetch.ts) */
  private readonly fetch: FetchLike = httpFetch()

  constructor (opts: OllamaEngineOptions) {
    this.host = opts.host
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000
    this.healthTimeoutMs = Math.min(opts.healthTimeoutMs ?? 2_000, this.requestTimeoutMs)
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 300_000
  }

  /**
   * A client whose every request is bound to `signal`. The ollama client cannot take a
   * signal for list/show/version, nor for a stream before its headers arrive, so the
   * signal goes in through fetch.
   */
  private client (signal: AbortSignal): Ollama {
    return new Ollama({
      host: this.host,
      fetch: async (input, init) => {
        const opts: RequestInit = { ...init, signal: init?.signal != null ? AbortSignal.any([init.signal, signal]) : signal }
        try {
          return await this.fetch(input, opts)
        } catch (err) {
          const code = networkCode(err)
          if (opts.signal?.aborted === true || code === undefined || !STALE_SOCKET_CODES.has(code)) throw err
          // A kept-alive connection that Ollama closed (it restarted or died) fails before
          // any answer; one try on a fresh connection tells "down" from "broken".
          return await this.fetch(input, opts)
        }
      }
    })
  }

  /** Turns whatever the client threw into a KrillError with a message a person can act on. */
  private classify (err: unknown, what: string, opts: { notFoundIsModel?: boolean, midStream?: boolean } = {}): KrillError {
    if (err instanceof KrillError) return err
    const status = isRecord(err) || err instanceof Error ? (err as unknown as Record<string, unknown>).status_code : undefined
    if (typeof status === 'number') {
      const text = message(err)
      if (status === 404 && opts.notFoundIsModel === true) return new KrillError('UNKNOWN_MODEL', text, { cause: err })
      if (status === 400) return new KrillError('BAD_REQUEST', `Ollama rejected the request: ${text}`, { cause: err })
      if (status === 429 || status === 503) return new KrillError('BUSY', `Ollama at ${this.host} is busy: ${text}`, { cause: err })
      return new KrillError('ENGINE_FAILED', `Ollama at ${this.host} answered ${what} with HTTP ${status}: ${text}`, { cause: err })
    }
    const code = networkCode(err)
    if (code !== undefined && UNREACHABLE_CODES.has(code)) {
      return new KrillError('ENGINE_FAILED', `Ollama at ${this.host} is unreachable (${code})`, { cause: err })
    }
    if (opts.midStream === true) {
      return new KrillError('ENGINE_FAILED', `Ollama at ${this.host} failed mid-stream: ${message(err)}${code !== undefined ? ` (${code})` : ''}`, { cause: err })
    }
    return new KrillError('ENGINE_FAILED', `Ollama at ${this.host} failed on ${what}: ${message(err)}${code !== undefined ? ` (${code})` : ''}`, { cause: err })
  }

  /** Runs a non-streaming call with the caller's signal plus a time limit. */
  private async call<T> (what: string, signal: AbortSignal | undefined, timeoutMs: number,
    fn: (client: Ollama, signal: AbortSignal) => Promise<T>, opts: { notFoundIsModel?: boolean } = {}): Promise<T> {
    // a function, not a narrowed property: the signal can flip while we await
    const cancelled = (): boolean => signal?.aborted === true
    if (cancelled()) throw new KrillError('CANCELLED', `${what} cancelled`)
    const timeout = AbortSignal.timeout(timeoutMs)
    const combined = signal != null ? AbortSignal.any([signal, timeout]) : timeout
    try {
      return await fn(this.client(combined), combined)
    } catch (err) {
      if (err instanceof KrillError) throw err
      if (cancelled()) throw new KrillError('CANCELLED', `${what} cancelled`, { cause: err })
      if (timeout.aborted) throw new KrillError('TIMEOUT', `Ollama at ${this.host} did not answer ${what} within ${timeoutMs} ms`, { cause: err })
      throw this.classify(err, what, opts)
    }
  }

  async version (signal?: AbortSignal): Promise<string> {
    return await this.call('/api/version', signal, this.requestTimeoutMs, async c => (await c.version()).version)
  }

  async isHealthy (signal?: AbortSignal): Promise<boolean> {
    try {
      const v = await this.call('/api/version', signal, this.healthTimeoutMs, async c => (await c.version()).version)
      return typeof v === 'string'
    } catch {
      return false
    }
  }

  async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
    return await this.call('/api/tags', signal, this.requestTimeoutMs, async (client, combined) => {
      const res: unknown = await client.list()
      if (!isRecord(res) || !Array.isArray(res.models)) throw new KrillError('ENGINE_FAILED', `Ollama at ${this.host} sent an unexpected /api/tags answer`)
      const models = (res.models as unknown[]).filter((m): m is OllamaModel =>
        isRecord(m) && typeof m.name === 'string' && m.name !== '' && typeof m.digest === 'string' && m.digest !== '')
      const infos = await Promise.all(models.map(async m => await this.toModelInfo(client, m, combined)))
      // forget digests that are gone so the cache stays as small as the model list
      const live = new Set(infos.map(i => i.digest))
      for (const digest of this.facts.keys()) if (!live.has(digest)) this.facts.delete(digest)
      return infos
    })
  }

  private async toModelInfo (client: Ollama, m: OllamaModel, signal: AbortSignal): Promise<ModelInfo> {
    const d: Record<string, unknown> = isRecord(m.details) ? m.details as unknown as Record<string, unknown> : {}
    const str = (v: unknown): string => typeof v === 'string' ? v : ''
    const digest = normalizeDigest(m.digest) ?? m.digest
    const info: ModelInfo = {
      name: m.name,
      digest,
      size: num(m.size),
      family: str(d.family),
      parameterSize: str(d.parameter_size),
      quantization: str(d.quantization_level),
      contextLength: 0
    }
    const facts = await this.showFacts(client, m.name, digest, str(d.family), signal)
    info.contextLength = facts.contextLength
    if (facts.capabilities != null) info.capabilities = facts.capabilities
    if (str(d.format) !== '') info.format = str(d.format)
    if (Array.isArray(d.families) && d.families.every(f => typeof f === 'string')) info.families = d.families as string[]
    const modified = m.modified_at as unknown
    if (typeof modified === 'string' && modified !== '') info.modifiedAt = modified
    return info
  }

  /** `<family>.context_length` and `capabilities` from /api/show, asked once per digest; unknown on failure. */
  private async showFacts (client: Ollama, name: string, digest: string, family: string, signal: AbortSignal): Promise<ShowFacts> {
    const cached = this.facts.get(digest)
    if (cached !== undefined && (cached.retryAt === undefined || cached.retryAt > Date.now())) return cached.value
    let pending = this.showsInFlight.get(digest)
    if (pending === undefined) {
      pending = (async () => {
        try {
          const show: unknown = await client.show({ model: name })
          const info = isRecord(show) && isRecord(show.model_info) ? show.model_info : {}
          const arch = typeof info['general.architecture'] === 'string' ? info['general.architecture'] : family
          const value: ShowFacts = { contextLength: num(info[`${arch}.context_length`]) }
          const capabilities = normalizeCapabilities(isRecord(show) ? show.capabilities : undefined)
          if (capabilities != null) value.capabilities = capabilities
          this.facts.set(digest, { value })
          return value
        } catch (err) {
          // the list itself is being cancelled or timed out: let the caller report that
          if (signal.aborted) throw err
          const value: ShowFacts = { contextLength: 0 }
          this.facts.set(digest, { value, retryAt: Date.now() + SHOW_RETRY_MS })
          return value
        } finally {
          this.showsInFlight.delete(digest)
        }
      })()
      this.showsInFlight.set(digest, pending)
    }
    try {
      return await pending
    } catch (err) {
      // someone else's list was cancelled while sharing this lookup; ours goes on without it
      if (signal.aborted) throw err
      return { contextLength: 0 }
    }
  }

  /** Ollama's own /api/show answer for `model` (without `verbose`: no tensors). */
  async show (model: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
    return await this.call('/api/show', signal, this.requestTimeoutMs, async client => {
      const show: unknown = await client.show({ model })
      if (!isRecord(show)) throw new KrillError('ENGINE_FAILED', `Ollama at ${this.host} sent an unexpected /api/show answer`)
      return show
    }, { notFoundIsModel: true })
  }

  /**
   * Embeds every input with Ollama's /api/embed. Aborting `signal` ends the HTTP
   * request at once; no answer within the stall timeout (model loading included) is
   * TIMEOUT. Vectors come back as float32, as Ollama computes them.
   */
  async embed (request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult> {
    const body = toOllamaEmbedRequest(request)
    const res = await this.call('/api/embed', signal, this.stallTimeoutMs, async client => await client.embed(body as unknown as Parameters<Ollama['embed']>[0]), { notFoundIsModel: true })
    const raw: unknown = res
    if (!isRecord(raw) || !Array.isArray(raw.embeddings)) throw new KrillError('ENGINE_FAILED', `Ollama at ${this.host} sent an unexpected /api/embed answer`)
    const embeddings = (raw.embeddings as unknown[]).map((v, i) => {
      if (!Array.isArray(v) || !v.every(x => typeof x === 'number' && Number.isFinite(x))) {
        throw new KrillError('ENGINE_FAILED', `Ollama at ${this.host} sent a malformed vector ${i} in its /api/embed answer`)
      }
      return Float32Array.from(v as number[])
    })
    if (embeddings.length !== request.input.length) {
      throw new KrillError('ENGINE_FAILED', `Ollama at ${this.host} sent ${embeddings.length} vectors for ${request.input.length} inputs`)
    }
    return {
      embeddings,
      promptTokens: num(raw.prompt_eval_count),
      totalDurationNs: num(raw.total_duration),
      loadDurationNs: num(raw.load_duration)
    }
  }

  async * chat (request: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatStreamEvent> {
    const body = toOllamaChatRequest(request)
    if (signal.aborted) throw new KrillError('CANCELLED', 'chat cancelled')

    // One controller ends the HTTP request for every reason: caller abort, stall, early exit.
    const ac = new AbortController()
    let reason: 'cancelled' | 'stalled' | undefined
    const onAbort = (): void => { reason ??= 'cancelled'; ac.abort() }
    signal.addEventListener('abort', onAbort, { once: true })
    // armed from the start: model loading counts as silence too
    let stall: StallTimer | undefined
    let it: AbortableAsyncIterator<OllamaChatResponse> | undefined
    let complete = false
    const cleanup = (): void => {
      stall?.clear()
      signal.removeEventListener('abort', onAbort)
      // closes the socket if anything is still open. Not after a complete answer:
      // the response is over, and aborting it anyway cost undici an AbortError
      // (a DOMException with its stack) per chat, ~0.3 ms of the provider's CPU
      if (complete) return
      it?.abort()
      ac.abort()
    }

    let streaming = false
    try {
      stall = new StallTimer(this.stallTimeoutMs, () => { reason ??= 'stalled'; ac.abort() }, { unref: true })
      it = await this.client(ac.signal).chat(body)
      streaming = true
      for await (const part of it) {
        stall.touch()
        const delta = toDelta(part)
        if (delta !== undefined) yield delta
        if (part.done === true) {
          complete = true
          cleanup()
          yield { type: 'done', usage: toUsage(part) }
          return
        }
      }
      throw new Error('stream ended without a done message')
    } catch (err) {
      if (reason === 'cancelled') throw new KrillError('CANCELLED', 'chat cancelled', { cause: err })
      if (reason === 'stalled') {
        throw new KrillError('TIMEOUT', `Ollama at ${this.host} sent nothing for ${this.stallTimeoutMs} ms`, { cause: err })
      }
      throw this.classify(err, '/api/chat', { notFoundIsModel: true, midStream: streaming })
    } finally {
      cleanup()
    }
  }
}
