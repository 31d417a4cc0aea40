/**
 * DHT mode `auto`: whether this node answers DHT queries (server) or only asks
 * them (client), decided from what it knows about its own reachability.
 *
 * Why not libp2p's own automatic mode (kad-dht with `clientMode` unset): it turns
 * server only once the node has a public address. In a LAN or loopback swarm every
 * address is private, so no node would ever be a server and nothing could be
 * provided or found. And why not "always server": a DHT server lands in other
 * peers' routing tables and is handed out in their answers; a NATed server there
 * makes everyone's lookups wait on dials that cannot succeed.
 *
 * The rule, re-applied whenever our addresses or connections change:
 *
 * 1. we have a confirmed public address (AutoNAT v2 confirmed it, a UPnP mapping,
 *    or --announce): anyone can dial us → server;
 * 2. otherwise, we hold a relay reservation: peers beyond our network reach us only
 *    through the relay → client;
 * 3. otherwise, judge by our direct (non-relayed) connections:
 *    - all of them are to private or loopback addresses: a LAN or loopback swarm,
 *      where our peers reach our private address the way we reach theirs → server;
 *    - one is to a public address: the swarm reaches beyond our network, and out
 *      there nobody has confirmed that we can be dialed → client;
 * 4. no direct connection at all: nothing to judge by; keep the mode (a node starts
 *    as a client).
 */
import type { ComponentLogger, Connection, Libp2p, Libp2pEvents, Startable, TypedEventTarget } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Multiaddr } from '@multiformats/multiaddr'
import { logger, type Logger } from '../log.js'
import { isPrivateAddr, isRelayedAddr } from '../peers/index.js'
import { publicAddrs, relayedAddrs } from './nat.js'

export type DhtServerMode = 'server' | 'client'

export interface DhtModeInput {
  /** confirmed public addresses of ours */
  publicAddrs: number
  /** addresses of ours through relays (reservations we hold) */
  relayedAddrs: number
  /** open direct connections: is the remote address private (or loopback)? */
  directRemotesPrivate: boolean[]
}

/** Rule 1–4 above: the mode to be in, and why; undefined keeps the current one. */
export function decideDhtMode (input: DhtModeInput): { mode: DhtServerMode, reason: string } | undefined {
  if (input.publicAddrs > 0) return { mode: 'server', reason: 'publicly reachable' }
  if (input.relayedAddrs > 0) return { mode: 'client', reason: 'reachable only through a relay' }
  if (input.directRemotesPrivate.length === 0) return undefined
  if (input.directRemotesPrivate.every(p => p)) return { mode: 'server', reason: 'peers reach us directly on a private network (LAN or loopback)' }
  return { mode: 'client', reason: 'connected beyond our private network, and no public address of ours is confirmed' }
}

function isPrivateRemote (conn: Connection): boolean {
  // not an IP address (e.g. a DNS name): not evidence of a private network
  return isPrivateAddr(conn.remoteAddr)
}

/** What AutoDhtMode takes from libp2p as a service: the DHT registered before it, events, connections, addresses. */
export interface AutoDhtModeComponents {
  dht: Pick<KadDHT, 'getMode' | 'setMode'>
  events: TypedEventTarget<Libp2pEvents>
  connectionManager: { getConnections: () => Connection[] }
  addressManager: { getAddresses: () => Multiaddr[] }
  logger: ComponentLogger
}

/** DHT mode `auto` as a libp2p service (the DHT must be created in client mode and listed before it). */
export function autoDhtMode (): (components: AutoDhtModeComponents) => AutoDhtMode {
  return (components) => new AutoDhtMode(components)
}

/** Switches the DHT between server and client by the rule above; follows libp2p from afterStart to beforeStop. */
export class AutoDhtMode implements Startable {
  readonly [Symbol.toStringTag] = '@krill/auto-dht-mode'
  private running = false
  /** setMode calls run one at a time; each applies the rule as it is then */
  private chain: Promise<void> = Promise.resolve()
  private readonly log: Logger
  private readonly node: Pick<Libp2p, 'getConnections' | 'getMultiaddrs'>
  private readonly update = (): void => { this.apply() }

  constructor (private readonly components: AutoDhtModeComponents) {
    this.log = logger('dht', components)
    this.node = {
      getConnections: () => components.connectionManager.getConnections(),
      getMultiaddrs: () => components.addressManager.getAddresses()
    }
  }

  start (): void {}

  afterStart (): void {
    this.running = true
    const events = this.components.events
    events.addEventListener('self:peer:update', this.update)
    events.addEventListener('connection:open', this.update)
    events.addEventListener('connection:close', this.update)
    this.apply()
  }

  beforeStop (): void {
    this.running = false
    const events = this.components.events
    events.removeEventListener('self:peer:update', this.update)
    events.removeEventListener('connection:open', this.update)
    events.removeEventListener('connection:close', this.update)
  }

  async stop (): Promise<void> {
    this.beforeStop()
    await this.chain
  }

  /** the DHT mode now */
  get mode (): DhtServerMode {
    return this.components.dht.getMode()
  }

  private input (node: Pick<Libp2p, 'getConnections' | 'getMultiaddrs'>): DhtModeInput {
    const direct = node.getConnections().filter(c => c.status === 'open' && !isRelayedAddr(c.remoteAddr))
    return {
      publicAddrs: publicAddrs(node).length,
      relayedAddrs: relayedAddrs(node).length,
      directRemotesPrivate: direct.map(isPrivateRemote)
    }
  }

  private apply (): void {
    if (!this.running) return
    const node = this.node
    const dht = this.components.dht
    this.chain = this.chain.then(async () => {
      if (!this.running) return
      const decision = decideDhtMode(this.input(node))
      if (decision == null || decision.mode === dht.getMode()) return
      await dht.setMode(decision.mode)
      this.log.info(`DHT ${decision.mode} mode: ${decision.reason}`)
    }).catch((err: Error) => {
      this.log.warn(`could not switch the DHT mode: ${err.message}`)
    })
  }
}
