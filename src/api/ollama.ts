/**
 * Ollama-compatible API, so any Ollama client pointed at krill (OLLAMA_HOST) uses the
 * whole network: /api/tags, /api/chat, /api/generate, /api/show, /api/ps,
 * /api/version and the "Ollama is running" probe on /. Streams are NDJSON, one
 * object per line, ending with a done object carrying Ollama's counters.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ChatEvent, ChatRequest, ModelInfo, Usage } from '../engine/types.js'
import { logger } from '../log.js'
import { modelId } from '../models/index.js'
import { VERSION } from '../version.js'
import { findModel, type ApiBackend, type CatalogModel } from './backend.js'
import { acceptJsonBodies, shapeErrors } from './body.js'
import { firstOutput, nextEvent, stepOf } from './first-output.js'
import { HttpError, describeError, ollamaError } from './http-errors.js'
import { parseBody } from './openai-schema.js'
import { chatToRequest, embedOptions, generateToRequest, ollamaChatSchema, ollamaEmbeddingsSchema, ollamaEmbedSchema, ollamaGenerateSchema } from './ollama-schema.js'
import { NDJSON_HEADERS, StreamWriter, clientGone } from './stream-writer.js'
import { vectorsJson } from './float32-json.js'
import { PROVIDER_HEADER, ProviderTracker, pinnedPeer } from './routing-headers.js'

const log = logger('ollama-api')

/** The Ollama API version krill speaks; clients compare it to enable features. */
export const OLLAMA_COMPAT_VERSION = '0.12.6'

export type Kind = 'chat' | 'generate'
type Output = Exclude<ChatEvent, { type: 'accepted' }>

function details (info: ModelInfo): Record<string, unknown> {
  return {
    parent_model: '',
    format: info.format ?? 'gguf',
    family: info.family,
    families: info.families ?? (info.family !== '' ? [info.family] : null),
    parameter_size: info.parameterSize,
    quantization_level: info.quantization
  }
}

/** Ollama's modified_at when a provider told us; left out when nobody did (no 1970 dates) */
function modifiedAt (info: ModelInfo): { modified_at?: string } {
  return info.modifiedAt != null ? { modified_at: info.modifiedAt } : {}
}

/** Ollama lists capabilities in /api/tags too; only when known */
function capabilitiesOf (info: ModelInfo): { capabilities?: string[] } {
  return info.capabilities != null ? { capabilities: info.capabilities } : {}
}

/** Ollama's model-management endpoints (method, path), and the `ollama` command that does the same on a provider. */
const MANAGEMENT: Array<[method: 'POST' | 'DELETE', path: string, command: string]> = [
  ['POST', '/api/pull', 'pull'],
  ['POST', '/api/push', 'push'],
  ['POST', '/api/create', 'create'],
  ['POST', '/api/copy', 'cp'],
  ['DELETE', '/api/delete', 'rm'],
  ['POST', '/api/blobs/*', 'create']
]

function counters (usage: Usage): Record<string, number | string> {
  return {
    done_reason: usage.doneReason,
    total_duration: usage.totalDurationNs,
    load_duration: usage.loadDurationNs,
    prompt_eval_count: usage.promptTokens,
    prompt_eval_duration: usage.promptEvalDurationNs,
    eval_count: usage.completionTokens,
    eval_duration: usage.evalDurationNs
  }
}

function modelNotFound (name: string): HttpError {
  return new HttpError(404, `model "${name}" not found, try pulling it first`, { code: 'model_not_found' })
}

export interface OllamaRoutesOptions {
  backend: ApiBackend
}

