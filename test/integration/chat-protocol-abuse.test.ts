/**
 * Bad input at a provider: every case gets the right Error frame, and the provider
 * goes on serving another client right after.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../src/errors.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { encodeRequest } from '../../src/protocol/frames.js'
import * as pb from '../../src/protocol/generated/chat.js'
import { encode as encodeVarint } from 'uint8-varint'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { chatRequest, cleanup, collect, connectedClient, lengthPrefixed, rawExchange, startProvider, text, tokens } from './chat-protocol-helpers.js'
import type { Provider } from './chat-protocol-helpers.js'
import type { ChatFrame } from '../../src/protocol/generated/chat.js'
import type { Libp2p } from '@libp2p/interface'

afterEach(cleanup)

const REQUEST_TIMEOUT_MS = 400

/** exactly one frame, an Error with `code` */
function expectError (frames: ChatFrame[], code: keyof typeof ErrorCode, pattern: RegExp): void {
  expect(frames).toHaveLength(1)
  expect(frames[0].error).toBeDefined()
  expect(frames[0].error?.code).toBe(ErrorCode[code])
  expect(frames[0].error?.message).toMatch(pattern)
}

/** a fresh client gets a complete answer at once */
async function stillServes (provider: Provider): Promise<void> {
  const other = await connectedClient(provider)
  const { events, error, ms } = await collect(requestChat(other, provider.node.peerId, chatRequest()))
  expect(error).toBeUndefined()
  expect(text(events)).toBe(DEFAULT_TOKENS.join(''))
  expect(ms).toBeLessThan(2000)
}

