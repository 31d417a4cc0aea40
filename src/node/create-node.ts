import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { noise } from '@libp2p/noise'
import { ping, type Ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import type { Libp2p, PrivateKey, Metrics, ComponentLogger } from '@libp2p/interface'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import { announceScoreParams, ANNOUNCE_SCORE_THRESHOLDS } from '../discovery/gossip-scoring.js'
import { UsageError } from '../errors.js'
import { AGENT_VERSION } from '../version.js'
import { readSwarmKey } from './swarm-key.js'

export const DHT_PROTOCOL = '/krill/kad/1.0.0'

// a type alias (not an interface) so it satisfies libp2p's ServiceMap index signature
export type KrillServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export type KrillLibp2p = Libp2p<KrillServices>

export interface NodeOptions {
  privateKey: PrivateKey
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  dhtMode: 'server' | 'client'
  maxConnections: number
  /** inbound connections in their handshake at once (default 16) */
  maxPendingConnections?: number
  /** new inbound connections one IP address may open per second (default 10) */
  inboundConnectionsPerSecond?: number
  /** path of a libp2p pnet swarm key file */
  swarmKey?: string
  /** LevelDB directory; omit for an in-memory datastore */
  datastorePath?: string
  metrics?: (components: { nodeInfo: unknown, logger: ComponentLogger }) => Metrics
}

export interface KrillNode {
  libp2p: KrillLibp2p
  /** closes libp2p, then the datastore */
  stop: () => Promise<void>
}

/**
 * Builds (but does not start) a krill libp2p node: TCP + WebSockets, noise,
 * yamux, identify, ping, a private Kademlia DHT and gossipsub (StrictSign).
 */
export async function createKrillNode (opts: NodeOptions): Promise<KrillNode> {
  const datastore = opts.datastorePath != null ? new LevelDatastore(opts.datastorePath) : undefined
  if (datastore != null) {
    try {
      await datastore.open()
    } catch (err: any) {
      const locked = /lock/i.test(String(err.cause?.message ?? err.message))
      throw new UsageError(locked
        ? `datastore ${opts.datastorePath} is in use by another krill daemon; stop it or use another --data-dir`
        : `cannot open datastore ${opts.datastorePath}: ${err.message}`, 1)
    }
  }

  const peerDiscovery = []
  if (opts.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: opts.bootstrap, timeout: 100 }))
  if (opts.mdns) peerDiscovery.push(mdns({ serviceTag: 'krill.local' }))

  try {
    const libp2p = await createLibp2p({
      privateKey: opts.privateKey,
      datastore,
      addresses: { listen: opts.listen },
      transports: [tcp(), webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: opts.swarmKey != null ? preSharedKey({ psk: await readSwarmKey(opts.swarmKey) }) : undefined,
      peerDiscovery,
      connectionManager: {
        maxConnections: opts.maxConnections,
        // handshakes are the expensive part of a connection flood; loopback gets no
        // exemption, since a local tunnel (ssh, Tor, a proxy) makes strangers look local
        maxIncomingPendingConnections: opts.maxPendingConnections ?? 16,
        inboundConnectionThreshold: opts.inboundConnectionsPerSecond ?? 10
      },
      metrics: opts.metrics,
      nodeInfo: { name: 'krill', version: AGENT_VERSION.split('/')[1], userAgent: AGENT_VERSION },
      start: false,
      services: {
        identify: identify({ runOnLimitedConnection: true }),
        ping: ping(),
        dht: kadDHT({
          protocol: DHT_PROTOCOL,
          clientMode: opts.dhtMode === 'client',
          // krill swarms often live on one LAN: keep private addresses so peers can
          // reach each other there (the default mapper drops them)
          peerInfoMapper: passthroughMapper,
          // a small swarm may have no other peers yet when it provides; don't fail
          allowQueryWithZeroPeers: true
        }),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          // peers whose announcements our validator rejects lose score until graylisted
          scoreParams: announceScoreParams(),
          scoreThresholds: ANNOUNCE_SCORE_THRESHOLDS,
          runOnLimitedConnection: true
        })
      }
    })
    return {
      libp2p,
      stop: async () => {
        await libp2p.stop()
        await datastore?.close()
      }
    }
  } catch (err) {
    await datastore?.close()
    throw err
  }
}
