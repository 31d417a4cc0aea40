/**
 * Fuzzing every decoder of the chat protocol with seeded random and mutated input:
 * the provider's ChatRequest decode + validate, the consumer's ChatFrame decode, and
 * both ends over real libp2p streams (framing, chunking, truncation, length fields).
 * Properties: no crash (only the documented errors), no hang (a time bound per
 * input), bounded memory, and nothing but allow-listed keys ever reaching Ollama.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toOllamaChatRequest } from '../../src/engine/ollama-engine.js'
import { CHAT_OPTION_KEYS, type ChatRequest } from '../../src/engine/types.js'
import { KrillError } from '../../src/errors.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { lengthPrefixed } from '../../src/protocol/frame-io.js'
import { acceptedFrame, decodeFrame, deltaFrame, deltaFromPb, doneFrame, encodeFrame, encodeRequest, errorFrame, errorFromPb, usageFromPb } from '../../src/protocol/frames.js'
import { resolveLimits } from '../../src/limits/index.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { decodeChatRequest } from '../../src/protocol/validate.js'
import { cleanup, collect, connectedClient, createNode, rawExchange, startProvider, type Provider } from '../integration/chat-protocol-helpers.js'
import { concat, deepJsonText, heapUsedMiB, hex, mutateBytes, Rng, SEED } from './fuzz.js'
import type { Libp2p, Stream } from '@libp2p/interface'

const LIMITS = resolveLimits()
/**
 * "No hang": one input may take this long at most. Decoding takes well under a
 * millisecond, but a GC pause on a loaded 2-core CI machine can take a few hundred;
 * a real hang (a loop on crafted input) takes far longer than this.
 */
const PER_INPUT_MS = 2_000
const HEAP_GROWTH_MIB = 64

const TOP_KEYS = new Set(['model', 'messages', 'options', 'format', 'tools', 'think', 'keep_alive', 'stream'])
const MESSAGE_KEYS = new Set(['role', 'content', 'images', 'thinking', 'tool_calls', 'tool_name'])
const TOOL_KEYS = new Set(['type', 'function'])
const TOOL_FUNCTION_KEYS = new Set(['name', 'description', 'parameters'])

const REQUESTS: ChatRequest[] = [
  { model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hello' }] },
  {
    model: 'hf.co/org/model:Q4_K_M',
    digest: 'a'.repeat(64),
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'what is in this picture? ✨', images: ['aGVsbG8gd29ybGQ='] },
      { role: 'assistant', content: '', thinking: 'hmm', toolCalls: [{ function: { name: 'look', arguments: { at: [1, 2], deep: { x: null } } } }] },
      { role: 'tool', content: '{"ok":true}', toolName: 'look' }
    ],
    options: { temperature: 0.7, top_p: 0.9, top_k: 40, seed: 42, stop: ['\n\n', 'User:'], num_predict: 128, num_ctx: 4096, repeat_penalty: 1.1, presence_penalty: 0.5, frequency_penalty: -0.5, min_p: 0.05 },
    format: { type: 'object', properties: { answer: { type: 'string' } } },
    tools: [{ type: 'function', function: { name: 'look', description: 'look', parameters: { type: 'object' } } }],
    think: 'high',
    keepAlive: '5m'
  },
  { model: 'qwen3:8b', messages: [{ role: 'user', content: 'x'.repeat(3000) }], format: 'json', think: false, keepAlive: 300 }
]

/** checks one decoded request against what may reach Ollama; returns a problem or undefined */
function leaks (request: ChatRequest): string | undefined {
  const body = toOllamaChatRequest(request) as unknown as Record<string, any>
  for (const k of Object.keys(body)) if (!TOP_KEYS.has(k)) return `top-level key ${k}`
  for (const m of body.messages) {
    for (const k of Object.keys(m)) if (!MESSAGE_KEYS.has(k)) return `message key ${k}`
    // images travel as bytes: a string would be read as a file path by the ollama client
    for (const img of m.images ?? []) if (!(img instanceof Uint8Array)) return 'an image that is not bytes'
  }
  for (const k of Object.keys(body.options ?? {})) if (!(CHAT_OPTION_KEYS as readonly string[]).includes(k)) return `option ${k}`
  for (const t of body.tools ?? []) {
    for (const k of Object.keys(t)) if (!TOOL_KEYS.has(k)) return `tool key ${k}`
    for (const k of Object.keys(t.function)) if (!TOOL_FUNCTION_KEYS.has(k)) return `tool function key ${k}`
  }
  return undefined
}

