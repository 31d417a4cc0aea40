/**
 * The local engine is one provider among others with one set of slots: the chats
 * of this node's own API take the chat server's slots and queue just like the
 * chats peers send, and the router ranks the local engine by that real load.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { ChatEvent } from '../../src/engine/types.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startSwarm, type Swarm } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'
const TOKENS = Array.from({ length: 40 }, (_, i) => `t${i} `)

async function drain (chat: AsyncIterable<ChatEvent>): Promise<{ text: string, endedAt: number }> {
  let text = ''
  for await (const e of chat) if (e.type === 'delta') text += e.content ?? ''
  return { text, endedAt: Date.now() }
}

describe('local chats and peers\' chats share one set of slots', () => {
  let swarm: Swarm
  let standin: OllamaStandin

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    // node 0 serves with a single slot; node 1 only consumes
    swarm = await startSwarm(2, i => i === 0 ? { ollama: standin.url, modelRefreshMs: 200, slots: 1, maxQueue: 4 } : { serve: false })
    const consumer = swarm.nodes[1].daemon
    await waitFor(() => consumer.providers.providersFor(MODEL).length === 1, 'the consumer to learn the provider')
    await waitFor(() => swarm.nodes[0].daemon.localModels().length === 1, 'the provider to see its model')
  })
  afterAll(async () => {
    await swarm?.stop()
    await standin?.stop()
  })
  afterEach(() => {
    standin.knobs = { tokens: TOKENS, tokensPerSecond: 0, firstTokenDelayMs: 0 }
    standin.requests = []
  })

  it('a local API chat waits in the queue while a peer\'s chat holds the only slot', async () => {
    const provider = swarm.nodes[0].daemon
    const consumer = swarm.nodes[1].daemon
    standin.knobs = { tokens: TOKENS, tokensPerSecond: 40, firstTokenDelayMs: 0 }
    const message = [{ role: 'user' as const, content: 'count' }]

    // a peer's chat, straight over /krill/chat/1.0.0
    const remote = drain(requestChat(consumer.libp2p, peerIdFromString(provider.peerId.toString()), { model: MODEL, messages: message }))
    await standin.waitForRequests(1)
    await waitFor(() => provider.chatServer?.stats.active === 1, 'the peer\'s chat to hold the slot')

    // our own API's chat on the same engine: it must wait for the slot
    const local = drain(provider.router.chat({ model: MODEL, messages: message }))
    await waitFor(() => provider.chatServer?.stats.queued === 1, 'the local chat to wait in the chat server\'s queue')
    expect(standin.requests).toHaveLength(1)

    const [r, l] = await Promise.all([remote, local])
    expect(r.text).toBe(TOKENS.join(''))
    expect(l.text).toBe(TOKENS.join(''))
    expect(standin.requests).toHaveLength(2)
    // the engine ran them one after the other, never side by side
    expect(standin.requests[1].startedAt).toBeGreaterThanOrEqual(standin.requests[0].startedAt)
    expect(standin.requests[0].completed).toBe(true)
    expect(provider.router.stats.local).toBe(1)
    expect(provider.chatServer?.stats).toMatchObject({ active: 0, queued: 0 })
  })
})

describe('the router ranks the local engine by its real load', () => {
  let swarm: Swarm
  let standins: OllamaStandin[]

  beforeAll(async () => {
    standins = [await OllamaStandin.start({ models: [{ name: MODEL }] }), await OllamaStandin.start({ models: [{ name: MODEL }] })]
    // both serve the model; node 0 has a single slot
    swarm = await startSwarm(2, i => ({ ollama: standins[i].url, modelRefreshMs: 200, slots: i === 0 ? 1 : 4 }))
    for (const [i, n] of swarm.nodes.entries()) {
      await waitFor(() => n.daemon.providers.providersFor(MODEL).length === 1 && n.daemon.localModels().length === 1, `node ${i} to know both copies`)
    }
  })
  afterAll(async () => {
    await swarm?.stop()
    await Promise.allSettled(standins.map(async s => { await s.stop() }))
  })

  it('sends a chat to the peer while a peer\'s chat fills the local engine\'s only slot', async () => {
    const busy = swarm.nodes[0].daemon
    const other = swarm.nodes[1].daemon
    standins[0].knobs = { tokens: TOKENS, tokensPerSecond: 40, firstTokenDelayMs: 0 }
    standins[1].knobs = { tokens: TOKENS, tokensPerSecond: 0, firstTokenDelayMs: 0 }
    const message = [{ role: 'user' as const, content: 'count' }]

    // the other node's chat on node 0's engine fills its slot
    const remote = drain(requestChat(other.libp2p, peerIdFromString(busy.peerId.toString()), { model: MODEL, messages: message }))
    await standins[0].waitForRequests(1)
    await waitFor(() => busy.chatServer?.stats.active === 1, 'the peer\'s chat to hold the slot')

    try {
      // node 0's own chat: its engine is full, the peer has free slots
      const mine = await drain(busy.router.chat({ model: MODEL, messages: message }))
      expect(mine.text).toBe(TOKENS.join(''))
      expect(standins[1].requests).toHaveLength(1)
      expect(standins[0].requests).toHaveLength(1)
      expect(busy.router.stats).toMatchObject({ local: 0, remote: 1 })
    } finally {
      expect((await remote).text).toBe(TOKENS.join(''))
    }
  })
})