export async function ollamaRoutes (app: FastifyInstance, opts: OllamaRoutesOptions): Promise<void> {
  const { backend } = opts
  acceptJsonBodies(app)
  shapeErrors(app, (d, body) => {
    const model = body != null && typeof body === 'object' ? (body as { model?: unknown }).model : undefined
    return ollamaError(d, typeof model === 'string' ? model : undefined)
  })

  // clients probe this to tell that an Ollama(-compatible) server is there
  app.get('/', async (_request, reply) => await reply.type('text/plain; charset=utf-8').send('Ollama is running'))

  app.get('/api/version', async () => ({ version: OLLAMA_COMPAT_VERSION, krill: VERSION }))

  app.get('/api/tags', async () => ({
    models: backend.models().map(m => ({
      name: m.name,
      model: m.name,
      ...modifiedAt(m.info),
      size: m.info.size,
      digest: m.info.digest,
      details: details(m.info),
      ...capabilitiesOf(m.info)
    }))
  }))

  // What is loaded: the local Ollama's own entries as it reports them (expiry, VRAM),
  // and models this node is using on peers right now, with only what krill knows of
  // them (nobody told us their expiry or memory, so those fields are left out).
  app.get('/api/ps', async () => {
    const models = backend.models()
    const local = await backend.psLocal(AbortSignal.timeout(5_000)).catch(() => [])
    const byModel = new Map<string, { info: ModelInfo, count: number }>()
    const loaded = new Set(local.map(m => typeof m.name === 'string' ? modelId(m.name) : ''))
    for (const r of backend.running()) {
      if (loaded.has(modelId(r.model))) continue
      const info = findModel(models, r.model)?.info ?? { name: r.model, digest: r.digest, size: 0, family: '', parameterSize: '', quantization: '', contextLength: 0 }
      const seen = byModel.get(info.name)
      if (seen != null) seen.count++
      else byModel.set(info.name, { info, count: 1 })
    }
    const remote = [...byModel.values()].map(({ info, count }) => ({
      name: info.name,
      model: info.name,
      size: info.size,
      digest: info.digest,
      details: details(info),
      ...(info.contextLength > 0 ? { context_length: info.contextLength } : {}),
      // not in Ollama's answer: how many of this node's requests run on this model now
      running: count
    }))
    return { models: [...local, ...remote] }
  })

  app.post('/api/show', async (request, reply) => {
    const body = request.body as { model?: unknown, name?: unknown } | undefined
    const name = typeof body?.model === 'string' && body.model !== '' ? body.model : body?.name
    if (typeof name !== 'string' || name === '') throw new HttpError(400, 'model is required')
    const peer = pinnedPeer(request)
    const found = findModel(backend.models(), name)
    if (found == null && peer == null) throw new HttpError(404, `model '${name}' not found`)
    try {
      const shown = await backend.show(found?.name ?? name, { signal: AbortSignal.timeout(10_000), peer })
      if (shown != null) {
        void reply.header(PROVIDER_HEADER, shown.provider)
        return shown.show
      }
    } catch (err) {
      if (peer != null || found == null) throw err
      log.debug(`/api/show for ${found.name} failed, answering from the catalog: ${err instanceof Error ? err.message : String(err)}`)
    }
    if (found == null) throw new HttpError(404, `model '${name}' not found`)
    return showFromCatalog(found)
  })

  app.post('/api/chat', async (request, reply) => {
    const body = parseBody(ollamaChatSchema, request.body)
    return await answer('chat', body.model, body.stream !== false, chatToRequest(body), request, reply, backend)
  })

  app.post('/api/generate', async (request, reply) => {
    const body = parseBody(ollamaGenerateSchema, request.body)
    return await answer('generate', body.model, body.stream !== false, generateToRequest(body), request, reply, backend)
  })

  app.post('/api/embed', async (request, reply) => {
    const body = parseBody(ollamaEmbedSchema, request.body)
    const input = typeof body.input === 'string' ? (body.input === '' ? [] : [body.input]) : body.input ?? []
    if (input.length === 0) {
      // nothing to embed: Ollama loads the model and answers no vectors
      if (findModel(backend.models(), body.model) == null && pinnedPeer(request) == null) throw modelNotFound(body.model)
      return { model: body.model, embeddings: [] }
    }
    const gone = clientGone(request.raw, reply.raw)
    const outcome = await backend.embed({
      model: body.model,
      input,
      ...(body.truncate != null ? { truncate: body.truncate } : {}),
      ...(body.dimensions != null && body.dimensions > 0 ? { dimensions: body.dimensions } : {}),
      ...(body.keep_alive != null ? { keepAlive: body.keep_alive } : {}),
      ...(embedOptions(body.options) != null ? { options: embedOptions(body.options) } : {})
    }, { signal: gone.signal, peer: pinnedPeer(request) })
    const tail = JSON.stringify({
      ...(outcome.totalDurationNs > 0 ? { total_duration: outcome.totalDurationNs } : {}),
      ...(outcome.loadDurationNs > 0 ? { load_duration: outcome.loadDurationNs } : {}),
      ...(outcome.promptTokens > 0 ? { prompt_eval_count: outcome.promptTokens } : {})
    }).slice(1)
    const json = `{"model":${JSON.stringify(body.model)},"embeddings":${vectorsJson(outcome.embeddings)}${tail === '}' ? '}' : ',' + tail}`
    return await reply.header(PROVIDER_HEADER, outcome.providers.join(',')).type('application/json; charset=utf-8').send(json)
  })

  // the older single-prompt form: one vector, as float64 numbers
  app.post('/api/embeddings', async (request, reply) => {
    const body = parseBody(ollamaEmbeddingsSchema, request.body)
    if (body.prompt == null || body.prompt === '') {
      if (findModel(backend.models(), body.model) == null && pinnedPeer(request) == null) throw modelNotFound(body.model)
      return { embedding: [] }
    }
    const gone = clientGone(request.raw, reply.raw)
    const outcome = await backend.embed({
      model: body.model,
      input: [body.prompt],
      ...(body.keep_alive != null ? { keepAlive: body.keep_alive } : {}),
      ...(embedOptions(body.options) != null ? { options: embedOptions(body.options) } : {})
    }, { signal: gone.signal, peer: pinnedPeer(request) })
    return await reply.header(PROVIDER_HEADER, outcome.providers.join(',')).send({ embedding: Array.from(outcome.embeddings[0]) })
  })

  for (const [method, path, command] of MANAGEMENT) {
    app.route({
      method,
      url: path,
      handler: async (_request, reply) => await reply.code(501).send({
        error: `krill shares the models of each peer's Ollama but does not manage them: ${method} ${path.replace('/*', '')} is not available through krill; run \`ollama ${command}\` on a provider (e.g. \`ollama pull llama3.2\` on a machine whose krill serves its Ollama)`
      })
    })
  }
}

