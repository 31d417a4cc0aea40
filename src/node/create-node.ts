import { quic } from '@chainsafe/libp2p-quic'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport, RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, identifyPush, type Identify, type IdentifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { noise } from '@chainsafe/libp2p-noise'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { uPnPNAT } from '@libp2p/upnp-nat'
import { getNetConfig } from '@libp2p/utils'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, PrivateKey, Metrics, ComponentLogger, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { LevelDatastore } from 'datastore-level'
import { PeerRecordCache } from './peer-record-cache.js'
import { halfWindowUpdates } from './yamux-window.js'
import { capProviderAnswers } from './dht-provider-cap.js'
import { logger } from '../log.js'
import { createLibp2p, type ServiceFactoryMap } from 'libp2p'
import type { GossipsubOpts } from '@libp2p/gossipsub'
import { DatastoreError, DatastoreLockedError } from '../errors.js'
import { AGENT_VERSION } from '../version.js'
import { readSwarmKey, swarmKeyBytes } from '../network/swarm-key.js'
import { swarmKeyProtector } from '../network/swarm-protector.js'
import { DEFAULT_RELAY_LIMITS, type DhtMode, type RelayLimits } from './config.js'
import { autoDhtMode, type AutoDhtMode } from './dht-mode.js'
import { RelayPolicy, relayReserver, type RelayReserver } from './nat.js'
import { isLoopbackAddr, isRelayedAddr, relayOf } from '../peers/index.js'
import { tcpPunch, type TcpPunch } from './tcp-punch.js'
import { ping } from './ping.js'
import { connectionTrimmer, hardConnectionLimit, type ConnectionTrimmer } from './connection-trimmer.js'
import { liveness, type Liveness } from './liveness.js'

export const DHT_PROTOCOL = '/krill/kad/1.0.0'

// a type alias (not an interface) so it satisfies libp2p's ServiceMap index signature
export type KrillServices = {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  /** upgrades relayed connections to direct ones where possible */
  dcutr: unknown
  /** AutoNAT v2 client and server; present unless turned off */
  autonat?: unknown
  /** present when the node may relay (relay or autoRelay) */
  relay?: CircuitRelayService
  /** present when UPnP is on and the node listens beyond loopback */
  upnp?: unknown
  /** present unless the node is a dedicated relay */
  relayReserver?: RelayReserver
  /** reports reachability changes (nat.ts) */
  relayPolicy: unknown
  /** present with dhtMode 'auto': follows our reachability (dht-mode.ts) */
  dhtMode?: AutoDhtMode
  /** direct TCP connections between peers behind NATs (tcp-punch.ts); present unless turned off */
  punch?: TcpPunch
  /** closes the least useful connections above the cap (connection-trimmer.ts) */
  trimmer: ConnectionTrimmer
  /** pings connections, patiently (liveness.ts) */
  liveness: Liveness
}

/** a krill node; `S` are the services the composition root adds (chat server, discovery, …) */
export type KrillLibp2p<S extends Record<string, unknown> = Record<string, unknown>> = Libp2p<KrillServices & S>

export interface NodeOptions {
  privateKey: PrivateKey
  listen: string[]
  /** addresses to advertise as reachable (a server's public address, a forwarded port) */
  announce?: string[]
  bootstrap: string[]
  mdns: boolean
  /** 'auto' switches between server and client by reachability (dht-mode.ts) */
  dhtMode: DhtMode
  /** the connection cap: above it the least useful connections are closed (connection-trimmer.ts) */
  maxConnections: number
  /** protocols whose open streams make a connection worth keeping and show it is alive (the chat protocol) */
  busyProtocols?: string[]
  /**
   * a stream of a busy protocol that carries nothing yet (a chat stream waiting for
   * its request): it does not keep its connection from the trimmer
   */
  idleStream?: (stream: Stream) => boolean
  /** inbound connections in their handshake at once (default 16) */
  maxPendingConnections?: number
  /** new inbound connections one IP address may open per second (default 10) */
  inboundConnectionsPerSecond?: number
  /** always relay for others (a dedicated relay / bootstrap node); default false */
  relay?: boolean
  /** relay for others while publicly reachable; default false */
  autoRelay?: boolean
  relayLimits?: RelayLimits
  /** map our listen ports on the home router with UPnP; default false */
  upnp?: boolean
  /** confirm public addresses with AutoNAT v2 and answer peers' requests; default false */
  autonat?: boolean
  /** TCP hole punching with peers reached through a relay; default true */
  holePunch?: boolean
  /** path of a libp2p pnet swarm key file */
  swarmKey?: string
  /** LevelDB directory; omit for an in-memory datastore */
  datastorePath?: string
  metrics?: (components: { nodeInfo: unknown, logger: ComponentLogger }) => Metrics
  /** libp2p's logger, which krill's services log through too (log.ts) */
  logger?: ComponentLogger
  /** gossipsub peer scoring (the announcement topic's, discovery/gossip-scoring.ts) */
  gossipScoring?: Pick<GossipsubOpts, 'scoreParams' | 'scoreThresholds'>
}

