/**
 * OpenAI-compatible API: GET /v1/models and POST /v1/chat/completions, streamed
 * as server-sent events exactly like OpenAI's (role chunk, content and tool-call
 * deltas, finish chunk, optional usage chunk, [DONE]) or as one chat.completion.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ChatEvent, ToolCall, Usage } from '../engine/types.js'
import { acceptJsonBodies, shapeErrors } from './body.js'
import { findModel, type ApiBackend, type CatalogModel } from './backend.js'
import { describeError, openAiError } from './http-errors.js'
import {
  chatCompletionSchema, completionSchema, completionToRequest, embeddingInputs, embeddingsSchema, encodingFormat, parseBody,
  toChatRequest, type ChatCompletionBody
} from './openai-schema.js'
import { float32Text, vectorBase64 } from './float32-json.js'
import { PROVIDER_HEADER, ProviderTracker, pinnedPeer } from './routing-headers.js'
import { firstOutput, nextEvent, stepOf } from './first-output.js'
import { SSE_HEADERS, StreamWriter, clientGone } from './stream-writer.js'
import { logger } from '../log.js'

const log = logger('openai')

type DeltaEvent = Extract<ChatEvent, { type: 'delta' }>

interface OpenAiToolCall {
  index?: number
  id: string
  type: 'function'
  function: { name: string, arguments: string }
}

function toolCallId (): string {
  return `call_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`
}

function toOpenAiToolCalls (calls: ToolCall[], firstIndex: number, withIndex: boolean): OpenAiToolCall[] {
  return calls.map((c, i) => ({
    ...(withIndex ? { index: firstIndex + i } : {}),
    id: toolCallId(),
    type: 'function' as const,
    function: { name: c.function.name, arguments: JSON.stringify(c.function.arguments ?? {}) }
  }))
}

function finishReason (usage: Usage, sawToolCalls: boolean): 'stop' | 'length' | 'tool_calls' {
  if (sawToolCalls) return 'tool_calls'
  return usage.doneReason === 'length' ? 'length' : 'stop'
}

function usageOf (usage: Usage): { prompt_tokens: number, completion_tokens: number, total_tokens: number } {
  return { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens, total_tokens: usage.promptTokens + usage.completionTokens }
}

/** `created` is when the model was last modified on its provider; left out when nobody said */
function modelObject (m: CatalogModel): Record<string, unknown> {
  const modified = m.info.modifiedAt != null ? Date.parse(m.info.modifiedAt) : NaN
  return { id: m.name, object: 'model', ...(Number.isFinite(modified) ? { created: Math.floor(modified / 1000) } : {}), owned_by: 'krill' }
}

export interface OpenAiRoutesOptions {
  backend: ApiBackend
}