/**
 * What krill knows of a model when no provider could describe it: the announced
 * facts only (details, context length, capabilities, modification time). Template,
 * license, Modelfile and parameters live with the providers; they are left out
 * rather than made up.
 */
function showFromCatalog (m: CatalogModel): Record<string, unknown> {
  const modelInfo: Record<string, unknown> = {}
  if (m.info.family !== '') {
    modelInfo['general.architecture'] = m.info.family
    if (m.info.contextLength > 0) modelInfo[`${m.info.family}.context_length`] = m.info.contextLength
  }
  return {
    details: details(m.info),
    model_info: modelInfo,
    ...capabilitiesOf(m.info),
    ...modifiedAt(m.info)
  }
}

async function answer (kind: Kind, model: string, stream: boolean, chatRequest: ChatRequest | undefined,
  request: FastifyRequest, reply: FastifyReply, backend: ApiBackend): Promise<unknown> {
  if (chatRequest == null) {
    // nothing to say: Ollama loads the model and answers at once
    if (findModel(backend.models(), model) == null) throw modelNotFound(model)
    const base = kind === 'chat' ? { message: { role: 'assistant', content: '' } } : { response: '' }
    return { model, created_at: new Date().toISOString(), ...base, done: true, done_reason: 'load' }
  }
  const gone = clientGone(request.raw, reply.raw)
  const provider = new ProviderTracker()
  const events = backend.chat(chatRequest, { signal: gone.signal, peer: pinnedPeer(request), onProvider: provider.onProvider })[Symbol.asyncIterator]()
  // nothing is sent before the first token: until then, errors get a real HTTP status
  const { first } = await firstOutput(events)
  if (stream) {
    // the provider that delivers the first token (a later failover continues the same answer)
    await streamAnswer(kind, model, first, events, reply, provider.current)
    return
  }
  const whole = await wholeAnswer(kind, model, first, events)
  // the provider that finished the answer
  void reply.header(PROVIDER_HEADER, provider.current)
  return whole
}

