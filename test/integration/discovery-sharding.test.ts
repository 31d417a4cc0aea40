/**
 * The move to sharded announcements in a real swarm of in-process daemons on
 * loopback: `largeSwarmProviders` is 4, so the swarm crosses it as providers join.
 * A consumer's catalog keeps every provider's model through the switch (no model
 * vanishes when its author stops refreshing krill/models/1; a node that moves
 * after the others hears their shards too), a chat through the
 * consumer works after it, and a newcomer lists everything from the sync exchange
 * (shard entries). A provider that stops cleanly vanishes from every table at once
 * (its shard goodbyes), though sharded announcements live 2 minutes here (1 h by
 * default); one that dies without a goodbye stays listed until a chat fails to
 * dial it. A shard used only for routing is left after a while without use.
 */
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { modelShard, shardTopic } from '../../src/discovery/shards.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, type TestDaemon, type TestFlags } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const ANNOUNCE_TTL_MS = 12_000
const LARGE_TTL_MS = 120_000
const FLAGS: TestFlags = { largeSwarmProviders: 4, announceTtlMs: ANNOUNCE_TTL_MS, announceLargeTtlMs: LARGE_TTL_MS, modelRefreshMs: 200 }
const PROVIDERS = 6
const modelOf = (i: number): string => `p${i}:1b`

const idOf = (n: TestDaemon): string => n.daemon.peerId.toString()
const sharded = (n: TestDaemon): boolean => n.daemon.libp2p.services.discovery.announcer?.isSharded === true
/** the providers `n` lists for `model`, from announcements */
const listers = (n: TestDaemon, model: string): string[] => n.daemon.providers.providersFor(model).filter(e => e.source === 'gossip').map(e => e.peerId)