/** Register with `{ prefix: '/v1' }`. */
export async function openAiRoutes (app: FastifyInstance, opts: OpenAiRoutesOptions): Promise<void> {
  const { backend } = opts
  acceptJsonBodies(app)
  shapeErrors(app, d => openAiError(d))
  app.setNotFoundHandler(async (request, reply) => {
    return await reply.code(404).send(openAiError({ status: 404, message: `unknown endpoint ${request.method} ${request.url.split('?')[0]}`, param: null, code: 'unknown_url' }))
  })

  app.get('/models', async () => ({ object: 'list', data: backend.models().map(modelObject) }))

  app.get<{ Params: { '*': string } }>('/models/*', async (request, reply) => {
    const name = request.params['*']
    const found = findModel(backend.models(), name)
    if (found == null) {
      return await reply.code(404).send(openAiError({ status: 404, message: `The model '${name}' does not exist`, param: 'model', code: 'model_not_found' }))
    }
    return modelObject(found)
  })

  app.post('/chat/completions', async (request, reply) => {
    const body = parseBody(chatCompletionSchema, request.body)
    const chatRequest = toChatRequest(body)
    const gone = clientGone(request.raw, reply.raw)
    const provider = new ProviderTracker()
    const events = backend.chat(chatRequest, { signal: gone.signal, peer: pinnedPeer(request), onProvider: provider.onProvider })[Symbol.asyncIterator]()
    // nothing is sent before the first token: until then, errors get a real HTTP status
    const { digest, first } = await firstOutput(events)
    const meta = {
      id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      system_fingerprint: digest !== '' ? `fp_${digest.slice(0, 12)}` : 'fp_krill'
    }
    if (body.stream === true) {
      await streamCompletion(request, reply, body, meta, first, events, provider.current)
      return
    }
    const whole = await completeCompletion(meta, first, events)
    void reply.header(PROVIDER_HEADER, provider.current)
    return whole
  })

  app.post('/embeddings', async (request, reply) => {
    const body = parseBody(embeddingsSchema, request.body)
    const input = embeddingInputs(body)
    const format = encodingFormat(body)
    const gone = clientGone(request.raw, reply.raw)
    const outcome = await backend.embed({ model: body.model, input, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) }, { signal: gone.signal, peer: pinnedPeer(request) })
    const data = outcome.embeddings.map((v, index) => format === 'base64'
      ? `{"object":"embedding","embedding":${JSON.stringify(vectorBase64(v))},"index":${index}}`
      : `{"object":"embedding","embedding":[${Array.from(v, float32Text).join(',')}],"index":${index}}`)
    const usage = JSON.stringify({ prompt_tokens: outcome.promptTokens, total_tokens: outcome.promptTokens })
    const json = `{"object":"list","data":[${data.join(',')}],"model":${JSON.stringify(body.model)},"usage":${usage}}`
    return await reply.header(PROVIDER_HEADER, outcome.providers.join(',')).type('application/json; charset=utf-8').send(json)
  })

  app.post('/completions', async (request, reply) => {
    const body = parseBody(completionSchema, request.body)
    const chatRequest = completionToRequest(body)
    const gone = clientGone(request.raw, reply.raw)
    const provider = new ProviderTracker()
    const events = backend.chat(chatRequest, { signal: gone.signal, peer: pinnedPeer(request), onProvider: provider.onProvider })[Symbol.asyncIterator]()
    const { digest, first } = await firstOutput(events)
    const meta = {
      id: `cmpl-${randomUUID().replaceAll('-', '')}`,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      system_fingerprint: digest !== '' ? `fp_${digest.slice(0, 12)}` : 'fp_krill'
    }
    if (body.stream === true) {
      await streamText(request, reply, body.model, body.stream_options?.include_usage === true, meta, first, events, provider.current)
      return
    }
    let text = ''
    try {
      for (let event: ChatEvent | undefined = first; event != null; event = await nextEvent(events)) {
        if (event.type === 'delta') text += event.content ?? ''
        else if (event.type === 'done') {
          void reply.header(PROVIDER_HEADER, provider.current)
          return { ...meta, choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason(event.usage, false) }], usage: usageOf(event.usage) }
        }
      }
    } finally {
      await events.return?.()
    }
    throw new Error('the answer ended without a done event')
  })
}

/** /v1/completions streamed: text chunks, a finish chunk, optionally usage, [DONE]. */
async function streamText (request: FastifyRequest, reply: FastifyReply, model: string, includeUsage: boolean, meta: Record<string, unknown>,
  first: ChatEvent, events: AsyncIterator<ChatEvent>, provider: string): Promise<void> {
  reply.hijack()
  const out = new StreamWriter(reply.raw, 200, { ...SSE_HEADERS, [PROVIDER_HEADER]: provider })
  const send = async (payload: unknown): Promise<boolean> => await out.write(`data: ${JSON.stringify(payload)}\n\n`)
  const chunk = (text: string, finish: string | null): Record<string, unknown> => ({ ...meta, choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] })
  try {
    for (let event: ChatEvent | undefined = first; event != null; event = await nextEvent(events)) {
      if (event.type === 'delta') {
        if (event.content != null && event.content !== '' && !await send(chunk(event.content, null))) return
      } else if (event.type === 'done') {
        if (!await send(chunk('', finishReason(event.usage, false)))) return
        if (includeUsage && !await send({ ...meta, choices: [], usage: usageOf(event.usage) })) return
        out.end('data: [DONE]\n\n')
        return
      }
    }
    throw new Error('the answer ended without a done event')
  } catch (err) {
    const d = describeError(err)
    if (d.status !== 499) log.warn(`${request.url}: stream for ${model} failed: ${d.message}`)
    await send(openAiError(d))
    out.end()
  } finally {
    await events.return?.()
  }
}

interface Meta { id: string, created: number, model: string, system_fingerprint: string }