export interface KrillNode<S extends Record<string, unknown> = Record<string, unknown>> {
  libp2p: KrillLibp2p<S>
  /** reachability and relaying, for status output */
  nat: RelayPolicy
  /** whether the DHT answers queries right now */
  dhtMode: () => 'server' | 'client'
  /** closes libp2p, then the datastore */
  stop: () => Promise<void>
}

export function isQuicAddr (addr: string): boolean {
  return /\/quic(-v1)?(\/|$)/.test(addr)
}

/** UPnP is pointless (and its SSDP multicast unwelcome) when we only listen on loopback. */
function listensBeyondLoopback (listen: string[]): boolean {
  return listen.some(addr => {
    try {
      const ma = multiaddr(addr)
      const { type } = getNetConfig(ma)
      return (type === 'ip4' || type === 'ip6') && !isLoopbackAddr(ma)
    } catch {
      return false
    }
  })
}

/** Peers whose connections the trimmer keeps: our gossip mesh and the relays we are reachable through. */
function keptPeers (node: Libp2p<KrillServices> | undefined): string[] {
  if (node == null) return []
  const pubsub = node.services.pubsub
  // the GossipSub interface leaves out the implementation's getMeshPeers
  const meshOf = (pubsub as unknown as { getMeshPeers?: (topic: string) => string[] }).getMeshPeers?.bind(pubsub)
  const mesh = meshOf == null ? [] : pubsub.getTopics().flatMap(topic => meshOf(topic))
  const relays = node.getMultiaddrs().filter(isRelayedAddr).map(ma => relayOf(ma).relay).filter((id): id is string => id != null)
  return [...mesh, ...relays]
}

/**
 * Builds (but does not start) a krill libp2p node: TCP + WebSockets (+ circuit
 * relay v2), noise, yamux, identify, ping, a private Kademlia DHT, gossipsub
 * (StrictSign), and NAT traversal: AutoNAT v2, DCUtR, UPnP, relay client and server.
 */
const log = logger('node')

