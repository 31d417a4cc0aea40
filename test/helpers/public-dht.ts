/**
 * A stand-in for the public IPFS (Amino) DHT on loopback: plain libp2p nodes (not
 * krill daemons) speaking `/ipfs/kad/1.0.0` as DHT servers, with the passthrough
 * address mapper so loopback addresses survive. Tests pass their addresses as
 * `--rendezvous`, so the real Amino bootstrap peers are never dialed.
 */
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { noise } from '@chainsafe/libp2p-noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'

export type DhtNode = Libp2p<{ dht: KadDHT, identify: unknown, ping: unknown }>

export interface PublicDht {
  nodes: DhtNode[]
  /** one address per node, ending in /p2p/<id>: what --rendezvous takes */
  addrs: string[]
  stop: () => Promise<void>
}

export async function dhtNode (): Promise<DhtNode> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // the public DHT's nodes see peers from many addresses; here every peer dials
    // from 127.0.0.1, and libp2p's default of 5 new inbound connections per second
    // and address reset the test's strangers when ten of them arrive at once
    connectionManager: { inboundConnectionThreshold: 1_000 },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true })
    }
  }) as unknown as DhtNode
}

/** Starts `n` DHT servers on loopback, each connected to the first. */
export async function startPublicDht (n = 3): Promise<PublicDht> {
  const nodes: DhtNode[] = []
  const stop = async (): Promise<void> => { await Promise.allSettled(nodes.map(async node => { await node.stop() })) }
  try {
    for (let i = 0; i < n; i++) nodes.push(await dhtNode())
    for (const node of nodes.slice(1)) await node.dial(nodes[0].getMultiaddrs()[0])
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, addrs: nodes.map(node => node.getMultiaddrs()[0].toString()), stop }
}
