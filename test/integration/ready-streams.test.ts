/**
 * Ready chat streams (src/protocol/ready-streams.ts): the next chat to a provider
 * goes out on a stream negotiated before it was asked for, and every way that
 * stream can go away (the provider's arrival timeout, its shutdown, the connection
 * closing) still ends in a working chat on a fresh stream. The provider's
 * slowloris defence still cuts off streams that never send a request.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { ReadyStreams } from '../../src/protocol/ready-streams.js'
import { chatRequest, cleanup, collect, connectedClient, rawExchange, startProvider, text } from './chat-protocol-helpers.js'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'

afterEach(cleanup)

const pools: ReadyStreams[] = []
afterEach(() => { for (const p of pools.splice(0)) p.stop() })

function pool (opts: ConstructorParameters<typeof ReadyStreams>[0] = {}): ReadyStreams {
  const p = new ReadyStreams(opts)
  pools.push(p)
  return p
}

/** counts the streams `client` negotiates on its connection to `peer` */
function countNewStreams (client: Libp2p, peer: PeerId): { conn: Connection, count: () => number } {
  const conn = client.getConnections(peer)[0]
  const original = conn.newStream.bind(conn)
  let n = 0
  conn.newStream = async (...args) => { n++; return await original(...args) }
  return { conn, count: () => n }
}

async function chatOk (client: Libp2p, peer: PeerId, ready: ReadyStreams | undefined): Promise<void> {
  const { events, error } = await collect(requestChat(client, peer, chatRequest(), { ready }))
  expect(error).toBeUndefined()
  expect(text(events)).toBe(DEFAULT_TOKENS.join(''))
}

describe('ready chat streams', () => {
  it('the second chat to a provider goes out on the stream negotiated after the first', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const ready = pool()
    const streams = countNewStreams(client, peer)

    await chatOk(client, peer, ready)
    // the first chat negotiates its own stream and a ready one behind it
    await expect.poll(() => ready.size).toBe(1)
    expect(streams.count()).toBe(2)

    const before = streams.count()
    await chatOk(client, peer, ready)
    // only the refill behind it was negotiated: the chat itself used the ready stream
    expect(streams.count() - before).toBe(1)
    expect(ready.stats.taken).toBe(1)
    await expect.poll(() => ready.size).toBe(1)
    // to the provider it was an ordinary chat: nothing refused, cancelled or failed
    expect(provider.server.stats.counters.completed).toBe(2)
    expect(provider.server.stats.counters.cancelled).toBe(0)
    expect(provider.server.stats.counters.errors).toEqual({})
  })

  it('a ready stream is let go before the arrival timeout, quietly, and renewed while the provider is in use', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const ready = pool({ maxAgeMs: 150, activeMs: 600 })
    await chatOk(client, peer, ready)
    // renewed while in use (about activeMs / maxAgeMs times), then no more
    await new Promise(resolve => setTimeout(resolve, 1200))
    expect(ready.stats.expired).toBeGreaterThanOrEqual(3)
    expect(ready.size).toBe(0)
    const expired = ready.stats.expired
    await new Promise(resolve => setTimeout(resolve, 400))
    expect(ready.stats.expired).toBe(expired)
    // the provider saw streams reset before any byte: no cancellations, no errors
    await expect.poll(() => provider.server.stats.open).toBe(0)
    expect(provider.server.stats.counters.cancelled).toBe(0)
    expect(provider.server.stats.counters.errors).toEqual({})
    await chatOk(client, peer, ready)
  })

  it('a ready stream the provider timed out is dropped, and the chat negotiates a fresh one', async () => {
    const provider = await startProvider({ limits: { requestTimeoutMs: 200 } })
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const ready = pool({ maxAgeMs: 10_000 })
    await chatOk(client, peer, ready)
    await expect.poll(() => ready.size).toBe(1)
    // the provider's arrival timeout closes the idle stream with a TIMEOUT frame
    await expect.poll(() => provider.server.stats.counters.errors.TIMEOUT ?? 0, { timeout: 2000 }).toBe(1)
    await chatOk(client, peer, ready)
    expect(ready.stats.stale).toBe(1)
    expect(ready.stats.taken).toBe(0)
  })

  it('a ready stream that dies as the request goes out (the timeout race): the request goes again on a fresh stream', async () => {
    const provider = await startProvider({ limits: { requestTimeoutMs: 200 } })
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const real = pool({ maxAgeMs: 10_000 })
    await chatOk(client, peer, real)
    await expect.poll(() => real.size).toBe(1)
    // taken while still good, handed out only after the provider timed it out
    const conn = client.getConnections(peer)[0]
    const stale = real.take(conn)
    expect(stale).toBeDefined()
    await expect.poll(() => stale?.remoteWriteStatus, { timeout: 2000 }).toBe('closed')
    const racing = { takeSoon: async () => stale, refill: () => {} } as unknown as ReadyStreams
    await chatOk(client, peer, racing)
    expect(provider.server.stats.counters.completed).toBe(2)
  })

  it('a provider that stops serving and starts again: the chat after it works', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const ready = pool()
    await chatOk(client, peer, ready)
    await expect.poll(() => ready.size).toBe(1)
    // stopping answers SHUTTING_DOWN on every stream still waiting for a request
    await provider.server.stop()
    await provider.server.start(provider.node)
    await chatOk(client, peer, ready)
    // dropped as stale, or taken as the SHUTTING_DOWN frame was on its way and retried
    expect(ready.stats.stale + ready.stats.taken).toBe(1)
    expect(provider.server.stats.counters.completed).toBe(2)
  })

  it('a closed connection takes its ready stream with it; the next chat dials afresh', async () => {
    const provider = await startProvider()
    const client = await connectedClient(provider)
    const peer = provider.node.peerId
    const ready = pool()
    await chatOk(client, peer, ready)
    await expect.poll(() => ready.size).toBe(1)
    const first = client.getConnections(peer)[0]
    await first.close()
    expect(ready.size).toBe(0)
    await chatOk(client, peer, ready)
    const now = client.getConnections(peer)[0]
    expect(now).not.toBe(first)
    await expect.poll(() => ready.size).toBe(1)
    expect(ready.stats.taken).toBe(0)
  })

  it('streams that never send a request: one beyond the per-peer limit waits (the ready stream), the next is refused, and all time out', async () => {
    const provider = await startProvider({ limits: { maxStreamsPerPeer: 2, requestTimeoutMs: 400 } })
    const attacker = await connectedClient(provider)
    const peer = provider.node.peerId
    const started = Date.now()
    const outcomes = await Promise.all([0, 1, 2, 3].map(async () => await rawExchange(attacker, peer, [])))
    const codes = outcomes.map(o => o.frames.map(f => f.error?.code))
    const refused = outcomes.filter(o => /too many concurrent chat streams/.test(o.frames[0]?.error?.message ?? ''))
    const timedOut = outcomes.filter(o => /no complete ChatRequest within 400 ms/.test(o.frames[0]?.error?.message ?? ''))
    expect(refused, JSON.stringify(codes)).toHaveLength(1)
    expect(refused[0].ms).toBeLessThan(400)
    expect(timedOut).toHaveLength(3)
    for (const o of outcomes) expect(o.frames).toHaveLength(1)
    expect(Date.now() - started).toBeLessThan(3000)
  })
})
