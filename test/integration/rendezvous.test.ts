/**
 * The rendezvous service on its own: nodes meet through a loopback stand-in for the
 * public IPFS DHT (plain `/ipfs/kad/1.0.0` servers), with no bootstrap peers of
 * their own. A stranger that provides the rendezvous key but speaks no krill
 * protocol is dialed, hung up on and not counted as a krill peer.
 */
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@chainsafe/libp2p-noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rendezvousKey } from '../../src/discovery/keys.js'
import { rendezvous, type Rendezvous } from '../../src/discovery/rendezvous.js'
import { startPublicDht, type PublicDht } from '../helpers/public-dht.js'
import { waitFor } from '../helpers/wait.js'

type Node = Libp2p<{ rendezvous: Rendezvous }>

/** a public-DHT client that provides krill's rendezvous key but speaks no krill protocol */
async function startStranger (dhtAddr: any): Promise<Libp2p<{ dht: any }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping(), dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: true, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true }) }
  }) as any
  await node.dial(dhtAddr)
  await waitFor(async () => {
    let ok = false
    for await (const e of node.services.dht.provide(rendezvousKey(), { signal: AbortSignal.timeout(10_000) })) if (e.name === 'PEER_RESPONSE') ok = true
    return ok
  }, 'a stranger provided the key', 20_000, 200)
  return node
}

async function krillLike (peers: string[], init: Record<string, unknown> = {}): Promise<Node> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      rendezvous: rendezvous({ peers, backoffMs: { min: 200, max: 2_000 }, minKrillPeers: 2, ...init }) as any
    }
  }) as unknown as Node
  // what makes it a krill peer to others: a /krill/ protocol in identify
  await node.handle('/krill/chat/1.0.0', (stream) => { stream.abort(new Error('test')) })
  return node
}

describe('public rendezvous (service)', () => {
  let dht: PublicDht
  let stranger: Libp2p<{ dht: any }>
  const nodes: Node[] = []

  beforeAll(async () => {
    dht = await startPublicDht(3)
    // a stranger on the public DHT (a client: nothing else dials it) that provides
    // krill's key but is no krill peer
    stranger = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping(), dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: true, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true }) }
    }) as any
    await stranger.dial(dht.nodes[1].getMultiaddrs()[0])
    await waitFor(async () => {
      let ok = false
      for await (const e of stranger.services.dht.provide(rendezvousKey(), { signal: AbortSignal.timeout(10_000) })) if (e.name === 'PEER_RESPONSE') ok = true
      return ok
    }, 'the stranger provided the key', 20_000, 200)
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled([...nodes, stranger].map(async n => { await n?.stop() }))
    await dht?.stop()
  })

  it('finds the other krill peers and drops the stranger', async () => {
    nodes.push(await krillLike([dht.addrs[0]]), await krillLike([dht.addrs[2]]), await krillLike([dht.addrs[1]]))
    for (const [i, a] of nodes.entries()) {
      for (const b of nodes.slice(i + 1)) {
        await waitFor(() => a.getConnections(b.peerId).length > 0 || b.getConnections(a.peerId).length > 0, `${i} connected to another krill node`, 45_000, 100)
      }
    }
    for (const n of nodes) {
      await waitFor(() => n.services.rendezvous.krillPeerCount() >= 2, 'both other krill nodes counted', 20_000)
      expect(n.services.rendezvous.stats.provides).toBeGreaterThan(0)
    }
    // every node that dialed the stranger hung up on it and counted it as refused
    const refused = nodes.reduce((sum, n) => sum + n.services.rendezvous.stats.refused, 0)
    expect(refused).toBeGreaterThan(0)
    // the stranger is never counted as a krill peer (libp2p's own DHT upkeep may
    // still ping it; that connection is no rendezvous of ours)
    for (const n of nodes) expect(n.services.rendezvous.krillPeerCount()).toBe(2)
  }, 90_000)

  it('bounds what the records of strangers make it do: providers per look-up, dials per minute', async () => {
    const crowd = await Promise.all(Array.from({ length: 10 }, async (_, i) => await startStranger(dht.nodes[i % 3].getMultiaddrs()[0])))
    const lonely = await krillLike([dht.addrs[0]], { maxProvidersPerLookup: 4, dialsPerMinute: 1, minKrillPeers: 50 })
    try {
      const r = lonely.services.rendezvous
      await waitFor(() => r.stats.lookups >= 3, 'three look-ups', 30_000, 100)
      // at most 4 providers taken per look-up, and the token bucket (bursts of 8,
      // then 1 a minute) caps the dials however many look-ups run
      expect(r.stats.found).toBeLessThanOrEqual(4 * r.stats.lookups)
      expect(r.stats.dialed).toBeLessThanOrEqual(9)
      expect(r.stats.dialed).toBeGreaterThan(0)
      expect(r.stats.joined).toBeLessThanOrEqual(r.stats.dialed)
      // strangers are never krill peers: only the three krill nodes of the first test can be
      expect(r.krillPeerCount()).toBeLessThanOrEqual(3)
      expect(r.stats.joined).toBeLessThanOrEqual(3)
    } finally {
      await Promise.allSettled([lonely, ...crowd].map(async n => { await n.stop() }))
    }
  }, 90_000)
})
