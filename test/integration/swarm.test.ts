import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSwarm, startTestDaemon, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const TOPIC = 'krill/models/1'

describe('a swarm of 5 nodes formed from one bootstrap address', () => {
  let swarm: Swarm

  beforeAll(async () => {
    swarm = await startSwarm(5)
  })

  afterAll(async () => {
    await swarm?.stop()
  })

  it('connects every node to every other node', async () => {
    for (const { daemon } of swarm.nodes) {
      await waitFor(() => daemon.libp2p.getPeers().length === 4, `${daemon.peerId} to see 4 peers (has ${daemon.libp2p.getPeers().length})`)
    }
  })

  it('fills every DHT routing table', async () => {
    for (const { daemon } of swarm.nodes) {
      await waitFor(() => daemon.libp2p.services.dht.routingTable.size >= 1, `${daemon.peerId}'s DHT routing table to fill`)
      expect(daemon.libp2p.services.dht.routingTable.size).toBeGreaterThanOrEqual(1)
    }
  })

  it('makes every node a DHT server by default (dhtMode auto: peers reach each other directly on loopback)', async () => {
    for (const { daemon, config } of swarm.nodes) {
      expect(config.dhtMode).toBe('auto')
      await waitFor(() => daemon.dhtMode === 'server', `${daemon.peerId} to become a DHT server (is ${daemon.dhtMode})`)
      // it answers DHT queries: every other node keeps it in its routing table
      for (const other of swarm.nodes.filter(n => n.daemon !== daemon)) {
        await waitFor(async () => await other.daemon.libp2p.services.dht.routingTable.find(daemon.peerId) != null, `${other.daemon.peerId} to have ${daemon.peerId} in its DHT routing table`)
      }
    }
  })

  it("lets every node see every other node's gossipsub subscription", async () => {
    for (const { daemon } of swarm.nodes) {
      if (!daemon.libp2p.services.pubsub.getTopics().includes(TOPIC)) daemon.libp2p.services.pubsub.subscribe(TOPIC)
    }
    for (const { daemon } of swarm.nodes) {
      const others = swarm.nodes.filter(n => n.daemon !== daemon).map(n => n.daemon.peerId.toString()).sort()
      await waitFor(() => {
        const seen = daemon.libp2p.services.pubsub.getSubscribers(TOPIC).map(String).sort()
        return others.every(id => seen.includes(id))
      }, `${daemon.peerId} to see the subscriptions of all 4 others`)
    }
  })

  it('reports peers joining as events', () => {
    const first = swarm.nodes[0]
    const joined = new Set(first.events.filter(e => e.event === 'peer:joined').map(e => (e as { peerId: string }).peerId))
    for (const other of swarm.nodes.slice(1)) expect(joined.has(other.daemon.peerId.toString())).toBe(true)
    expect(first.events[0]).toMatchObject({ event: 'ready', peerId: first.daemon.peerId.toString() })
  })
})

describe('a node restarted with the same data dir', () => {
  let swarm: Swarm
  let restarted: TestDaemon | undefined

  beforeAll(async () => {
    swarm = await startSwarm(3)
  })

  afterAll(async () => {
    await restarted?.daemon.stop()
    if (restarted != null) await rm(restarted.config.dataDir, { recursive: true, force: true })
    await swarm?.stop()
  })

  it('keeps its peer id, remembers its peers and reconnects', async () => {
    const [first, second, third] = swarm.nodes
    await waitFor(() => third.daemon.libp2p.getPeers().length === 2, 'the third node to connect to both others')
    const peerId = third.daemon.peerId.toString()
    const dataDir = third.config.dataDir
    await third.daemon.stop()
    await waitFor(() => first.daemon.libp2p.getPeers().length === 1, 'the first node to notice the third left')

    // no bootstrap this time: it must find the swarm from its own datastore
    restarted = await startTestDaemon({ dataDir })
    expect(restarted.daemon.peerId.toString()).toBe(peerId)
    const known = (await restarted.daemon.libp2p.peerStore.all()).map(p => p.id.toString())
    expect(known).toContain(first.daemon.peerId.toString())
    expect(known).toContain(second.daemon.peerId.toString())

    // the peer store survived, so it redials its old peers by itself
    await waitFor(() => second.daemon.libp2p.getPeers().map(String).includes(peerId), 'the second node to see the restarted node again')
  })
})
