/**
 * Load, backpressure and stalls: many consumers against few slots, a consumer that
 * stops reading, an engine that goes quiet.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { requestChat } from '../../src/protocol/chat-client.js'
import { DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { chatRequest, cleanup, collect, connectedClient, startProvider, text, tokens } from './chat-protocol-helpers.js'
import type { ChatEvent } from '../../src/engine/types.js'
import type { Outcome } from './chat-protocol-helpers.js'

afterEach(cleanup)

describe('chat protocol under load', () => {
  it('50 concurrent streams against 4 slots and a queue of 6: each completes or gets a clean BUSY', async () => {
    const provider = await startProvider({ slots: 4, maxQueue: 6, knobs: { tokensPerSecond: 50 } })
    // 10 consumer peers × 5 streams: within the per-peer limit, so only capacity decides
    const clients = await Promise.all(Array.from({ length: 10 }, async () => await connectedClient(provider)))

    let maxActive = 0
    let maxQueued = 0
    const sampler = setInterval(() => {
      maxActive = Math.max(maxActive, provider.server.stats.active)
      maxQueued = Math.max(maxQueued, provider.server.stats.queued)
    }, 2)
    let outcomes: Outcome[]
    try {
      outcomes = await Promise.all(clients.flatMap(client => Array.from({ length: 5 }, async () =>
        await collect(requestChat(client, provider.node.peerId, chatRequest(), { totalTimeoutMs: 30_000 })))))
    } finally {
      clearInterval(sampler)
    }

    const completed = outcomes.filter(o => o.error == null)
    const busy = outcomes.filter(o => o.error?.code === 'BUSY')
    const other = outcomes.filter(o => o.error != null && o.error.code !== 'BUSY')
    expect(other.map(o => `${o.error.code}: ${o.error.message}`)).toEqual([])
    expect(completed.length + busy.length).toBe(50)
    expect(completed.length).toBeGreaterThanOrEqual(4)
    expect(busy.length).toBeGreaterThan(0)
    for (const o of completed) {
      expect(text(o.events)).toBe(DEFAULT_TOKENS.join(''))
      expect(o.events.at(-1)?.type).toBe('done')
    }
    // BUSY comes at once, before any Accepted
    for (const o of busy) expect(o.events).toEqual([])
    const positions = completed.map(o => (o.events[0] as Extract<ChatEvent, { type: 'accepted' }>).queuePosition)
    expect(Math.max(...positions)).toBeGreaterThan(0)
    expect(Math.max(...positions)).toBeLessThanOrEqual(6)

    expect(maxActive).toBeLessThanOrEqual(4)
    expect(maxQueued).toBeLessThanOrEqual(6)
    const stats = provider.server.stats
    expect(stats.counters.errors.BUSY).toBe(busy.length)
    expect(stats.counters.completed).toBe(completed.length)
    expect(provider.standin.requests).toHaveLength(completed.length)
    expect(stats.active).toBe(0)
    expect(stats.queued).toBe(0)
  })
})

describe('chat protocol backpressure and stalls', () => {
  const BIG = 8 * 1024
  // 48 MiB of answer: more than every buffer on the way together (the yamux window
  // alone may grow to 16 MiB)
  const COUNT = 6000

  it('a consumer that stops reading holds back the engine instead of piling up tokens', async () => {
    const provider = await startProvider({ knobs: { tokens: tokens(COUNT, BIG) } })
    const client = await connectedClient(provider)
    const gen = requestChat(client, provider.node.peerId, chatRequest())
    expect((await gen.next()).value?.type).toBe('accepted')
    expect((await gen.next()).value?.type).toBe('delta')

    // stop pulling: once the buffers on the way are full, Ollama must be held back
    const rec = provider.standin.requests[0]
    let settled = -1
    const deadline = Date.now() + 15_000
    while (rec.tokensSent !== settled && Date.now() < deadline) {
      settled = rec.tokensSent
      await new Promise(resolve => setTimeout(resolve, 400))
    }
    expect(rec.tokensSent).toBe(settled)
    expect(settled).toBeLessThan(COUNT)
    expect(rec.completed).toBe(false)

    // pull again: the rest arrives complete and in order
    let chars = BIG
    let last: ChatEvent | undefined
    for await (const e of gen) {
      if (e.type === 'delta') chars += e.content?.length ?? 0
      last = e
    }
    expect(last?.type).toBe('done')
    expect(chars).toBe(COUNT * BIG)
    expect(rec.completed).toBe(true)
  })

  it('a consumer that stops reading for longer than the stall timeout is cut off and the engine stopped', async () => {
    const provider = await startProvider({ limits: { stallTimeoutMs: 500 }, knobs: { tokens: tokens(COUNT, BIG) } })
    const client = await connectedClient(provider)
    const gen = requestChat(client, provider.node.peerId, chatRequest())
    await gen.next()
    await gen.next()
    const rec = await provider.standin.waitForAbort(5000)
    expect(rec.completed).toBe(false)
    await expect.poll(() => provider.server.stats.counters.errors.TIMEOUT).toBe(1)
    expect(provider.server.stats.active).toBe(0)
    await gen.return()
  })

  it('an engine that goes quiet for longer than the stall timeout ends in a TIMEOUT Error frame', async () => {
    const provider = await startProvider({ limits: { stallTimeoutMs: 300 }, knobs: { firstTokenDelayMs: 3000 } })
    const client = await connectedClient(provider)
    const { events, error, ms } = await collect(requestChat(client, provider.node.peerId, chatRequest()))
    expect(events.map(e => e.type)).toEqual(['accepted'])
    expect(error?.code).toBe('TIMEOUT')
    expect(error?.message).toMatch(/no progress for 300 ms/)
    expect(ms).toBeLessThan(2000)
    await provider.standin.waitForAbort(1000)
  })
})