describe('chat protocol: bad input', () => {
  let provider: Provider
  let attacker: Libp2p

  async function setUp (): Promise<void> {
    provider = await startProvider({ limits: { requestTimeoutMs: REQUEST_TIMEOUT_MS, maxRequestBytes: 64 * 1024 } })
    attacker = await connectedClient(provider)
  }

  it('garbage bytes get BAD_REQUEST', async () => {
    await setUp()
    const junk = new Uint8Array(20).fill(0xff)
    const { frames } = await rawExchange(attacker, provider.node.peerId, [lengthPrefixed(junk).subarray()])
    expectError(frames, 'BAD_REQUEST', /not a valid ChatRequest/)
    expect(provider.server.stats.counters.errors.BAD_REQUEST).toBe(1)
    await stillServes(provider)
  })

  it('a length prefix that is no varint gets BAD_REQUEST', async () => {
    await setUp()
    const { frames } = await rawExchange(attacker, provider.node.peerId, [new Uint8Array(16).fill(0x80)])
    expectError(frames, 'BAD_REQUEST', /varint/)
    await stillServes(provider)
  })

  it('an oversized frame gets TOO_LARGE from its length prefix, without waiting for the body', async () => {
    await setUp()
    const { frames, ms } = await rawExchange(attacker, provider.node.peerId, [encodeVarint(5 * 1024 * 1024), new Uint8Array(1024)])
    expectError(frames, 'TOO_LARGE', /5242880 bytes exceeds the limit of 65536/)
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS)
    await stillServes(provider)
  })

  it('an unknown model gets UNKNOWN_MODEL', async () => {
    await setUp()
    const { frames } = await rawExchange(attacker, provider.node.peerId, [lengthPrefixed(encodeRequest(chatRequest({ model: 'ghost:70b' }))).subarray()])
    expectError(frames, 'UNKNOWN_MODEL', /ghost:70b/)
    await stillServes(provider)
  })

  it('an option key the protocol does not define gets BAD_REQUEST naming it', async () => {
    await setUp()
    // options { temperature: 0.5, <field 42>: 1 } — e.g. a peer trying to pass num_gpu
    const options = Uint8Array.from([...pb.Options.encode({ temperature: 0.5, stop: [] }), ...encodeVarint(42 * 8), 1])
    const request = Uint8Array.from([...encodeRequest(chatRequest()), ...encodeVarint(4 * 8 + 2), ...encodeVarint(options.byteLength), ...options])
    const { frames } = await rawExchange(attacker, provider.node.peerId, [lengthPrefixed(request).subarray()])
    expectError(frames, 'BAD_REQUEST', /unknown option field #42/)
    expect(provider.standin.requests).toHaveLength(0)
    await stillServes(provider)
  })

  it('invalid fields get BAD_REQUEST saying what is wrong', async () => {
    await setUp()
    const msg = pb.ChatRequest.decode(encodeRequest(chatRequest()))
    const cases: Array<[pb.ChatRequest, RegExp]> = [
      [{ ...msg, model: 'rm -rf /' }, /model name/],
      [{ ...msg, messages: [{ ...msg.messages[0], role: 'god' }] }, /role must be one of/],
      [{ ...msg, tools: ['{not json'] }, /tools\[0\] is not valid JSON/],
      [{ ...msg, options: { stop: [], topP: 7 } }, /top_p must be between 0 and 1/],
      [{ ...msg, messages: [] }, /messages must not be empty/]
    ]
    for (const [bad, pattern] of cases) {
      const { frames } = await rawExchange(attacker, provider.node.peerId, [lengthPrefixed(pb.ChatRequest.encode(bad)).subarray()])
      expectError(frames, 'BAD_REQUEST', pattern)
    }
    await stillServes(provider)
  })

  it('a client that connects and sends nothing gets TIMEOUT', async () => {
    await setUp()
    const { frames, ms } = await rawExchange(attacker, provider.node.peerId, [])
    expectError(frames, 'TIMEOUT', new RegExp(`no complete ChatRequest within ${REQUEST_TIMEOUT_MS} ms`))
    expect(ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50)
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + 2000)
    await stillServes(provider)
  })

  it('a client that sends half a frame gets TIMEOUT', async () => {
    await setUp()
    const whole = lengthPrefixed(encodeRequest(chatRequest())).subarray()
    const { frames } = await rawExchange(attacker, provider.node.peerId, [whole.subarray(0, 10)])
    expectError(frames, 'TIMEOUT', /got 10 bytes of it/)
    await stillServes(provider)
  })

  it('a client that ends its side inside a frame, or before one, gets BAD_REQUEST', async () => {
    await setUp()
    const whole = lengthPrefixed(encodeRequest(chatRequest())).subarray()
    const cut = await rawExchange(attacker, provider.node.peerId, [whole.subarray(0, 10)], { closeWrite: true })
    expectError(cut.frames, 'BAD_REQUEST', /ended inside the ChatRequest/)
    const empty = await rawExchange(attacker, provider.node.peerId, [], { closeWrite: true })
    expectError(empty.frames, 'BAD_REQUEST', /before a ChatRequest arrived/)
    await stillServes(provider)
  })

  it('a valid request still works on the same connection after all that', async () => {
    await setUp()
    await rawExchange(attacker, provider.node.peerId, [lengthPrefixed(new Uint8Array(8).fill(0xff)).subarray()])
    const { events, error } = await collect(requestChat(attacker, provider.node.peerId, chatRequest()))
    expect(error).toBeUndefined()
    expect(events.at(-1)?.type).toBe('done')
  })
})

describe('chat protocol: per-peer limit', () => {
  it('answers RATE_LIMITED to streams beyond the per-peer limit, and serves the rest', async () => {
    const provider = await startProvider({ slots: 1, maxQueue: 10, limits: { maxStreamsPerPeer: 2 }, knobs: { tokens: tokens(10), tokensPerSecond: 50 } })
    const greedy = await connectedClient(provider)
    const outcomes = await Promise.all([0, 1, 2].map(async () => await collect(requestChat(greedy, provider.node.peerId, chatRequest()))))
    const limited = outcomes.filter(o => o.error?.code === 'RATE_LIMITED')
    const done = outcomes.filter(o => o.error == null && o.events.at(-1)?.type === 'done')
    expect(limited).toHaveLength(1)
    expect(limited[0].error.message).toMatch(/too many concurrent chat streams/)
    expect(done).toHaveLength(2)
    // another peer is not affected by the greedy one
    const other = await connectedClient(provider)
    const { error } = await collect(requestChat(other, provider.node.peerId, chatRequest()))
    expect(error).toBeUndefined()
  })
})
