/**
 * A swarm that grows past its nodes' connection caps stays open, and the catalog
 * follows announcements, not connections (issue 18).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { startSwarm, startTestDaemon, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'
import { rm } from 'node:fs/promises'
import { multiaddr } from '@multiformats/multiaddr'
import type { ChatEvent } from '../../src/engine/types.js'

const MODEL = 'llama3.2:1b'
const CAP = 16
const NODES = 40

async function answer (node: TestDaemon): Promise<string> {
  const events: ChatEvent[] = []
  for await (const e of node.daemon.router.chat({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] })) events.push(e)
  return events.map(e => e.type === 'delta' ? e.content ?? '' : '').join('')
}

describe(`a swarm of ${NODES} nodes whose connection cap is ${CAP}, all joining through one bootstrap node`, () => {
  let standin: OllamaStandin
  let swarm: Swarm

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    // node 1 serves; everyone bootstraps from node 0, which is full long before the last joins
    // every node dials from 127.0.0.1: lift the per-address handshake limits, which
    // on the internet apply to one peer each, not to a whole swarm
    swarm = await startSwarm(NODES, i => ({
      maxConnections: CAP,
      inboundConnectionsPerSecond: 1_000,
      maxPendingConnections: 64,
      ...(i === 1 ? { ollama: standin.url, modelRefreshMs: 200 } : {})
    }))
  }, 600_000)

  afterAll(async () => {
    await swarm?.stop()
    await standin?.stop()
  }, 120_000)

  it('admits every node: the bootstrap node makes room instead of refusing', async () => {
    const bootstrap = swarm.nodes[0]
    for (const [i, node] of swarm.nodes.entries()) {
      await waitFor(() => node.daemon.libp2p.getConnections().length > 0, `node ${i} to have a connection`, 120_000)
    }
    // the bootstrap node let in far more peers than its cap (a wall stops at the cap;
    // a node may also have joined through peers that found it in the DHT)
    const joined = new Set(bootstrap.events.filter(e => e.event === 'peer:joined').map(e => (e as { peerId: string }).peerId))
    expect(joined.size).toBeGreaterThan(CAP + 8)
    // and it kept within its cap (plus the room it keeps for the next newcomer)
    await waitFor(() => bootstrap.daemon.libp2p.getConnections().length <= CAP, 'the bootstrap node to be back at its cap', 60_000)
    expect(bootstrap.daemon.libp2p.services.trimmer.trimmed).toBeGreaterThan(0)
  }, 180_000)

  it('lets every node learn the catalog and chat', async () => {
    const provider = swarm.nodes[1].daemon.peerId.toString()
    const learning = Date.now()
    for (const [i, node] of swarm.nodes.entries()) {
      if (i === 1) continue
      await waitFor(() => node.daemon.providers.providersFor(MODEL).some(e => e.peerId === provider), `node ${i} to learn the provider's model`, 120_000)
    }
    console.log(`every node listed the provider's model ${Date.now() - learning} ms after the swarm was up`)
    const chatting = Date.now()
    const slowest = { node: -1, ms: 0 }
    // 40 daemons share one process on a loaded 2-core machine: a stream may time out
    // while the provider's event loop is busy, and the provider, at its cap with 39
    // consumers dialing it in turn, refuses a connection until its trimmer has made
    // room; a node that can chat gets its answer within three tries (how many needed
    // more than one is printed)
    const retried: number[] = []
    for (const [i, node] of swarm.nodes.entries()) {
      if (i === 1) continue
      let text: string | undefined
      for (let attempt = 0; attempt < 3 && text == null; attempt++) {
        const started = Date.now()
        try {
          text = await answer(node)
          if (Date.now() - started > slowest.ms) Object.assign(slowest, { node: i, ms: Date.now() - started })
        } catch (err) {
          if (attempt === 2) throw err
          retried.push(i)
          // a provider at its cap refuses until its trimmer has made room (within seconds)
          await new Promise(resolve => setTimeout(resolve, 2_000))
        }
      }
      expect(text, `node ${i}'s answer`).toBe(DEFAULT_TOKENS.join(''))
    }
    console.log(`nodes that needed more than one try to chat: ${retried.length === 0 ? 'none' : retried.join(', ')}; all chats took ${Date.now() - chatting} ms, the slowest ${slowest.ms} ms (node ${slowest.node})`)
    expect(retried.length).toBeLessThan(NODES / 4)
  }, 300_000)
})

describe('a provider whose direct connection to a consumer drops while its announcements still arrive through a third node', () => {
  const nodes: TestDaemon[] = []
  let standin: OllamaStandin

  afterEach(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    nodes.length = 0
    await standin?.stop()
  })

  it('stays listed, and the next chat dials it and succeeds', async () => {
    // announcements live 3 s and come every second: a gap of a few seconds would show
    const ttl = 3_000
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    const middle = await startTestDaemon({ serve: false, announceTtlMs: ttl })
    nodes.push(middle)
    const bootstrap = [middle.daemon.addrs()[0]]
    // DHT clients (as nodes behind a NAT are): no DHT walk reconnects them behind the test's back
    const provider = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200, announceTtlMs: ttl, bootstrap, dhtMode: 'client' })
    nodes.push(provider)
    const consumer = await startTestDaemon({ serve: false, announceTtlMs: ttl, bootstrap, dhtMode: 'client' })
    nodes.push(consumer)
    const providerId = provider.daemon.peerId
    const listed = (): boolean => consumer.daemon.providers.providersFor(MODEL).some(e => e.peerId === providerId.toString())

    await consumer.daemon.libp2p.dial(multiaddr(provider.daemon.addrs()[0]))
    await waitFor(listed, 'the consumer to learn the model')
    // the provider's messages reach the consumer through the middle node too
    await waitFor(() => middle.daemon.libp2p.services.pubsub.getSubscribers('krill/models/1').length >= 2, 'the middle node to see both subscribe')

    await consumer.daemon.libp2p.hangUp(providerId)
    const droppedAt = Date.now()
    const seqAtDrop = consumer.daemon.providers.lastSeq(providerId.toString()) ?? 0
    const eventsAtDrop = consumer.events.length
    // two TTLs without the direct connection: listed all along, fed by fresh announcements
    let gaps = 0
    let apartMs = 0
    for (let last = droppedAt; Date.now() - droppedAt < 2 * ttl;) {
      await new Promise(resolve => setTimeout(resolve, 50))
      const now = Date.now()
      if (consumer.daemon.libp2p.getConnections(providerId).length === 0) {
        apartMs += now - last
        if (!listed()) gaps++
      }
      last = now
    }
    // apart for longer than a TTL (both sides wait before redialing a peer that left)
    expect(apartMs).toBeGreaterThanOrEqual(ttl)
    expect(gaps).toBe(0)
    expect(consumer.daemon.providers.lastSeq(providerId.toString())).toBeGreaterThan(seqAtDrop)
    expect(consumer.events.slice(eventsAtDrop)).not.toContainEqual(expect.objectContaining({ event: 'model:vanished', peerId: providerId.toString() }))

    // the next chat goes to the provider, dialing it if nothing reconnected meanwhile
    expect(await answer(consumer)).toBe(DEFAULT_TOKENS.join(''))
    expect(consumer.events).toContainEqual(expect.objectContaining({ event: 'request:routed', peerId: providerId.toString() }))
    expect(consumer.daemon.libp2p.getConnections(providerId).length).toBeGreaterThan(0)
  }, 120_000)
})
