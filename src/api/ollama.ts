/**
 * Ollama-compatible API, so any Ollama client pointed at krill (OLLAMA_HOST) uses the
 * whole network: /api/tags, /api/chat, /api/generate, /api/show, /api/ps,
 * /api/version and the "Ollama is running" probe on /. Streams are NDJSON, one
 * object per line, ending with a done object carrying Ollama's counters.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ChatEvent, ChatRequest, ModelInfo, Usage } from '../engine/types.js'
import { logger } from '../log.js'
import { VERSION } from '../version.js'
import { findModel, type ApiBackend, type CatalogModel } from './backend.js'
import { acceptJsonBodies, shapeErrors } from './body.js'
import { firstOutput, nextEvent } from './first-output.js'
import { HttpError, describeError, ollamaError } from './http-errors.js'
import { parseBody } from './openai-schema.js'
import { chatToRequest, generateToRequest, ollamaChatSchema, ollamaGenerateSchema } from './ollama-schema.js'
import { NDJSON_HEADERS, StreamWriter, clientGone } from './stream-writer.js'

const log = logger('ollama-api')

/** The Ollama API version krill speaks; clients compare it to enable features. */
export const OLLAMA_COMPAT_VERSION = '0.12.6'

type Kind = 'chat' | 'generate'
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

function modifiedAt (info: ModelInfo): string {
  return info.modifiedAt ?? new Date(0).toISOString()
}

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
      modified_at: modifiedAt(m.info),
      size: m.info.size,
      digest: m.info.digest,
      details: details(m.info)
    }))
  }))

  app.get('/api/ps', async () => {
    const models = backend.models()
    const byModel = new Map<string, { info: ModelInfo, count: number }>()
    for (const r of backend.running()) {
      const info = findModel(models, r.model)?.info ?? { name: r.model, digest: r.digest, size: 0, family: '', parameterSize: '', quantization: '', contextLength: 0 }
      const seen = byModel.get(info.name)
      if (seen != null) seen.count++
      else byModel.set(info.name, { info, count: 1 })
    }
    const expires = new Date(Date.now() + 5 * 60_000).toISOString()
    return {
      models: [...byModel.values()].map(({ info, count }) => ({
        name: info.name,
        model: info.name,
        size: info.size,
        digest: info.digest,
        details: details(info),
        expires_at: expires,
        size_vram: 0,
        context_length: info.contextLength,
        // not in Ollama's answer: how many chats run on this model now
        running: count
      }))
    }
  })

  app.post('/api/show', async (request) => {
    const body = request.body as { model?: unknown, name?: unknown } | undefined
    const name = typeof body?.model === 'string' && body.model !== '' ? body.model : body?.name
    if (typeof name !== 'string' || name === '') throw new HttpError(400, 'model is required')
    const found = findModel(backend.models(), name)
    if (found == null) throw new HttpError(404, `model '${name}' not found`)
    if (found.local) {
      try {
        const shown = await backend.showLocal(found.name, AbortSignal.timeout(10_000))
        if (shown != null) return shown
      } catch (err) {
        log.debug(`local /api/show for ${found.name} failed, answering from the catalog: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
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
}

function showFromCatalog (m: CatalogModel): Record<string, unknown> {
  const family = m.info.family !== '' ? m.info.family : 'unknown'
  const modelInfo: Record<string, unknown> = { 'general.architecture': family }
  if (m.info.contextLength > 0) modelInfo[`${family}.context_length`] = m.info.contextLength
  return {
    license: '',
    modelfile: `# ${m.name} is served by ${m.providers} krill peer(s); its Modelfile lives with them\nFROM ${m.name}\n`,
    parameters: '',
    template: '',
    details: details(m.info),
    model_info: modelInfo,
    capabilities: ['completion'],
    modified_at: modifiedAt(m.info)
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
  const events = backend.chat(chatRequest, { signal: gone.signal })[Symbol.asyncIterator]()
  // nothing is sent before the first token: until then, errors get a real HTTP status
  const { first } = await firstOutput(events)
  if (stream) {
    await streamAnswer(kind, model, first, events, reply)
    return
  }
  return await wholeAnswer(kind, model, first, events)
}

function line (kind: Kind, model: string, event: Output): Record<string, unknown> {
  const createdAt = new Date().toISOString()
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

async function streamAnswer (kind: Kind, model: string, first: Output, events: AsyncIterator<ChatEvent>, reply: FastifyReply): Promise<void> {
  reply.hijack()
  const out = new StreamWriter(reply.raw, 200, NDJSON_HEADERS)
  try {
    for (let event: ChatEvent | undefined = first; event != null; event = await nextEvent(events)) {
      if (event.type === 'accepted') continue
      if (event.type === 'done') {
        out.end(JSON.stringify(line(kind, model, event)) + '\n')
        return
      }
      if (!await out.write(JSON.stringify(line(kind, model, event)) + '\n')) return
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
