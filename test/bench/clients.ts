/**
 * The clients whose experience is measured, timed with performance.now():
 * - the `ollama` npm client (as apps and krill itself call Ollama), against the
 *   stand-in directly or against krill's Ollama-compatible /api/chat;
 * - plain fetch (Node's undici), as apps call HTTP APIs: reading Ollama's NDJSON
 *   (/api/chat, the stand-in or krill) or krill's OpenAI-compatible SSE;
 * - the protocol level: krill's OllamaEngine.chat and requestChat over libp2p.
 * Each returns when the answer is complete, with the time to the first content
 * token and to the end.
 */
import { ReadyStreams } from '../../src/protocol/ready-streams.js'
import { performance } from 'node:perf_hooks'
import { Ollama } from 'ollama'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { ChatEvent, ChatRequest, Engine } from '../../src/engine/types.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { MODEL } from './procs.js'

export interface StreamTiming {
  /** request start → first content token, ms */
  ttftMs: number
  /** request start → end of the answer, ms */
  totalMs: number
  /** content tokens received */
  tokens: number
}

export interface StreamOptions {
  /** tokens to ask for (the stand-in honours num_predict) */
  numPredict: number
  model?: string
  signal?: AbortSignal
  /** called on every content token with its arrival time (performance.now()) */
  onToken?: (at: number) => void
  /**
   * a fresh HTTP connection for this request (`connection: close`: the client's
   * socket is not kept for another one), i.e. a cold request as far as HTTP goes
   */
  fresh?: boolean
}

const clients = new Map<string, Ollama>()

function ollamaAt (host: string, fresh = false): Ollama {
  const key = `${fresh ? 'fresh ' : ''}${host}`
  let client = clients.get(key)
  if (client == null) {
    client = new Ollama({ host, ...(fresh ? { headers: { connection: 'close' } } : {}) })
    clients.set(key, client)
  }
  return client
}

function jsonHeaders (fresh?: boolean): Record<string, string> {
  return fresh === true ? { 'content-type': 'application/json', connection: 'close' } : { 'content-type': 'application/json' }
}

function messages (): ChatRequest['messages'] {
  return [{ role: 'user', content: 'benchmark: say something' }]
}

/** Streams one chat through the `ollama` client from `host` (the stand-in or a krill API). */
export async function ollamaChat (host: string, opts: StreamOptions): Promise<StreamTiming> {
  const start = performance.now()
  let first = NaN
  let tokens = 0
  const stream = await ollamaAt(host, opts.fresh).chat({ model: opts.model ?? MODEL, messages: messages(), stream: true, options: { num_predict: opts.numPredict } })
  const onAbort = (): void => { stream.abort() }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for await (const part of stream) {
      if (part.message?.content != null && part.message.content !== '') {
        const now = performance.now()
        if (tokens === 0) first = now
        tokens++
        opts.onToken?.(now)
      }
      // no `break` on done: the client's iterator ends by itself after the done line,
      // and only then forgets the request (leaving early keeps it in the client's list)
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
  }
  return { ttftMs: first - start, totalMs: performance.now() - start, tokens }
}

/** Streams one chat from krill's OpenAI-compatible endpoint, parsing SSE by hand. */
export async function openAiSse (api: string, opts: StreamOptions): Promise<StreamTiming> {
  const start = performance.now()
  let first = NaN
  let tokens = 0
  const res = await fetch(`${api}/v1/chat/completions`, {
    method: 'POST',
    headers: jsonHeaders(opts.fresh),
    body: JSON.stringify({ model: opts.model ?? MODEL, messages: messages(), stream: true, max_tokens: opts.numPredict }),
    signal: opts.signal
  })
  if (!res.ok || res.body == null) throw new Error(`POST /v1/chat/completions answered ${res.status}: ${await res.text()}`)
  const decoder = new TextDecoder()
  let buffered = ''
  let done = false
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk, { stream: true })
    let end: number
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      if (!event.startsWith('data: ')) continue
      const data = event.slice(6)
      if (data === '[DONE]') { done = true; continue }
      const parsed = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }>, error?: { message: string } }
      if (parsed.error != null) throw new Error(`stream failed: ${parsed.error.message}`)
      const content = parsed.choices?.[0]?.delta?.content
      if (content != null && content !== '') {
        const now = performance.now()
        if (tokens === 0) first = now
        tokens++
        opts.onToken?.(now)
      }
    }
  }
  if (!done) throw new Error('SSE stream ended without [DONE]')
  return { ttftMs: first - start, totalMs: performance.now() - start, tokens }
}