describe('fuzz: ChatRequest decode + validate (provider side)', () => {
  it(`survives 20 000 random and mutated requests (seed ${SEED})`, () => {
    const rng = new Rng(SEED)
    const corpus = REQUESTS.map(r => encodeRequest(r))
    // big and deep inputs, then mutated like the rest
    corpus.push(encodeRequest({ ...REQUESTS[0], format: { a: 1 } }).slice(0, 0))
    const deepFormat = concat(corpus[0], Uint8Array.from([0x2a]), ...varintAndText(deepJsonText(200_000, 'object')))
    const heapBefore = heapUsedMiB()
    const outcomes: Record<string, number> = { accepted: 0, BAD_REQUEST: 0, TOO_LARGE: 0 }
    let slowest = 0
    for (let i = 0; i < 20_000; i++) {
      const input = i === 0
        ? deepFormat
        : rng.chance(0.2) ? rng.bytes(rng.size(512)) : mutateBytes(rng, rng.pick(corpus), corpus)
      const started = performance.now()
      let result: ChatRequest | undefined
      try {
        result = decodeChatRequest(input, LIMITS)
      } catch (err) {
        if (!(err instanceof KrillError) || !['BAD_REQUEST', 'TOO_LARGE'].includes(err.code)) {
          expect.fail(`case ${i} (seed ${SEED}) threw ${String(err)} for input ${hex(input)}`)
        }
        outcomes[err.code]++
      }
      const ms = performance.now() - started
      slowest = Math.max(slowest, ms)
      if (ms > PER_INPUT_MS) expect.fail(`case ${i} (seed ${SEED}) took ${ms.toFixed(0)} ms for input ${hex(input)}`)
      if (result != null) {
        outcomes.accepted++
        let leak: string | undefined
        try {
          leak = leaks(result)
        } catch (err) {
          // the engine's own whitelist refuses it (an Error frame, before Ollama is asked)
          if (!(err instanceof KrillError) || err.code !== 'BAD_REQUEST') expect.fail(`case ${i} (seed ${SEED}): mapping for Ollama threw ${String(err)}; input ${hex(input)}`)
          outcomes.engineRefused = (outcomes.engineRefused ?? 0) + 1
        }
        if (leak != null) expect.fail(`case ${i} (seed ${SEED}): ${leak} would reach Ollama; input ${hex(input)}`)
        // what we accept, we can forward unchanged
        expect(decodeChatRequest(encodeRequest(result), LIMITS)).toEqual(result)
      }
    }
    const growth = heapUsedMiB() - heapBefore
    console.log(`ChatRequest fuzz: ${JSON.stringify(outcomes)}, slowest ${slowest.toFixed(1)} ms, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
    expect(outcomes.accepted).toBeGreaterThan(100)
    expect(outcomes.BAD_REQUEST).toBeGreaterThan(1000)
    expect(growth).toBeLessThan(HEAP_GROWTH_MIB)
  })
})

/** protobuf length-delimited field body: varint length, then UTF-8 text */
function varintAndText (text: string): Uint8Array[] {
  const bytes = new TextEncoder().encode(text)
  const len: number[] = []
  let n = bytes.byteLength
  while (n >= 0x80) { len.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  len.push(n)
  return [Uint8Array.from(len), bytes]
}

const FRAMES = [
  acceptedFrame(0, 'b'.repeat(64)),
  acceptedFrame(3, ''),
  deltaFrame({ type: 'delta', content: 'Hello, krill ✨' }),
  deltaFrame({ type: 'delta', thinking: 'let me think' }),
  deltaFrame({ type: 'delta', toolCalls: [{ function: { name: 'f', arguments: { a: [1, { b: 'c' }] } } }] }),
  doneFrame({ doneReason: 'stop', promptTokens: 12, completionTokens: 34, totalDurationNs: 1e9, loadDurationNs: 1e6, promptEvalDurationNs: 1e7, evalDurationNs: 5e8 }),
  errorFrame('BUSY', 'all slots are busy'),
  errorFrame('ENGINE_FAILED', 'x'.repeat(2000))
].map(encodeFrame)

describe('fuzz: ChatFrame decode (consumer side)', () => {
  it(`survives 20 000 random and mutated frames (seed ${SEED})`, () => {
    const rng = new Rng(SEED + 1)
    const heapBefore = heapUsedMiB()
    const outcomes = { decoded: 0, undecodable: 0, badToolCall: 0 }
    for (let i = 0; i < 20_000; i++) {
      const input = rng.chance(0.2) ? rng.bytes(rng.size(256)) : mutateBytes(rng, rng.pick(FRAMES), FRAMES)
      const started = performance.now()
      let frame
      try {
        frame = decodeFrame(input)
      } catch (err) {
        // the client turns any decode failure into ENGINE_FAILED naming the peer
        if (!(err instanceof Error)) expect.fail(`case ${i} (seed ${SEED}) threw a non-Error for ${hex(input)}`)
        outcomes.undecodable++
      }
      if (frame != null) {
        outcomes.decoded++
        try {
          if (frame.delta != null) deltaFromPb(frame.delta)
          if (frame.done != null) usageFromPb(frame.done)
          if (frame.error != null) expect(errorFromPb(frame.error, 'p')).toBeInstanceOf(KrillError)
        } catch (err) {
          if (!(err instanceof KrillError)) expect.fail(`case ${i} (seed ${SEED}): converting threw ${String(err)} for ${hex(input)}`)
          outcomes.badToolCall++
        }
      }
      const ms = performance.now() - started
      if (ms > PER_INPUT_MS) expect.fail(`case ${i} (seed ${SEED}) took ${ms.toFixed(0)} ms for ${hex(input)}`)
    }
    const growth = heapUsedMiB() - heapBefore
    console.log(`ChatFrame fuzz: ${JSON.stringify(outcomes)}, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
    expect(outcomes.decoded).toBeGreaterThan(1000)
    expect(outcomes.undecodable).toBeGreaterThan(1000)
    expect(growth).toBeLessThan(HEAP_GROWTH_MIB)
  })
})

describe('fuzz: both ends over real streams', () => {
  afterAll(cleanup)

  it(`a consumer facing a hostile provider always ends with a result or a KrillError, in time (seed ${SEED})`, async () => {
    const rng = new Rng(SEED + 2)
    const hostile: Libp2p = await createNode()
    let script: { chunks: Uint8Array[], end: 'close' | 'reset' | 'silent' } = { chunks: [], end: 'close' }
    await hostile.handle(CHAT_PROTOCOL, (stream: Stream) => {
      const { chunks, end } = script
      void (async () => {
        for (const c of chunks) {
          if (stream.status !== 'open') return
          if (!stream.send(c)) await stream.onDrain().catch(() => {})
        }
        if (end === 'close') await stream.close().catch(() => {})
        else if (end === 'reset') stream.abort(new Error('hostile reset'))
      })()
    })
    const client = await createNode()
    await client.dial(hostile.getMultiaddrs()[0])
    const valid = [FRAMES[0], FRAMES[2], FRAMES[3], FRAMES[4], FRAMES[5]].map(f => lengthPrefixed(f).subarray())
    const whole = concat(...valid)
    const heapBefore = heapUsedMiB()
    const outcomes: Record<string, number> = {}
    const SESSIONS = 400
    for (let i = 0; i < SESSIONS; i++) {
      const bytes = rng.chance(0.1) ? rng.bytes(rng.size(300)) : mutateBytes(rng, whole, valid)
      // random chunking: frames split anywhere and glued together
      const chunks: Uint8Array[] = []
      for (let at = 0; at < bytes.length;) {
        const n = 1 + rng.size(64)
        chunks.push(bytes.subarray(at, at + n))
        at += n
      }
      // a few sessions where the provider goes silent: the client's own timeout must end them
      script = { chunks, end: rng.chance(0.03) ? 'silent' : rng.chance(0.2) ? 'reset' : 'close' }
      const { events, error, ms } = await collect(requestChat(client, hostile.peerId, REQUESTS[0], { totalTimeoutMs: 1_000 }))
      if (error != null && !(error instanceof KrillError)) expect.fail(`session ${i} (seed ${SEED}) threw ${String(error)} for ${hex(bytes)}`)
      if (error == null && events.at(-1)?.type !== 'done') expect.fail(`session ${i} (seed ${SEED}) ended without done or error for ${hex(bytes)}`)
      if (ms > 3_000) expect.fail(`session ${i} (seed ${SEED}) took ${ms} ms for ${hex(bytes)}`)
      const key = error?.code ?? 'done'
      outcomes[key] = (outcomes[key] ?? 0) + 1
    }
    const growth = heapUsedMiB() - heapBefore
    console.log(`hostile provider fuzz: ${SESSIONS} sessions ${JSON.stringify(outcomes)}, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
    expect(outcomes.ENGINE_FAILED).toBeGreaterThan(SESSIONS / 4)
    expect(growth).toBeLessThan(HEAP_GROWTH_MIB)
  })

  describe('a provider facing a hostile consumer', () => {
    let provider: Provider

    beforeAll(async () => {
      provider = await startProvider({
        slots: 4,
        maxQueue: 16,
        // a fuzzer asks far more often than the default budget; rate limiting has its own tests
        limits: { requestTimeoutMs: 200, maxRequestBytes: 256 * 1024, requestBurst: 100_000, requestsPerMinute: 100_000 }
      })
    })

    it(`always answers with exactly one terminal frame, in time, and keeps serving (seed ${SEED})`, async () => {
      const rng = new Rng(SEED + 3)
      const client = await connectedClient(provider)
      const corpus = REQUESTS.map(r => lengthPrefixed(encodeRequest({ ...r, model: 'llama3.2:1b', digest: undefined })).subarray())
      const heapBefore = heapUsedMiB()
      const outcomes: Record<string, number> = {}
      const SESSIONS = 300
      // six at a time: within the per-peer stream limit (8), so every session is judged on its bytes
      const BATCH = 6
      for (let first = 0; first < SESSIONS; first += BATCH) {
        const batch = Array.from({ length: BATCH }, (_, k) => ({
          i: first + k,
          bytes: rng.chance(0.1) ? rng.bytes(rng.size(300)) : mutateBytes(rng, rng.pick(corpus), corpus),
          closeWrite: rng.chance(0.5)
        }))
        await Promise.all(batch.map(async ({ i, bytes, closeWrite }) => {
          const { frames, ms } = await rawExchange(client, provider.node.peerId, [bytes], { timeoutMs: 5_000, closeWrite })
          const terminal = frames.filter(f => f.done != null || f.error != null)
          if (terminal.length !== 1 || frames.at(-1) !== terminal[0]) {
            expect.fail(`session ${i} (seed ${SEED}): ${frames.length} frames, ${terminal.length} terminal, for ${hex(bytes)}`)
          }
          if (ms > 4_000) expect.fail(`session ${i} (seed ${SEED}) took ${ms} ms for ${hex(bytes)}`)
          const key = terminal[0].done != null ? 'done' : String(terminal[0].error?.code)
          outcomes[key] = (outcomes[key] ?? 0) + 1
        }))
      }
      const growth = heapUsedMiB() - heapBefore
      console.log(`hostile consumer fuzz: ${SESSIONS} sessions, terminal frames by code ${JSON.stringify(outcomes)}, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
      expect(growth).toBeLessThan(HEAP_GROWTH_MIB)
      // nothing is left running, and an honest request still works
      expect(provider.server.stats.open).toBe(0)
      const { error } = await collect(requestChat(client, provider.node.peerId, REQUESTS[0]))
      expect(error).toBeUndefined()
    })
  })
})
