/**
 * Per-peer limits and the serve policy at a provider: each breach gets its own Error
 * frame and counter, and other peers are served as if nothing happened.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { requestChat } from '../../src/protocol/chat-client.js'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { chatRequest, cleanup, collect, connectedClient, startProvider, text } from './chat-protocol-helpers.js'

afterEach(cleanup)

describe('chat protocol: requests per minute per peer', () => {
  it('answers RATE_LIMITED once a peer used its burst, and serves another peer', async () => {
    const provider = await startProvider({ limits: { requestBurst: 3, requestsPerMinute: 6 } })
    const greedy = await connectedClient(provider)
    const outcomes = []
    for (let i = 0; i < 5; i++) outcomes.push(await collect(requestChat(greedy, provider.node.peerId, chatRequest())))
    expect(outcomes.slice(0, 3).every(o => o.error == null && text(o.events) === DEFAULT_TOKENS.join(''))).toBe(true)
    for (const o of outcomes.slice(3)) {
      expect(o.error?.code).toBe('RATE_LIMITED')
      expect(o.error?.message).toMatch(/too many chat requests from your peer \(limit 6 a minute, bursts of 3\)/)
    }
    expect(provider.server.stats.counters.refused['requests-per-minute']).toBe(2)
    expect(provider.standin.requests).toHaveLength(3)

    const other = await connectedClient(provider)
    const { error, events } = await collect(requestChat(other, provider.node.peerId, chatRequest()))
    expect(error).toBeUndefined()
    expect(text(events)).toBe(DEFAULT_TOKENS.join(''))
  })

  it('refills the bucket over time', async () => {
    // 600 a minute: one token every 100 ms
    const provider = await startProvider({ limits: { requestBurst: 1, requestsPerMinute: 600 } })
    const client = await connectedClient(provider)
    expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error).toBeUndefined()
    await new Promise(resolve => setTimeout(resolve, 250))
    expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error).toBeUndefined()
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
    let denied = true
    const provider = await startProvider({ limits: { requestBurst: 1, requestsPerMinute: 1 }, server: { authorize: () => denied ? 'no' : undefined } })
    const client = await connectedClient(provider)
    for (let i = 0; i < 3; i++) expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error?.code).toBe('FORBIDDEN')
    denied = false
    expect((await collect(requestChat(client, provider.node.peerId, chatRequest()))).error).toBeUndefined()
  })
})