export async function createKrillNode<S extends Record<string, unknown> = Record<string, unknown>> (opts: NodeOptions, services?: ServiceFactoryMap<S>): Promise<KrillNode<S>> {
  // no yamux window update after every frame received (yamux-window.ts)
  halfWindowUpdates()
  // peer records in memory, written behind: no LevelDB round trip when a stream opens (peer-record-cache.ts)
  const datastore = opts.datastorePath != null
    ? new PeerRecordCache(new LevelDatastore(opts.datastorePath), { onError: err => { log.warn(`writing peer records to ${opts.datastorePath} failed: ${err.message}`) } })
    : undefined
  if (datastore != null) {
    try {
      await datastore.open()
    } catch (err: any) {
      const locked = /lock/i.test(String(err.cause?.message ?? err.message))
      throw locked
        ? new DatastoreLockedError(`datastore ${opts.datastorePath} is in use by another krill daemon; stop it or use another --data-dir`, { cause: err })
        : new DatastoreError(`cannot open datastore ${opts.datastorePath}: ${err.message}`, { cause: err })
    }
  }

  const limits = opts.relayLimits ?? DEFAULT_RELAY_LIMITS
  const autonat = opts.autonat ?? false
  const policy = new RelayPolicy({ relay: opts.relay ?? false, autoRelay: opts.autoRelay ?? false, autonat, limits })
  const upnp = (opts.upnp ?? false) && listensBeyondLoopback(opts.listen)

  // QUIC connections skip libp2p's connection protector, so a private swarm (pnet)
  // must not speak QUIC: a peer without the key would get in over UDP
  const useQuic = opts.swarmKey == null
  const listen = useQuic ? opts.listen : opts.listen.filter(a => !isQuicAddr(a))

  const peerDiscovery = []
  if (opts.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: opts.bootstrap, timeout: 100 }))
  if (opts.mdns) peerDiscovery.push(mdns({ serviceTag: 'krill.local' }))

  const busy = opts.busyProtocols ?? []
  let node: Libp2p<KrillServices> | undefined
  try {
    const libp2p = await createLibp2p<KrillServices & S>({
      privateKey: opts.privateKey,
      datastore,
      addresses: { listen, appendAnnounce: opts.announce ?? [] },
      transports: [
        tcp(),
        webSockets(),
        ...(useQuic ? [quic()] : []),
        // dial and accept relayed connections; reservations are made by relayReserver
        circuitRelayTransport({ reservationCompletionTimeout: 10_000 })
      ],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: opts.swarmKey != null ? swarmKeyProtector(swarmKeyBytes(await readSwarmKey(opts.swarmKey))) : undefined,
      // who we relay for, and how much (see nat.ts)
      connectionGater: policy.gater(),
      peerDiscovery,
      connectionManager: {
        // above the cap: a newcomer always gets in, and the trimmer makes room
        maxConnections: hardConnectionLimit(opts.maxConnections),
        // handshakes are the expensive part of a connection flood; loopback gets no
        // exemption, since a local tunnel (ssh, Tor, a proxy) makes strangers look local
        maxIncomingPendingConnections: opts.maxPendingConnections ?? 16,
        inboundConnectionThreshold: opts.inboundConnectionsPerSecond ?? 10
      },
      // replaced by the liveness service: patient with a busy event loop
      connectionMonitor: { enabled: false },
      metrics: opts.metrics,
      logger: opts.logger,
      nodeInfo: { name: 'krill', version: AGENT_VERSION.split('/')[1], userAgent: AGENT_VERSION },
      start: false,
      services: {
        identify: identify({ runOnLimitedConnection: true }),
        // Tell connected peers when our addresses change: a relay reservation or a
        // UPnP mapping usually arrives after the first connections are made, and a
        // peer that only reaches us through a relay retries DCUtR when it learns
        // that we became publicly reachable.
        identifyPush: identifyPush({ runOnLimitedConnection: true }),
        // libp2p's connection monitor pings every connection every 10 s on this
        // protocol and aborts the connection when opening its stream fails; with the
        // default limit of one outbound ping stream, an explicit ping (`krill peers`,
        // `krill ping`) at the same moment made the monitor tear the connection down
        // (and with it every relay reservation and relayed chat on it)
        ping: ping({ maxOutboundStreams: 4, maxInboundStreams: 4 }),
        // AutoNAT v2, not v1: @libp2p/autonat (v1) answers a verification request
        // by reusing its live connection to the asking peer and then closing it,
        // which tears down relay reservations and relayed chats every time a peer
        // re-checks its address. v2 dials back on a fresh connection of its own and
        // closes only that one. The client asks each newly connected peer to dial
        // our public, not yet confirmed addresses (a server's public IP we listen
        // on); one successful dial-back confirms a listen address, and only then
        // does libp2p advertise it (getMultiaddrs) — which is what makes us
        // "publicly reachable" for autoRelay, DCUtR and the DHT mode. Private
        // addresses are never sent for checking (libp2p skips them, and a server
        // refuses them), and TCP observed addresses are ignored, so a node behind
        // a NAT has nothing confirmed and stays reachable through a relay. The
        // server half answers peers' requests (after an anti-amplification data
        // exchange when the address to dial is not the requester's own IP).
        ...(autonat ? { autonat: autoNATv2() } : {}),
        dcutr: dcutr(),
        ...(opts.holePunch !== false ? { punch: tcpPunch() } : {}),
        ...(policy.installed
          ? {
              relay: circuitRelayServer({
                reservations: {
                  maxReservations: limits.maxReservations,
                  // libp2p's defaults (128 KiB, 2 min per relayed connection) end a
                  // token stream mid-answer; the relay limits bound the totals instead
                  defaultDataLimit: BigInt(limits.dataBytes),
                  defaultDurationLimit: limits.durationMs
                },
                maxOutboundStopStreams: limits.maxCircuits
              })
            }
          : {}),
        ...(upnp
          ? {
              upnp: uPnPNAT({
                portMappingDescription: `krill ${AGENT_VERSION}`,
                // A port the router itself says it forwards is trusted at once:
                // AutoNAT v2 only asks peers when they connect, so a mapping granted
                // after our first connections would otherwise stay unused until some
                // new peer came along. AutoNAT v2 re-checks it with peers that
                // connect after its confirmation expired (10 min) and withdraws it
                // once enough of them (8, from different networks) could not dial it.
                autoConfirmAddress: true
              })
            }
          : {}),
        ...(opts.relay !== true ? { relayReserver: relayReserver() } : {}),
        dht: kadDHT({
          protocol: DHT_PROTOCOL,
          // 'auto' starts as a client; AutoDhtMode below promotes it (never
          // undefined: kad-dht's own automatic mode would demote every node
          // without a public address, i.e. every node of a LAN swarm)
          clientMode: opts.dhtMode !== 'server',
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
          ...opts.gossipScoring,
          runOnLimitedConnection: true
        }),
        relayPolicy: policy.service(),
        trimmer: connectionTrimmer({
          maxConnections: opts.maxConnections,
          keepProtocols: [...busy, RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC],
          idleStream: opts.idleStream,
          keepPeers: () => keptPeers(node)
        }),
        liveness: liveness({ busyProtocols: busy }),
        // 'auto': after the DHT, whose mode it sets
        ...(opts.dhtMode === 'auto' ? { dhtMode: autoDhtMode() } : {}),
        // krill's own network services, after the ones they use (libp2p creates them in this order)
        ...services
      } as ServiceFactoryMap<KrillServices & S>
    })
    node = libp2p
    // answers name at most 20 providers of a key (dht-provider-cap.ts)
    if (!capProviderAnswers(libp2p.services.dht)) log.warn('this kad-dht has no providers store to cap: answers carry every provider record')
    return {
      libp2p,
      nat: policy,
      dhtMode: () => libp2p.services.dht.getMode(),
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