export function line (kind: Kind, model: string, event: Output): Record<string, unknown> {
  const createdAt = isoNow()
  if (event.type === 'done') {
    const base = kind === 'chat' ? { message: { role: 'assistant', content: '' } } : { response: '' }
    return { model, created_at: createdAt, ...base, done: true, ...counters(event.usage) }
  }
  if (kind === 'generate') {
    return { model, created_at: createdAt, response: event.content ?? '', ...(event.thinking != null ? { thinking: event.thinking } : {}), done: false }
  }
  const message: Record<string, unknown> = { role: 'assistant', content: event.content ?? '' }
  if (event.thinking != null) message.thinking = event.thinking
  if (event.toolCalls != null && event.toolCalls.length > 0) message.tool_calls = event.toolCalls
  return { model, created_at: createdAt, message, done: false }
}

/** Date.now() → toISOString(), made once per millisecond: every line of an answer carries it */
let isoAt = 0
let isoText = ''
function isoNow (): string {
  const now = Date.now()
  if (now !== isoAt) {
    isoAt = now
    isoText = new Date(now).toISOString()
  }
  return isoText
}

/**
 * A token's line, the usual case (content only): a template with the model's JSON
 * made once per answer — the same text as JSON.stringify(line(...)), in the same
 * key order (checked in api-ollama-lines.test.ts), without building two objects a token.
 */
export function contentLine (kind: Kind, modelJson: string, content: string): string {
  return kind === 'chat'
    ? `{"model":${modelJson},"created_at":"${isoNow()}","message":{"role":"assistant","content":${JSON.stringify(content)}},"done":false}\n`
    : `{"model":${modelJson},"created_at":"${isoNow()}","response":${JSON.stringify(content)},"done":false}\n`
}

async function streamAnswer (kind: Kind, model: string, first: Output, events: AsyncIterator<ChatEvent>, reply: FastifyReply, provider: string): Promise<void> {
  reply.hijack()
  const out = new StreamWriter(reply.raw, 200, { ...NDJSON_HEADERS, [PROVIDER_HEADER]: provider })
  const modelJson = JSON.stringify(model)
  try {
    for (let event: ChatEvent | undefined = first; event != null; event = stepOf(await events.next())) {
      if (event.type === 'accepted') continue
      if (event.type === 'done') {
        out.end(JSON.stringify(line(kind, model, event)) + '\n')
        return
      }
      const text = event.thinking == null && (event.toolCalls == null || event.toolCalls.length === 0)
        ? contentLine(kind, modelJson, event.content ?? '')
        : JSON.stringify(line(kind, model, event)) + '\n'
      const ok = out.write(text)
      if (ok === false || (ok !== true && !await ok)) return
    }
    throw new Error('the answer ended without a done event')
  } catch (err) {
    // Ollama's mid-stream error: one {"error": ...} line, then the end
    const d = describeError(err)
    if (d.status !== 499) log.warn(`/api/${kind} stream for ${model} failed: ${d.message}`)
    out.end(JSON.stringify(ollamaError(d, model)) + '\n')
  } finally {
    await events.return?.()
  }
}

async function wholeAnswer (kind: Kind, model: string, first: Output, events: AsyncIterator<ChatEvent>): Promise<Record<string, unknown>> {
  let content = ''
  let thinking = ''
  const toolCalls: unknown[] = []
  try {
    for (let event: ChatEvent | undefined = first; event != null; event = await nextEvent(events)) {
      if (event.type === 'delta') {
        content += event.content ?? ''
        thinking += event.thinking ?? ''
        if (event.toolCalls != null) toolCalls.push(...event.toolCalls)
      } else if (event.type === 'done') {
        const createdAt = new Date().toISOString()
        if (kind === 'generate') {
          return { model, created_at: createdAt, response: content, ...(thinking !== '' ? { thinking } : {}), done: true, ...counters(event.usage) }
        }
        const message: Record<string, unknown> = { role: 'assistant', content }
        if (thinking !== '') message.thinking = thinking
        if (toolCalls.length > 0) message.tool_calls = toolCalls
        return { model, created_at: createdAt, message, done: true, ...counters(event.usage) }
      }
    }
  } finally {
    await events.return?.()
  }
  throw new Error('the answer ended without a done event')
}