/** Streams one chat from an Ollama-compatible /api/chat (the stand-in or krill) with plain fetch, parsing NDJSON by hand. */
export async function fetchNdjson (host: string, opts: StreamOptions): Promise<StreamTiming> {
  const start = performance.now()
  let first = NaN
  let tokens = 0
  const res = await fetch(`${host}/api/chat`, {
    method: 'POST',
    headers: jsonHeaders(opts.fresh),
    body: JSON.stringify({ model: opts.model ?? MODEL, messages: messages(), stream: true, options: { num_predict: opts.numPredict } }),
    signal: opts.signal
  })
  if (!res.ok || res.body == null) throw new Error(`POST /api/chat answered ${res.status}: ${await res.text()}`)
  const decoder = new TextDecoder()
  let buffered = ''
  let done = false
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk, { stream: true })
    let end: number
    while ((end = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, end)
      buffered = buffered.slice(end + 1)
      if (text === '') continue
      const parsed = JSON.parse(text) as { message?: { content?: string }, done?: boolean, error?: string }
      if (parsed.error != null) throw new Error(`stream failed: ${parsed.error}`)
      const content = parsed.message?.content
      if (content != null && content !== '') {
        const now = performance.now()
        if (tokens === 0) first = now
        tokens++
        opts.onToken?.(now)
      }
      if (parsed.done === true) done = true
    }
  }
  if (!done) throw new Error('NDJSON stream ended without done')
  return { ttftMs: first - start, totalMs: performance.now() - start, tokens }
}

async function consume (events: AsyncIterable<ChatEvent>, start: number, opts: StreamOptions): Promise<StreamTiming> {
  let first = NaN
  let tokens = 0
  for await (const event of events) {
    if (event.type === 'delta' && event.content != null && event.content !== '') {
      const now = performance.now()
      if (tokens === 0) first = now
      tokens++
      opts.onToken?.(now)
    }
    if (event.type === 'done') break
  }
  return { ttftMs: first - start, totalMs: performance.now() - start, tokens }
}

function chatRequest (opts: StreamOptions): ChatRequest {
  return { model: opts.model ?? MODEL, messages: messages(), options: { num_predict: opts.numPredict } }
}

/** krill's engine straight against the stand-in: the protocol level's baseline. */
export async function engineChat (engine: Engine, opts: StreamOptions): Promise<StreamTiming> {
  const start = performance.now()
  const ac = new AbortController()
  const onAbort = (): void => { ac.abort() }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await consume(engine.chat(chatRequest(opts), ac.signal), start, opts)
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
  }
}

type DialingNode = Parameters<typeof requestChat>[0]

/** /krill/chat/1.0.0 from this process's node to a provider: engine.chat plus libp2p. */
/** one set of ready chat streams per probe node, as a daemon keeps (src/protocol/ready-streams.ts) */
const readyStreams = new WeakMap<object, ReadyStreams>()

export async function protocolChat (node: DialingNode | Libp2p, provider: PeerId, opts: StreamOptions): Promise<StreamTiming> {
  let ready = readyStreams.get(node)
  if (ready == null) readyStreams.set(node, ready = new ReadyStreams())
  const start = performance.now()
  return await consume(requestChat(node, provider, chatRequest(opts), { signal: opts.signal, ready }), start, opts)
}
