/**
 * Per-peer limits and the serve policy at a provider: each breach gets its own Error
 * frame and counter, and other peers are served as if nothing happened.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { requestChat } from '../../src/protocol/chat-client.js'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { waitFor } from '../helpers/wait.js'
import { chatRequest, cleanup, collect, connectedClient, startProvider, text } from './chat-protocol-helpers.js'
import type { Outcome, Provider } from './chat-protocol-helpers.js'

afterEach(cleanup)

/** Starts a chat from another peer that holds the provider's only slot (the stand-in's first-token delay), and waits until it runs. */
async function occupy (provider: Provider): Promise<{ done: Promise<Outcome> }> {
  const occupant = await connectedClient(provider)
  const seen = provider.events.length
  const running = collect(requestChat(occupant, provider.node.peerId, chatRequest()))
  await waitFor(() => provider.events.slice(seen).some(e => e.type === 'request'), 'the occupant\'s request runs')
  // wrapped: an async function returning the promise itself would wait for it
  return { done: running }
}

describe('chat protocol: requests per minute per peer', () => {
  // the per-minute limit is an abuse limit: it applies only while requests must wait
  it('answers RATE_LIMITED once a peer used its burst while the provider is busy, and serves another peer', async () => {
    const provider = await startProvider({ slots: 1, maxQueue: 10, knobs: { firstTokenDelayMs: 1500 }, limits: { requestBurst: 3, requestsPerMinute: 6 } })
    const greedy = await connectedClient(provider)
    const occupied = await occupy(provider)
    const outcomes = await Promise.all(Array.from({ length: 5 }, async () => await collect(requestChat(greedy, provider.node.peerId, chatRequest()))))
    const served = outcomes.filter(o => o.error == null)
    const refused = outcomes.filter(o => o.error != null)
    expect(served).toHaveLength(3)
    expect(served.every(o => text(o.events) === DEFAULT_TOKENS.join(''))).toBe(true)
    expect(refused).toHaveLength(2)
    for (const o of refused) {
      expect(o.error?.code).toBe('RATE_LIMITED')
      expect(o.error?.message).toMatch(/too many chat requests from your peer \(limit 6 a minute, bursts of 3\)/)
    }
    expect(provider.server.stats.counters.refused['requests-per-minute']).toBe(2)
    expect((await occupied.done).error).toBeUndefined()
    // the occupant's request and the greedy peer's three
    expect(provider.standin.requests).toHaveLength(4)

    const other = await connectedClient(provider)
    const { error, events } = await collect(requestChat(other, provider.node.peerId, chatRequest()))
    expect(error).toBeUndefined()
    expect(text(events)).toBe(DEFAULT_TOKENS.join(''))
  })

  it('refills the bucket over time', async () => {
    // 600 a minute: one token every 100 ms
    const provider = await startProvider({ slots: 1, maxQueue: 10, knobs: { firstTokenDelayMs: 1500 }, limits: { requestBurst: 1, requestsPerMinute: 600 } })
    const client = await connectedClient(provider)
    const occupied = await occupy(provider)
    const first = collect(requestChat(client, provider.node.peerId, chatRequest()))
    await new Promise(resolve => setTimeout(resolve, 250))
    const second = collect(requestChat(client, provider.node.peerId, chatRequest()))
    expect((await first).error).toBeUndefined()
    expect((await second).error).toBeUndefined()
    expect((await occupied.done).error).toBeUndefined()
  })

  it('never refuses a peer for asking often while a slot is free', async () => {
    const provider = await startProvider({ slots: 1, limits: { requestBurst: 1, requestsPerMinute: 1 } })
    const client = await connectedClient(provider)
    for (let i = 0; i < 20; i++) {
      const { error, events } = await collect(requestChat(client, provider.node.peerId, chatRequest()))
      expect(error).toBeUndefined()
      expect(text(events)).toBe(DEFAULT_TOKENS.join(''))
    }
    expect(provider.server.stats.counters.refused['requests-per-minute']).toBe(0)
  })
})

describe('chat protocol: serve policy', () => {
  it('answers FORBIDDEN to a refused peer without touching the engine, and serves the others', async () => {
    let denied = ''
    const provider = await startProvider({ server: { authorize: peer => peer === denied ? 'peer is on the serve deny-list' : undefined } })
    const bad = await connectedClient(provider)
    const good = await connectedClient(provider)
    denied = bad.peerId.toString()

    const refused = await collect(requestChat(bad, provider.node.peerId, chatRequest()))
    expect(refused.error?.code).toBe('FORBIDDEN')
    expect(refused.error?.message).toMatch(/this provider does not serve your peer: peer is on the serve deny-list/)
    expect(refused.events).toHaveLength(0)
    expect(provider.standin.requests).toHaveLength(0)
    expect(provider.server.stats.counters.refused.forbidden).toBe(1)
    expect(provider.server.stats.counters.errors.FORBIDDEN).toBe(1)

    const served = await collect(requestChat(good, provider.node.peerId, chatRequest()))
    expect(served.error).toBeUndefined()
    expect(text(served.events)).toBe(DEFAULT_TOKENS.join(''))

    // the policy is asked per request: lifting it works at once
    denied = ''
    expect((await collect(requestChat(bad, provider.node.peerId, chatRequest()))).error).toBeUndefined()
  })

  it('a refused peer spends none of its request budget', async () => {
    let denied = ''
    // busy, so that the per-minute limit applies at all
    const provider = await startProvider({ slots: 1, maxQueue: 10, knobs: { firstTokenDelayMs: 1500 }, limits: { requestBurst: 1, requestsPerMinute: 1 }, server: { authorize: peer => peer === denied ? 'no' : undefined } })
    const client = await connectedClient(provider)
    denied = client.peerId.toString()
    const occupied = await occupy(provider)
    // the occupant holds the slot all along: the client's requests meet a busy provider
    for (let i = 0; i < 3; i++) expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error?.code).toBe('FORBIDDEN')
    denied = ''
    expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error).toBeUndefined()
    expect((await occupied.done).error).toBeUndefined()
  })
})