async function chat (n: TestDaemon, model: string): Promise<Response> {
  return await fetch(`${n.daemon.apiUrl}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: false, messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(30_000)
  })
}

describe('the switch to sharded announcements, in a real swarm', () => {
  const standins: OllamaStandin[] = []
  const providers: TestDaemon[] = []
  const all: TestDaemon[] = []
  let consumer: TestDaemon
  /** moves to shards only at 6 providers, after everyone else */
  let late: TestDaemon
  let newcomer: TestDaemon | undefined
  /** what the consumer's catalog lost while it should not have */
  const missed: string[] = []
  const vanished: string[] = []
  const watches: NodeJS.Timeout[] = []

  const startProvider = async (i: number): Promise<TestDaemon> => {
    const standin = await OllamaStandin.start({ models: [{ name: modelOf(i) }] })
    standins.push(standin)
    const node = await startTestDaemon({ ...FLAGS, ollama: standin.url, bootstrap: [consumer.daemon.addrs()[0]] })
    providers.push(node)
    all.push(node)
    return node
  }

  beforeAll(async () => {
    consumer = await startTestDaemon({ ...FLAGS, serve: false })
    late = await startTestDaemon({ ...FLAGS, largeSwarmProviders: PROVIDERS, serve: false, bootstrap: [consumer.daemon.addrs()[0]] })
    all.push(consumer, late)
  })

  afterAll(async () => {
    for (const w of watches) clearInterval(w)
    await Promise.allSettled(all.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(all.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    await Promise.allSettled(standins.map(async s => { await s.stop() }))
  })

  it('lists every provider\'s model before, during and after the switch, also on a node that moves late', async () => {
    for (let i = 0; i < 3; i++) await startProvider(i)
    for (const n of [consumer, late]) {
      for (let i = 0; i < 3; i++) await waitFor(() => listers(n, modelOf(i)).length === 1, `${modelOf(i)} to be listed`)
    }
    // 3 providers, below 4: one topic for everyone
    await new Promise(resolve => setTimeout(resolve, 2_500))
    expect(all.filter(sharded)).toEqual([])

    // from now on a model listed once must stay listed
    for (const n of [consumer, late]) {
      const listed = new Set<string>()
      watches.push(setInterval(() => {
        const now = new Set(n.daemon.providers.catalog().map(c => c.name))
        for (const m of listed) if (!now.has(m) && !missed.includes(m)) missed.push(m)
        for (const m of now) listed.add(m)
      }, 100))
      n.daemon.providers.on('model:vanished', e => { vanished.push(`${e.detail.model} of ${e.detail.peerId}`) })
    }

    // 5 providers: each sees 4 others and moves; the late node waits for a sixth
    for (let i = 3; i < 5; i++) await startProvider(i)
    await waitFor(() => [consumer, ...providers].every(sharded), 'the consumer and 5 providers to move to shards', 20_000)
    expect(sharded(late)).toBe(false)
    // it moves only now, after their first shard messages: it hears their repeat,
    // sent before what they said on krill/models/1 expires
    await startProvider(5)
    await waitFor(() => all.every(sharded), 'every node to move to shards', 20_000)
    // every provider listens to its own model's shard
    for (const [i, p] of providers.entries()) {
      expect(p.daemon.libp2p.services.discovery.announcer?.shardSubscriptions).toContain(modelShard(modelOf(i)))
      expect(p.daemon.libp2p.services.pubsub.getTopics()).toContain(shardTopic(modelShard(modelOf(i))))
    }
    // past the TTL of every krill/models/1 announcement: what is listed now came on shards
    await new Promise(resolve => setTimeout(resolve, ANNOUNCE_TTL_MS + 1_500))
    for (const n of [consumer, late]) {
      for (let i = 0; i < PROVIDERS; i++) expect(listers(n, modelOf(i)), `${modelOf(i)} listed`).toEqual([idOf(providers[i])])
      // ...and will keep hearing them
      const subscribed = n.daemon.libp2p.services.discovery.announcer?.shardSubscriptions
      for (let i = 0; i < PROVIDERS; i++) expect(subscribed, `listening to the shard of ${modelOf(i)}`).toContain(modelShard(modelOf(i)))
    }
    // the consumer moved first: it heard them on their shards (the full TTL; a synced copy lives what was left of it)
    for (let i = 0; i < PROVIDERS; i++) expect(consumer.daemon.providers.providersFor(modelOf(i))[0].expiresAt - consumer.daemon.providers.providersFor(modelOf(i))[0].receivedAt).toBe(LARGE_TTL_MS)
    // the first three were on krill/models/1 when they moved: each repeated its shard message since (its refresh is 40 s away)
    for (let i = 0; i < 3; i++) expect(providers[i].daemon.libp2p.services.discovery.announcer?.published.shard, `shard messages of ${modelOf(i)}`).toBeGreaterThanOrEqual(2)
    for (const w of watches) clearInterval(w)
    expect(missed).toEqual([])
    expect(vanished).toEqual([])
  }, 90_000)

  it('chats through the consumer after the switch', async () => {
    const res = await chat(consumer, modelOf(3))
    expect(res.status).toBe(200)
    const body = await res.json() as { message?: { content?: string }, done?: boolean }
    expect(body.done).toBe(true)
    expect(body.message?.content?.length).toBeGreaterThan(0)
  })

  it('lists every model on a newcomer from the sync exchange', async () => {
    newcomer = await startTestDaemon({ ...FLAGS, serve: false, bootstrap: [providers[0].daemon.addrs()[0]] })
    all.push(newcomer)
    const n = newcomer
    for (let i = 0; i < PROVIDERS; i++) await waitFor(() => listers(n, modelOf(i)).length === 1, `the newcomer to list ${modelOf(i)}`, 15_000)
    // nobody publishes on krill/models/1 any more: these are shard entries, handed on
    expect(n.daemon.libp2p.services.sync.stats.accepted).toBeGreaterThanOrEqual(PROVIDERS)
    for (let i = 0; i < PROVIDERS; i++) expect(n.daemon.providers.providersFor(modelOf(i))[0].expiresAt).toBeGreaterThan(Date.now() + ANNOUNCE_TTL_MS)
    await waitFor(() => sharded(n), 'the newcomer to move to shards')
  })

  it('a provider that stops cleanly vanishes from every table at once, not at its TTL', async () => {
    const leaving = providers[1]
    const others = all.filter(n => n !== leaving)
    const seqBefore = others.map(o => o.daemon.providers.lastSeq(idOf(leaving)) ?? 0)
    await leaving.daemon.stop()
    const stoppedAt = Date.now()
    for (const [i, o] of others.entries()) {
      await waitFor(() => listers(o, modelOf(1)).length === 0, `${modelOf(1)} to vanish at node ${i}`, 10_000)
      // the goodbye arrived (a higher seq), on its shard
      expect(o.daemon.providers.lastSeq(idOf(leaving)) ?? 0).toBeGreaterThan(seqBefore[i])
    }
    expect(Date.now() - stoppedAt).toBeLessThan(LARGE_TTL_MS / 4)
  })

  it('a provider that stops just after its own switch also takes back what it said on krill/models/1', async () => {
    const brief = await startProvider(6)
    const others = all.filter(n => n !== brief && n.daemon.libp2p.status === 'started')
    // it said it on krill/models/1 first (a newcomer), then moved (it syncs the swarm's size)
    for (const o of others) await waitFor(() => listers(o, modelOf(6)).length === 1, `${modelOf(6)} to be listed`)
    await waitFor(() => sharded(brief), 'the new provider to move to shards')
    await brief.daemon.stop()
    // long before its krill/models/1 announcement would expire
    for (const [i, o] of others.entries()) await waitFor(() => listers(o, modelOf(6)).length === 0, `${modelOf(6)} to vanish at node ${i}`, ANNOUNCE_TTL_MS / 3)
  })

  it('a provider joining far above the switch goes straight to shards: nothing on krill/models/1, found by name', async () => {
    // the swarm's 5 live providers are 4 × its switch point of 1: the first sync answer says so
    const standin = await OllamaStandin.start({ models: [{ name: modelOf(7) }] })
    standins.push(standin)
    const joiner = await startTestDaemon({ ...FLAGS, largeSwarmProviders: 1, ollama: standin.url, bootstrap: [providers[0].daemon.addrs()[0]] })
    all.push(joiner)
    const announcer = joiner.daemon.libp2p.services.discovery.announcer
    await waitFor(() => (announcer?.published.shard ?? 0) > 0, 'the joiner to announce on its shard', 15_000)
    expect(announcer?.isSharded).toBe(true)
    expect(announcer?.published.whole).toBe(0)
    // nobody was told on krill/models/1, yet a chat by name finds it (the DHT, then its shard)
    const res = await waitFor(async () => { const r = await chat(consumer, modelOf(7)); return r.status === 200 ? r : undefined }, `a chat to ${modelOf(7)}`, 20_000, 500)
    expect(res.headers.get('x-krill-provider')).toBe(idOf(joiner))
    await joiner.daemon.stop()
  })

  it('a provider that dies without a goodbye is forgotten once a chat cannot dial it', async () => {
    const dead = providers[2]
    const model = modelOf(2)
    // no goodbye: its announcer stops quietly, then the node goes
    await dead.daemon.libp2p.services.discovery.announcer?.stop()
    await dead.daemon.stop()
    await waitFor(() => consumer.daemon.libp2p.getConnections(dead.daemon.peerId).length === 0, 'the consumer to lose its connection')
    // its shard announcement lives on: a closed connection does not end it
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(listers(consumer, model)).toEqual([idOf(dead)])
    const res = await chat(consumer, model)
    expect(res.ok).toBe(false)
    // the dial failed: the consumer lists it no more; a node that never tried still does
    expect(consumer.daemon.providers.providersFor(model)).toEqual([])
    expect(consumer.daemon.providers.catalog().map(c => c.name)).not.toContain(model)
    expect(listers(providers[0], model)).toEqual([idOf(dead)])
  })

  it('leaves a shard it only routed to after a while without use, and joins it again on the next chat', async () => {
    // sharded from the start (not near a switch: nothing is carried over), short idle time
    const user = await startTestDaemon({ ...FLAGS, largeSwarmProviders: 0, serve: false, bootstrap: [providers[0].daemon.addrs()[0]] }, { discovery: { announcer: { shardIdleMs: 2_000 } } })
    all.push(user)
    const model = modelOf(3)
    const topic = shardTopic(modelShard(model))
    const pubsub = user.daemon.libp2p.services.pubsub
    const listening = (): boolean => pubsub.getTopics().includes(topic) && pubsub.topicValidators.has(topic)
    await waitFor(() => listers(user, model).length === 1, `the new node to list ${model}`, 15_000)
    expect(listening()).toBe(false)
    expect((await chat(user, model)).status).toBe(200)
    expect(listening()).toBe(true)
    // unused for 2 s: topic and validator go
    await waitFor(() => !listening(), 'the unused shard to be left', 10_000)
    expect(user.daemon.libp2p.services.discovery.announcer?.shardSubscriptions).not.toContain(modelShard(model))
    // what we listed stays listed (until its TTL); the next chat joins the shard again
    expect(listers(user, model)).toEqual([idOf(providers[3])])
    expect((await chat(user, model)).status).toBe(200)
    expect(listening()).toBe(true)
  })
})
