/**
 * NAT traversal policy of a krill node: whether it counts as publicly reachable,
 * whether it relays for others right now, and the caps that keep relaying fair.
 *
 * How the pieces fit (see create-node.ts for the wiring):
 * - a node that is not publicly reachable reserves a slot on one relay found in
 *   the swarm (RelayReserver below) and advertises the relayed address, so NATed
 *   providers stay reachable;
 * - a node relays for others when told to (`relay`), or — with `autoRelay` — as
 *   long as it has a confirmed public address: a listen address a peer dialed
 *   back for AutoNAT v2, a UPnP mapping its router granted, or an `--announce`d
 *   one. All three reach us the same way: libp2p lists an address in
 *   getMultiaddrs() only once it is confirmed (and drops it when AutoNAT v2
 *   withdraws it), so AutoNAT's verdict switches relaying on and off with no
 *   extra bookkeeping here. The relay service is always installed in that case
 *   and this gater switches it on and off, because libp2p cannot add a service
 *   at run time;
 * - DCUtR then replaces relayed connections by direct ones where it can: in
 *   js-libp2p over TCP that is when the peer that dialed through the relay is
 *   itself publicly reachable (the other side dials it back, "unilateral
 *   upgrade"). A true TCP hole punch between two NATed peers cannot happen:
 *   js-libp2p dials from random ports (not the listen port) and ignores TCP
 *   observed addresses (js-libp2p#2620), so neither side knows a port to punch.
 */
import { RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2'
import type { Connection, ConnectionGater, IdentifyResult, Libp2p, Libp2pEvents, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { logger } from '../log.js'
import { isPublicAddr, isRelayedAddr, relayOf } from '../peers/index.js'
import type { RelayLimits } from './config.js'

const log = logger('nat')

/**
 * Our public addresses. libp2p only lists addresses that are confirmed (here: by
 * an AutoNAT v2 dial-back, a UPnP mapping or --announce): an unconfirmed guess,
 * such as the public IP of a server we listen on before any peer dialed it, never
 * makes us "public".
 */
export function publicAddrs (node: Pick<Libp2p, 'getMultiaddrs'>): Multiaddr[] {
  return node.getMultiaddrs().filter(isPublicAddr)
}

/** Our addresses through relays (one per relay we hold a reservation on). */
export function relayedAddrs (node: Pick<Libp2p, 'getMultiaddrs'>): Multiaddr[] {
  return node.getMultiaddrs().filter(isRelayedAddr)
}

export interface NatStatus {
  /** has a confirmed public address: peers can dial us directly */
  reachable: boolean
  publicAddrs: string[]
  /** relays that forward to us (their peer ids) */
  relays: string[]
  /** accepting relay reservations right now */
  relaying: boolean
  /** AutoNAT v2 confirms our public addresses (and answers peers' requests) */
  autonat: boolean
}

export interface RelayPolicyOptions {
  /** relay unconditionally */
  relay: boolean
  /** relay while publicly reachable */
  autoRelay: boolean
  /** AutoNAT v2 is on (for status output only: its confirmations arrive as addresses) */
  autonat: boolean
  limits: RelayLimits
}

/**
 * Decides, per request, whether this node relays: the connection gater consults
 * it for every reservation and every relayed connection.
 */
/** What the relay policy reads once libp2p runs (see RelayPolicy.service). */
export interface RelayPolicyComponents {
  events: TypedEventTarget<Libp2pEvents>
  connectionManager: { getConnections: (peer?: PeerId) => Connection[] }
  addressManager: { getAddresses: () => Multiaddr[] }
}

export class RelayPolicy {
  private node?: Pick<Libp2p, 'getConnections' | 'getMultiaddrs'>
  private last?: string

  constructor (private readonly opts: RelayPolicyOptions) {}

  /** true when a relay service must be installed at all */
  get installed (): boolean {
    return this.opts.relay || this.opts.autoRelay
  }

  /**
   * Binds the policy to libp2p as a service (the gater exists before the node
   * does): reachability changes whenever libp2p confirms or drops an address, and
   * from afterStart to beforeStop it says so once per change, so an operator can
   * see why the node does (not) relay.
   */
  service (): (components: RelayPolicyComponents) => Startable {
    return (components) => {
      this.node = {
        getConnections: (peer?: PeerId) => components.connectionManager.getConnections(peer),
        getMultiaddrs: () => components.addressManager.getAddresses()
      }
      const onUpdate = (): void => { this.report() }
      return {
        [Symbol.toStringTag]: '@krill/relay-policy',
        start: () => {},
        afterStart: () => { components.events.addEventListener('self:peer:update', onUpdate) },
        beforeStop: () => { components.events.removeEventListener('self:peer:update', onUpdate) },
        stop: () => { components.events.removeEventListener('self:peer:update', onUpdate) }
      } as Startable
    }
  }

  /** accepting reservations and relaying right now */
  serving (): boolean {
    if (this.opts.relay) return true
    return this.opts.autoRelay && this.node != null && publicAddrs(this.node).length > 0
  }

  status (): NatStatus {
    const node = this.node
    const pub = node != null ? publicAddrs(node) : []
    const relays = node != null ? relayedAddrs(node).map(a => relayOf(a).relay).filter((id): id is string => id != null) : []
    return {
      reachable: pub.length > 0,
      publicAddrs: pub.map(String),
      relays: [...new Set(relays)],
      relaying: this.serving(),
      autonat: this.opts.autonat
    }
  }

  /** The relay half of a ConnectionGater. */
  gater (): Pick<ConnectionGater, 'denyInboundRelayReservation' | 'denyOutboundRelayedConnection'> {
    return {
      denyInboundRelayReservation: (source: PeerId): boolean => {
        if (!this.serving()) {
          log.debug(`refused a relay reservation from ${source.toString()}: not publicly reachable, so not relaying`)
          return true
        }
        return false
      },
      denyOutboundRelayedConnection: (source: PeerId, destination: PeerId): boolean => {
        const reason = this.circuitRefusal(source, destination)
        if (reason != null) log.info(`refused to relay ${source.toString()} → ${destination.toString()}: ${reason}`)
        return reason != null
      }
    }
  }

  /**
   * Why a new relayed connection must not be opened, or undefined when it may.
   * Relayed connections are counted by their streams: each one holds exactly one
   * STOP stream from us to the destination for its whole life, and one HOP stream
   * from its source (the request being decided is already among them).
   */
  private circuitRefusal (source: PeerId, destination: PeerId): string | undefined {
    if (!this.serving()) return 'not publicly reachable, so not relaying'
    const node = this.node
    if (node == null) return 'not started'
    const { maxCircuits, maxCircuitsPerPeer } = this.opts.limits
    const count = (peer: PeerId | undefined, protocol: string, direction: 'inbound' | 'outbound'): number => {
      let n = 0
      for (const conn of node.getConnections(peer)) {
        for (const stream of conn.streams) {
          if (stream.protocol === protocol && stream.direction === direction) n++
        }
      }
      return n
    }
    if (count(undefined, RELAY_V2_STOP_CODEC, 'outbound') >= maxCircuits) return `already relaying ${maxCircuits} connections (relayLimits.maxCircuits)`
    // one peer must not take every circuit: cap it both as a source and as a destination
    if (count(source, RELAY_V2_HOP_CODEC, 'inbound') > maxCircuitsPerPeer) return `${source.toString()} already has ${maxCircuitsPerPeer} relayed connections through us (relayLimits.maxCircuitsPerPeer)`
    if (count(destination, RELAY_V2_STOP_CODEC, 'outbound') >= maxCircuitsPerPeer) return `${destination.toString()} already has ${maxCircuitsPerPeer} relayed connections through us (relayLimits.maxCircuitsPerPeer)`
    return undefined
  }

  private report (): void {
    const s = this.status()
    const line = s.reachable
      ? `publicly reachable at ${s.publicAddrs.join(', ')}${s.relaying ? '; relaying for peers behind NATs' : ''}`
      : s.relays.length > 0
        ? `not publicly reachable; reachable through relay ${s.relays.join(', ')}`
        : 'not publicly reachable yet; looking for a relay'
    if (line === this.last) return
    this.last = line
    log.info(line)
  }
}

/** The parts of libp2p's internal components the reserver uses (structural: no internal package). */
export interface RelayReserverComponents {
  events: TypedEventTarget<Libp2pEvents>
  transportManager: { listen: (addrs: Multiaddr[]) => Promise<void> }
  addressManager: { getAddresses: () => Multiaddr[] }
}

/** A relay that refused or failed us is not asked again for this long. */
const RETRY_RELAY_AFTER_MS = 60_000
/** Safety net: re-check now and then (a refused relay may have become public). */
const RECHECK_EVERY_MS = 30_000

/**
 * Keeps one relay reservation while the node is not publicly reachable.
 *
 * libp2p's own way (`listen: ['/p2p-circuit']`) searches for relays with an
 * endless DHT random walk until it finds one; in a LAN or loopback swarm, where
 * nobody can relay, that walk never ends and keeps every node busy. Instead this
 * service takes its candidates from the swarm it already has: connected peers that
 * speak the relay HOP protocol and are publicly reachable (they advertise a public
 * address, or we reached them at one), and listens on exactly that relay
 * (`/…/p2p/<relay>/p2p-circuit`). When the reservation is lost (relay gone) it
 * moves on to the next candidate.
 */
export class RelayReserver implements Startable {
  private readonly candidates = new Map<string, { addr: Multiaddr, failedAt?: number }>()
  private busy = false
  private started = false
  private timer?: ReturnType<typeof setInterval>

  constructor (private readonly components: RelayReserverComponents) {}

  readonly [Symbol.toStringTag] = 'krill:relay-reserver'

  start (): void {
    this.started = true
  }

  afterStart (): void {
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.components.events.addEventListener('peer:disconnect', this.onDisconnect)
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate)
    this.timer = setInterval(() => { this.maybeReserve() }, RECHECK_EVERY_MS)
    this.timer.unref()
  }

  stop (): void {
    this.started = false
    clearInterval(this.timer)
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    this.components.events.removeEventListener('peer:disconnect', this.onDisconnect)
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate)
  }

  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    const { peerId, protocols, listenAddrs, connection } = evt.detail
    if (!protocols.includes(RELAY_V2_HOP_CODEC) || isRelayedAddr(connection.remoteAddr)) {
      this.candidates.delete(peerId.toString())
      return
    }
    const addr = relayDialAddr(peerId, listenAddrs, connection)
    if (addr == null) {
      // speaks HOP but is not publicly reachable (e.g. a peer on our LAN): its
      // relayed addresses would be useless to anyone outside
      this.candidates.delete(peerId.toString())
      return
    }
    const known = this.candidates.get(peerId.toString())
    this.candidates.set(peerId.toString(), { addr, failedAt: known?.failedAt })
    this.maybeReserve()
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.candidates.delete(evt.detail.toString())
  }

  private readonly onSelfUpdate = (): void => {
    this.maybeReserve()
  }

  private maybeReserve (): void {
    if (!this.started || this.busy) return
    const own = this.components.addressManager.getAddresses()
    // reachable directly, or already reachable through a relay: nothing to do
    if (own.some(isPublicAddr) || own.some(isRelayedAddr)) return
    const now = Date.now()
    const next = [...this.candidates.entries()].find(([, c]) => c.failedAt == null || now - c.failedAt > RETRY_RELAY_AFTER_MS)
    if (next == null) {
      log.debug(`no relay candidate to try (${this.candidates.size} known)`)
      return
    }
    const [id, candidate] = next
    this.busy = true
    const listenOn = candidate.addr.encapsulate('/p2p-circuit')
    log.info(`not publicly reachable: reserving a slot on relay ${id}`)
    this.components.transportManager.listen([listenOn])
      .then(() => {
        log.debug(`reservation on relay ${id} made`)
      }, (err: any) => {
        candidate.failedAt = Date.now()
        // transportManager.listen wraps the reason in a long multi-line message
        const reason = String(err?.message ?? err).split('\n').map(l => l.trim()).filter(l => l !== '' && !/^Some configured addresses|^at |\/p2p-circuit:$/.test(l)).slice(0, 2).join(' ')
        log.info(`relay ${id} gave no reservation: ${reason}`)
      })
      .finally(() => {
        this.busy = false
        // a refusal moves on to the next candidate at once
        queueMicrotask(() => { this.maybeReserve() })
      })
  }
}

/**
 * The address to reach a relay candidate at, or undefined when it is not
 * publicly reachable: a public address it advertises, else the public address we
 * reached it at (a bootstrap node that does not advertise its address).
 */
function relayDialAddr (peer: PeerId, listenAddrs: Multiaddr[], connection: Connection): Multiaddr | undefined {
  const advertised = listenAddrs.find(isPublicAddr)
  const reached = connection.direction === 'outbound' && isPublicAddr(connection.remoteAddr) ? connection.remoteAddr : undefined
  const addr = advertised ?? reached
  if (addr == null) return undefined
  // exactly /<ip>/<port>/p2p/<relay>, whatever the source carried
  const bare = multiaddr(addr.getComponents().filter(c => c.name !== 'p2p'))
  return bare.encapsulate(`/p2p/${peer.toString()}`)
}

export function relayReserver (): (components: RelayReserverComponents) => RelayReserver {
  return (components) => new RelayReserver(components)
}