async function completeCompletion (meta: Meta, first: ChatEvent, events: AsyncIterator<ChatEvent>): Promise<Record<string, unknown>> {
  let content = ''
  let reasoning = ''
  const calls: ToolCall[] = []
  try {
    for (let event: ChatEvent | undefined = first; event != null; event = await nextEvent(events)) {
      if (event.type === 'delta') {
        content += event.content ?? ''
        reasoning += event.thinking ?? ''
        if (event.toolCalls != null) calls.push(...event.toolCalls)
      } else if (event.type === 'done') {
        const message: Record<string, unknown> = { role: 'assistant', content: content === '' && calls.length > 0 ? null : content }
        if (reasoning !== '') message.reasoning = reasoning
        if (calls.length > 0) message.tool_calls = toOpenAiToolCalls(calls, 0, false)
        return {
          ...meta,
          object: 'chat.completion',
          choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(event.usage, calls.length > 0) }],
          usage: usageOf(event.usage)
        }
      }
    }
  } finally {
    await events.return?.()
  }
  throw new Error('the answer ended without a done event')
}

/** stands for a token's text in the chunk template of streamCompletion (it cannot occur in real text twice over JSON) */
const TOKEN_SLOT = '\u0000krill-token-slot\u0000'

async function streamCompletion (request: FastifyRequest, reply: FastifyReply, body: ChatCompletionBody, meta: Meta,
  first: ChatEvent, events: AsyncIterator<ChatEvent>, provider: string): Promise<void> {
  const includeUsage = body.stream_options?.include_usage === true
  reply.hijack()
  const out = new StreamWriter(reply.raw, 200, { ...SSE_HEADERS, [PROVIDER_HEADER]: provider })
  const send = async (payload: unknown): Promise<boolean> => await out.write(`data: ${JSON.stringify(payload)}\n\n`)
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): Record<string, unknown> => ({
    ...meta,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {})
  })
  let toolIndex = 0
  // a content token's event: the chunk around its content made once per answer,
  // so a token costs one JSON.stringify of its text (the same bytes, by construction)
  const template = JSON.stringify(chunk({ content: TOKEN_SLOT })).split(JSON.stringify(TOKEN_SLOT))
  const [before, after] = template
  const sendContent = (content: string): boolean | Promise<boolean> => out.write(`data: ${before}${JSON.stringify(content)}${after}\n\n`)
  const deltaChunk = (event: DeltaEvent): Record<string, unknown> | undefined => {
    const delta: Record<string, unknown> = {}
    if (event.content != null && event.content !== '') delta.content = event.content
    if (event.thinking != null && event.thinking !== '') delta.reasoning = event.thinking
    if (event.toolCalls != null && event.toolCalls.length > 0) {
      delta.tool_calls = toOpenAiToolCalls(event.toolCalls, toolIndex, true)
      toolIndex += event.toolCalls.length
    }
    return Object.keys(delta).length > 0 ? chunk(delta) : undefined
  }

  try {
    // goes out with the first token, in one chunk: sent apart, it made the first token
    // the second write of its turn, held back until the turn ended (StreamWriter)
    out.hold(`data: ${JSON.stringify(chunk({ role: 'assistant', content: '' }))}\n\n`)
    for (let event: ChatEvent | undefined = first; event != null; event = stepOf(await events.next())) {
      if (event.type === 'delta') {
        if (template.length === 2 && event.content != null && event.content !== '' && (event.thinking == null || event.thinking === '') && (event.toolCalls == null || event.toolCalls.length === 0)) {
          const ok = sendContent(event.content)
          if (ok === false || (ok !== true && !await ok)) return
          continue
        }
        const c = deltaChunk(event)
        if (c != null && !await send(c)) return
      } else if (event.type === 'done') {
        if (!await send(chunk({}, finishReason(event.usage, toolIndex > 0)))) return
        if (includeUsage && !await send({ ...meta, object: 'chat.completion.chunk', choices: [], usage: usageOf(event.usage) })) return
        out.end('data: [DONE]\n\n')
        return
      }
    }
    throw new Error('the answer ended without a done event')
  } catch (err) {
    // headers are out: the error travels in the stream, as OpenAI does
    const d = describeError(err)
    if (d.status !== 499) log.warn(`${request.url}: stream for ${body.model} failed: ${d.message}`)
    await send(openAiError(d))
    out.end()
  } finally {
    // stops the router (and the provider) if we leave early, e.g. the client went away
    await events.return?.()
  }
}
