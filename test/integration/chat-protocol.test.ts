/**
 * /krill/chat/1.0.0 end to end: two real libp2p nodes on loopback, the provider's
 * ChatServer on the real OllamaEngine, Ollama played by the stand-in.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { KrillError } from '../../src/errors.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { FrameReader, writeFrame } from '../../src/protocol/frame-io.js'
import { acceptedFrame, deltaFrame, doneFrame, encodeFrame } from '../../src/protocol/frames.js'
import { lengthPrefixed } from '../../src/protocol/frame-io.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { MODEL, chatRequest, cleanup, collect, connectedClient, createNode, startProvider, text, tokens } from './chat-protocol-helpers.js'
import type { ChatEvent } from '../../src/engine/types.js'

afterEach(cleanup)

describe('chat protocol: answers', () => {
  it('streams every token in order, then Done with the engine usage', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const { events, error } = await collect(requestChat(client, provider.node.peerId, chatRequest()))
    expect(error).toBeUndefined()

    expect(events[0]).toEqual({ type: 'accepted', peer: provider.node.peerId.toString(), digest: provider.digest, queuePosition: 0 })
    expect(provider.digest).toMatch(/^[0-9a-f]{64}$/)
    const deltas = events.filter(e => e.type === 'delta')
    expect(deltas.map(d => d.content)).toEqual(DEFAULT_TOKENS)
    const done = events.at(-1)
    expect(done?.type).toBe('done')
    if (done?.type !== 'done') return
    // the stand-in counts prompt words and streamed tokens, like Ollama's counters
    expect(done.usage.doneReason).toBe('stop')
    expect(done.usage.completionTokens).toBe(DEFAULT_TOKENS.length)
    expect(done.usage.promptTokens).toBe(chatRequest().messages[0].content.split(' ').length)
    expect(done.usage.totalDurationNs).toBeGreaterThan(0)
    expect(done.usage.evalDurationNs).toBeGreaterThan(0)

    const rec = provider.standin.requests[0]
    expect(rec.completed).toBe(true)
    expect(rec.body.model).toBe(MODEL)
    const stats = provider.server.stats
    expect(stats.counters).toMatchObject({ requests: 1, completed: 1, deltas: DEFAULT_TOKENS.length, completionTokens: DEFAULT_TOKENS.length })
    expect(stats.active).toBe(0)
    expect(provider.events.map(e => e.type)).toEqual(['request', 'done'])
  })

  it('passes options through and reports the done reason of a cut answer', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const { events, error } = await collect(requestChat(client, provider.node.peerId, chatRequest({
      options: { num_predict: 3, temperature: 0, stop: ['\n'] }, keepAlive: '1m', think: false
    })))
    expect(error).toBeUndefined()
    const done = events.at(-1)
    expect(done?.type === 'done' && done.usage).toMatchObject({ doneReason: 'length', completionTokens: 3 })
    expect(text(events)).toBe(DEFAULT_TOKENS.slice(0, 3).join(''))
    const body = provider.standin.requests[0].body
    expect(body.options).toEqual({ num_predict: 3, temperature: 0, stop: ['\n'] })
    expect(body.keep_alive).toBe('1m')
    expect(body.think).toBe(false)
  })

  it('carries thinking and tool calls', async () => {
    const toolCalls = [{ function: { name: 'get_weather', arguments: { city: 'Paris', days: 2 } } }]
    const provider = await startProvider({ knobs: { thinking: ['hmm', ' ok'], tokens: ['Let me check.'], toolCalls } })
    const client = await connectedClient(provider)
    const { events, error } = await collect(requestChat(client, provider.node.peerId, chatRequest({
      think: true,
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }]
    })))
    expect(error).toBeUndefined()
    const deltas = events.filter((e): e is Extract<ChatEvent, { type: 'delta' }> => e.type === 'delta')
    expect(deltas.map(d => d.thinking ?? '').join('')).toBe('hmm ok')
    expect(text(events)).toBe('Let me check.')
    expect(deltas.flatMap(d => d.toolCalls ?? [])).toEqual(toolCalls)
  })

  it('refuses an unknown model with UNKNOWN_MODEL', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const { error, events } = await collect(requestChat(client, provider.node.peerId, chatRequest({ model: 'nope:7b' })))
    expect(events).toEqual([])
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('UNKNOWN_MODEL')
    expect(error.peer).toBe(provider.node.peerId.toString())
    expect(error.message).toContain(provider.node.peerId.toString())
    expect(error.message).toContain('nope:7b')
    // a digest the provider does not have is refused the same way
    const wrong = await collect(requestChat(client, provider.node.peerId, chatRequest({ digest: 'f'.repeat(64) })))
    expect(wrong.error?.code).toBe('UNKNOWN_MODEL')
    expect(provider.standin.requests).toHaveLength(0)
  })
})

describe('chat protocol: cancellation and failures', () => {
  it('aborts the Ollama request within 1 s when the consumer stops after 3 tokens (signal)', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(200), tokensPerSecond: 20 } })
    const client = await connectedClient(provider)
    const ctl = new AbortController()
    const seen: ChatEvent[] = []
    let abortedAt = 0
    let error: any
    try {
      for await (const e of requestChat(client, provider.node.peerId, chatRequest(), { signal: ctl.signal })) {
        seen.push(e)
        if (seen.filter(x => x.type === 'delta').length === 3) {
          abortedAt = Date.now()
          ctl.abort()
        }
      }
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('CANCELLED')
    const rec = await provider.standin.waitForAbort(1000)
    expect(rec.abortedAt! - abortedAt).toBeLessThan(1000)
    expect(rec.tokensSent).toBeLessThan(10)
    await expect.poll(() => provider.server.stats.active).toBe(0)
    expect(provider.server.stats.counters.cancelled).toBe(1)
  })

  it('aborts the Ollama request within 1 s when the consumer breaks out of the loop', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(200), tokensPerSecond: 20 } })
    const client = await connectedClient(provider)
    let deltas = 0
    let brokeAt = 0
    for await (const e of requestChat(client, provider.node.peerId, chatRequest())) {
      if (e.type === 'delta' && ++deltas === 3) {
        brokeAt = Date.now()
        break
      }
    }
    const rec = await provider.standin.waitForAbort(1000)
    expect(rec.abortedAt! - brokeAt).toBeLessThan(1000)
    expect(rec.completed).toBe(false)
    await expect.poll(() => provider.server.stats.counters.cancelled).toBe(1)
  })

  it('turns Ollama dying mid-stream into an ENGINE_FAILED Error frame, not a hang', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(50), tokensPerSecond: 100, dieAfterTokens: 3 } })
    const client = await connectedClient(provider)
    const { events, error, ms } = await collect(requestChat(client, provider.node.peerId, chatRequest(), { totalTimeoutMs: 20_000 }))
    expect(events.filter(e => e.type === 'delta')).toHaveLength(3)
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('ENGINE_FAILED')
    // it came as an Error frame from the provider, not as a bare end of stream
    expect(error.message).not.toContain('without a terminal frame')
    expect(error.message).toContain(provider.node.peerId.toString())
    expect(ms).toBeLessThan(5000)
    expect(provider.server.stats.counters.errors.ENGINE_FAILED).toBe(1)

    // and the provider keeps serving
    provider.standin.knobs.dieAfterTokens = undefined
    const next = await collect(requestChat(client, provider.node.peerId, chatRequest()))
    expect(next.error).toBeUndefined()
    expect(next.events.at(-1)?.type).toBe('done')
  })

  it('passes an Ollama mid-stream error on as an Error frame', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(20), errorAfterTokens: 2, midStreamError: 'out of memory' } })
    const client = await connectedClient(provider)
    const { events, error } = await collect(requestChat(client, provider.node.peerId, chatRequest()))
    expect(events.filter(e => e.type === 'delta')).toHaveLength(2)
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('ENGINE_FAILED')
    expect(error.message).toContain('out of memory')
  })

  it('times out on the client when the first token is late, and the provider stops the engine', async () => {
    const provider = await startProvider({ knobs: { firstTokenDelayMs: 5000 } })
    const client = await connectedClient(provider)
    const { events, error, ms } = await collect(requestChat(client, provider.node.peerId, chatRequest(), { firstTokenTimeoutMs: 400 }))
    expect(events.map(e => e.type)).toEqual(['accepted'])
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('TIMEOUT')
    expect(error.peer).toBe(provider.node.peerId.toString())
    expect(error.message).toContain(provider.node.peerId.toString())
    expect(ms).toBeGreaterThanOrEqual(380)
    expect(ms).toBeLessThan(2000)
    await provider.standin.waitForAbort(1000)
  })

  it('times out on the client when the whole answer takes too long', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(100), tokensPerSecond: 20 } })
    const client = await connectedClient(provider)
    const { events, error } = await collect(requestChat(client, provider.node.peerId, chatRequest(), { totalTimeoutMs: 500, firstTokenTimeoutMs: 5000 }))
    expect(events.filter(e => e.type === 'delta').length).toBeGreaterThan(0)
    expect(error?.code).toBe('TIMEOUT')
    await provider.standin.waitForAbort(1000)
  })

  it('fails with ENGINE_FAILED when a peer ends the stream without a terminal frame', async () => {
    // a misbehaving provider: accepts, then closes without Done or Error
    const rogue = await createNode()
    await rogue.handle(CHAT_PROTOCOL, async stream => {
      const reader = new FrameReader(stream, { maxFrameBytes: 1 << 20 })
      await reader.read()
      await writeFrame(stream, encodeFrame(acceptedFrame(0, '')))
      await stream.close()
    })
    const client = await createNode()
    await client.dial(rogue.getMultiaddrs()[0])
    const { events, error } = await collect(requestChat(client, rogue.peerId, chatRequest()))
    expect(events.map(e => e.type)).toEqual(['accepted'])
    expect(error).toBeInstanceOf(KrillError)
    expect(error.code).toBe('ENGINE_FAILED')
    expect(error.message).toBe(`peer ${rogue.peerId.toString()} closed the stream without a terminal frame`)
  })

  it('reads a burst of frames packed in one write as the same events, and refuses a delta before Accepted', async () => {
    const burst = [
      acceptedFrame(0, ''),
      deltaFrame({ type: 'delta', content: 'a' }),
      deltaFrame({ type: 'delta' }),
      deltaFrame({ type: 'delta', content: '🦐 é' }),
      deltaFrame({ type: 'delta', thinking: 'hmm', content: 'b' }),
      deltaFrame({ type: 'delta', content: 'x'.repeat(300) }),
      doneFrame({ doneReason: 'stop', promptTokens: 1, completionTokens: 4, totalDurationNs: 0, loadDurationNs: 0, promptEvalDurationNs: 0, evalDurationNs: 0 })
    ]
    const rogue = await createNode()
    let deltaFirst = false
    await rogue.handle(CHAT_PROTOCOL, async stream => {
      const reader = new FrameReader(stream, { maxFrameBytes: 1 << 20 })
      await reader.read()
      const frames = deltaFirst ? burst.slice(1) : burst
      stream.send(Uint8Array.from(frames.flatMap(f => [...lengthPrefixed(encodeFrame(f)).subarray()])))
      await stream.close()
    })
    const client = await createNode()
    await client.dial(rogue.getMultiaddrs()[0])
    const { events, error } = await collect(requestChat(client, rogue.peerId, chatRequest()))
    expect(error).toBeUndefined()
    expect(events.slice(1, -1)).toEqual([
      { type: 'delta', content: 'a' },
      { type: 'delta' },
      { type: 'delta', content: '🦐 é' },
      { type: 'delta', content: 'b', thinking: 'hmm' },
      { type: 'delta', content: 'x'.repeat(300) }
    ])
    expect(events.map(e => e.type)).toEqual(['accepted', 'delta', 'delta', 'delta', 'delta', 'delta', 'done'])
    deltaFirst = true
    const refused = await collect(requestChat(client, rogue.peerId, chatRequest()))
    expect(refused.error?.message).toBe(`peer ${rogue.peerId.toString()} sent a frame before Accepted`)
  })

  it('refuses a request locally before dialing when it breaks the rules', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const { error } = await collect(requestChat(client, provider.node.peerId, chatRequest({ options: { num_gpu: 1 } as never })))
    expect(error?.code).toBe('BAD_REQUEST')
    expect(error?.message).toContain('num_gpu')
    expect(provider.server.stats.counters.streams).toBe(0)
  })

  it('answers SHUTTING_DOWN to in-flight requests when the server stops, and aborts the engine', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(200), tokensPerSecond: 20 } })
    const client = await connectedClient(provider)
    const gen = requestChat(client, provider.node.peerId, chatRequest())
    const outcome = (async () => await collect(gen))()
    await provider.standin.waitForRequests(1)
    await expect.poll(() => provider.standin.requests[0].tokensSent).toBeGreaterThan(1)
    await provider.server.stop()
    const { error } = await outcome
    expect(error?.code).toBe('SHUTTING_DOWN')
    await provider.standin.waitForAbort(1000)
    // the handler is gone: new streams cannot even be negotiated
    await expect(client.dialProtocol(provider.node.peerId, CHAT_PROTOCOL)).rejects.toThrow()
  })
})
