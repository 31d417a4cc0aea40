/**
 * `krill daemon --public`: three daemons meet through a loopback stand-in for the
 * public IPFS DHT (plain libp2p nodes speaking /ipfs/kad/1.0.0) and nothing else —
 * no --bootstrap anywhere, no mDNS. Every node passes --rendezvous, so the real
 * Amino bootstrap peers are never dialed.
 *
 * A serves a model with --serve; B (no Ollama) chats with it; C has its own Ollama
 * but no --serve: it answers its own API from it and is nobody's provider.
 */
import { rm } from 'node:fs/promises'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { OllamaStandin, DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { startPublicDht, type PublicDht } from '../helpers/public-dht.js'
import { spawnDaemon } from '../helpers/cli.js'
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const SHARED = 'llama3.2:1b'
const PRIVATE = 'qwen3:0.6b'

const openaiAt = (api: string): OpenAI => new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 })

describe('the public krill network through a public DHT', () => {
  let dht: PublicDht
  let standinA: OllamaStandin
  let standinC: OllamaStandin
  let a: TestDaemon
  let b: TestDaemon
  let c: TestDaemon

  beforeAll(async () => {
    dht = await startPublicDht(3)
    standinA = await OllamaStandin.start({ models: [{ name: SHARED }] })
    standinC = await OllamaStandin.start({ models: [{ name: PRIVATE }] })
    a = await startTestDaemon({ public: true, serve: true, rendezvous: [dht.addrs[0]], ollama: standinA.url, modelRefreshMs: 200 })
    b = await startTestDaemon({ public: true, rendezvous: [dht.addrs[1]] })
    c = await startTestDaemon({ public: true, rendezvous: [dht.addrs[2]], ollama: standinC.url, modelRefreshMs: 200 })
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled([a, b, c].map(async n => { await n?.daemon.stop() }))
    await Promise.allSettled([standinA, standinC].map(async s => { await s?.stop() }))
    await dht?.stop()
  })

  it('says "network":"public" in the ready line and uses no swarm key', () => {
    for (const n of [a, b, c]) {
      expect(n.events[0]).toMatchObject({ event: 'ready', network: 'public' })
      expect(n.config.bootstrap).toEqual([])
      expect(n.config.swarmKey).toBeUndefined()
    }
    expect(a.config.serve).toBe(true)
    expect(b.config.serve).toBe(false)
    expect(c.config.serve).toBe(false)
  })

  it('nodes find each other through the rendezvous key alone', async () => {
    const peers = [a, b, c]
    for (const [i, x] of peers.entries()) {
      for (const y of peers.slice(i + 1)) {
        await waitFor(() => x.daemon.libp2p.getConnections(y.daemon.peerId).length > 0, 'two public nodes connected', 60_000, 100)
      }
    }
  }, 90_000)

  it('a node without Ollama chats with the one that serves', async () => {
    await waitFor(() => b.daemon.providers.providersFor(SHARED).some(e => e.peerId === a.daemon.peerId.toString()), 'B to list A as provider', 60_000, 100)
    const answer = await openaiAt(b.daemon.apiUrl).chat.completions.create({ model: SHARED, messages: [{ role: 'user', content: 'hello' }] })
    expect(answer.choices[0].message.content).toBe(DEFAULT_TOKENS.join(''))
    expect(standinA.requests.length).toBe(1)
    expect(b.events.some(e => e.event === 'request:routed' && e.peerId === a.daemon.peerId.toString())).toBe(true)
  }, 90_000)

  it('a public node without --serve answers its own API from its own Ollama and is nobody\'s provider', async () => {
    // its own API: the local model, answered by its own stand-in
    await waitFor(async () => (await openaiAt(c.daemon.apiUrl).models.list()).data.some(m => m.id === PRIVATE), 'C to list its own model', 20_000, 100)
    const answer = await openaiAt(c.daemon.apiUrl).chat.completions.create({ model: PRIVATE, messages: [{ role: 'user', content: 'hello' }] })
    expect(answer.choices[0].message.content).toBe(DEFAULT_TOKENS.join(''))
    expect(standinC.requests.length).toBe(1)
    const list = await openaiAt(c.daemon.apiUrl).models.list()
    expect(list.data.map(m => m.id)).toContain(PRIVATE)
    // nobody else lists it, C offers no chat protocol, and it announces nothing
    expect(c.daemon.chatServer).toBeUndefined()
    expect(c.daemon.localModels()).toEqual([])
    for (const other of [a, b]) {
      expect(other.daemon.providers.providersFor(PRIVATE)).toEqual([])
      const peer = await other.daemon.libp2p.peerStore.get(c.daemon.peerId)
      expect(peer.protocols).not.toContain(CHAT_PROTOCOL)
    }
    await expect(openaiAt(b.daemon.apiUrl).chat.completions.create({ model: PRIVATE, messages: [{ role: 'user', content: 'hello' }] })).rejects.toMatchObject({ status: 404 })
    expect(standinC.requests.length).toBe(1)
  }, 60_000)

  it('the CLI takes --public and --rendezvous (a real process joins the others)', async () => {
    const dataDir = await tempDir()
    const proc = await spawnDaemon(['--public', '--rendezvous', dht.addrs[1], '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--no-mdns', '--ollama', 'http://127.0.0.1:9'])
    try {
      expect(proc.ready).toMatchObject({ event: 'ready', network: 'public' })
      const id = String(proc.ready.peerId)
      await waitFor(() => a.daemon.libp2p.getConnections().some(conn => conn.remotePeer.toString() === id), 'the CLI node to meet A', 60_000, 100)
    } finally {
      expect(await proc.stop()).toBe(0)
      await rm(dataDir, { recursive: true, force: true })
    }
  }, 90_000)
})
