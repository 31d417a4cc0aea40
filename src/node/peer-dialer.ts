import type { PeerId, Startable } from '@libp2p/interface'
import { logger, type Logger } from '../log.js'
import { libp2pView, type KrillComponents, type Libp2pView } from './libp2p-view.js'

export interface PeerDialerOptions {
  /** stop dialing new peers once this many are connected */
  targetConnections: number
  /** dials in flight at once */
  concurrency: number
  /** with fewer connections than this, look for more peers through the DHT */
  minConnections: number
  /** longest wait between two looks while below minConnections (ms); the first comes after 1 s */
  lookupIntervalMs: number
  /** which remembered peers to redial at start, by the protocols they spoke (default: all) */
  redial?: (protocols: string[]) => boolean
}

/**
 * The peer dialer as a libp2p service: from afterStart it dials what is discovered
 * (and the peers remembered from earlier runs), until beforeStop.
 */
export function peerDialer (opts: Partial<PeerDialerOptions> = {}): (components: KrillComponents) => PeerDialer {
  return (components) => new PeerDialer(libp2pView(components), opts, components)
}

/** the first look after a connection change: by then identify has told the DHT what the peer speaks */
const FIRST_LOOKUP_DELAY_MS = 1_000
/** after a failed dial or a closed connection a peer is not dialed again for this long, doubling up to REDIAL_MAX_MS */
const REDIAL_FIRST_MS = 10_000
const REDIAL_MAX_MS = 10 * 60_000

/**
 * How many connections a node dials for itself under a connection cap: 40 % of the
 * cap (at most 64), so that most of it stays free for peers that dial us. Dialing up
 * to the cap (or half of it) left every node at its cap: each newcomer then made
 * someone close a connection, whose peer dialed someone else, who had to close one
 * in turn.
 */
export function dialTarget (maxConnections: number): number {
  return Math.max(1, Math.min(64, Math.floor(maxConnections * 0.4)))
}

/**
 * libp2p v3 only records discovered peers (bootstrap, mDNS, DHT walks); it does
 * not dial them. A krill node wants a well-meshed swarm so gossip and the DHT
 * work, so it dials what it discovers until it has enough connections.
 *
 * A node that joins through one bootstrap peer learns the rest of the swarm from
 * the DHT's self-query, which kad-dht runs once a second after start and then every
 * 5 minutes. When the bootstrap connection was not up by then, the node knew one or
 * two peers for minutes; the bootstrap peer, its gossip mesh full, pruned it, and
 * the node missed model announcements for tens of seconds (bench: discovery, 50
 * nodes). So while a node has fewer than `minConnections` connections it looks for
 * peers itself: a second after its connections change, then again after 2, 4, 8 …
 * seconds (at most `lookupIntervalMs`) while a look brings nobody new.
 */
export class PeerDialer implements Startable {
  readonly [Symbol.toStringTag] = '@krill/peer-dialer'
  private readonly node: Pick<Libp2pView, 'peerId' | 'peerStore' | 'peerRouting' | 'getConnections' | 'dial' | 'addEventListener' | 'removeEventListener'>
  private readonly log: Logger
  private readonly opts: PeerDialerOptions
  private readonly pending: PeerId[] = []
  private readonly inFlight = new Set<string>()
  private running = false
  private looking = false
  private lookupTimer: ReturnType<typeof setTimeout> | undefined
  private lookupDelayMs = FIRST_LOOKUP_DELAY_MS
  /** ends a look in progress when we stop */
  private lookupAbort = new AbortController()
  /** peer → when it may be dialed again, and the wait after the next failure */
  private readonly backoff = new Map<string, { until: number, nextMs: number }>()

  constructor (node: PeerDialer['node'], opts: Partial<PeerDialerOptions> = {}, components?: Pick<KrillComponents, 'logger'>) {
    this.node = node
    this.log = logger('peer-dialer', components)
    // gossipsub wants 4 to 12 mesh peers per topic (D_lo, D_hi)
    this.opts = { targetConnections: 32, concurrency: 4, minConnections: 6, lookupIntervalMs: 30_000, ...opts }
  }

  /** libp2p's start phase: nothing to do before the node runs */
  start (): void {}

  /** the node runs: dial what is discovered, and who we knew before */
  afterStart (): void {
    this.follow()
    void this.redialKnownPeers().catch(err => { this.log.debug(`redialing known peers failed: ${err.message}`) })
  }

  beforeStop (): void {
    this.stop()
  }

  private follow (): void {
    if (this.running) return
    this.running = true
    this.lookupAbort = new AbortController()
    this.node.addEventListener('peer:discovery', this.onDiscovery)
    this.node.addEventListener('peer:connect', this.onConnectionsChanged)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    // the bootstrap connection may be up before we listen for connections
    this.scheduleLookup()
  }

  /**
   * Dials peers remembered in the (persistent) peer store: a restarted node
   * rejoins its swarm even when the bootstrap peers are gone.
   */
  async redialKnownPeers (): Promise<void> {
    const redial = this.opts.redial ?? (() => true)
    const known = await this.node.peerStore.all({ filters: [p => p.addresses.length > 0 && redial(p.protocols)] })
    for (const peer of known) this.pending.push(peer.id)
    this.drain()
  }

  stop (): void {
    this.running = false
    this.pending.length = 0
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
    this.node.removeEventListener('peer:connect', this.onConnectionsChanged)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.backoff.clear()
    clearTimeout(this.lookupTimer)
    this.lookupTimer = undefined
    this.lookupAbort.abort()
  }

  private readonly onConnectionsChanged = (): void => {
    // a new situation: start again from the short delay
    this.lookupDelayMs = FIRST_LOOKUP_DELAY_MS
    this.scheduleLookup()
  }

  private scheduleLookup (): void {
    if (!this.running || this.lookupTimer != null || this.looking) return
    if (this.node.getConnections().length >= this.opts.minConnections) return
    this.lookupTimer = setTimeout(() => {
      this.lookupTimer = undefined
      this.lookIfFew()
    }, this.lookupDelayMs)
    this.lookupTimer.unref()
  }

  /** A DHT walk towards our own id; the peers it meets go to the peer store and are dialed. */
  private lookIfFew (): void {
    const connections = this.node.getConnections().length
    if (!this.running || this.looking || connections >= this.opts.minConnections) return
    if (connections === 0) {
      // nobody to ask: try the peers we know (the bootstrap peers among them) again
      void this.redialKnownPeers().catch(() => {})
      this.lookupDelayMs = Math.min(this.lookupDelayMs * 2, this.opts.lookupIntervalMs)
      this.scheduleLookup()
      return
    }
    this.looking = true
    void (async () => {
      for await (const peer of this.node.peerRouting.getClosestPeers(this.node.peerId.toMultihash().bytes, { signal: AbortSignal.any([this.lookupAbort.signal, AbortSignal.timeout(10_000)]) })) {
        if (!this.running) break
        if (peer.id.equals(this.node.peerId) || this.node.getConnections(peer.id).length > 0) continue
        // the walk's answers are not in the peer store yet: a dial by id needs the addresses
        if (peer.multiaddrs.length > 0) await this.node.peerStore.merge(peer.id, { multiaddrs: peer.multiaddrs })
        this.pending.push(peer.id)
      }
    })()
      .catch(() => { /* nobody to ask, or the walk timed out: the next try comes */ })
      .finally(() => {
        this.looking = false
        this.drain()
        // still short of peers: look again, less often each time
        this.lookupDelayMs = Math.min(this.lookupDelayMs * 2, this.opts.lookupIntervalMs)
        this.scheduleLookup()
      })
  }

  /**
   * A peer that went away (it closed the connection, trimmed it to make room, or
   * died) is not dialed again at once: redialing it at once made a full node close
   * another connection, and a dying one cost a failed dial every second.
   */
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.deferRedial(evt.detail.toString())
    this.onConnectionsChanged()
  }

  private deferRedial (key: string): void {
    const now = Date.now()
    const previous = this.backoff.get(key)
    const waitMs = previous != null && previous.until > now - REDIAL_MAX_MS ? previous.nextMs : REDIAL_FIRST_MS
    // forget peers long gone rather than grow without bound
    if (this.backoff.size >= 4096 && previous == null) this.backoff.clear()
    this.backoff.set(key, { until: now + waitMs, nextMs: Math.min(waitMs * 2, REDIAL_MAX_MS) })
  }

  private readonly onDiscovery = (evt: CustomEvent<{ id: PeerId }>): void => {
    const id = evt.detail.id
    if (id.equals(this.node.peerId)) return
    this.pending.push(id)
    this.drain()
  }

  private drain (): void {
    while (this.running && this.inFlight.size < this.opts.concurrency && this.pending.length > 0) {
      const peer = this.pending.shift() as PeerId
      const key = peer.toString()
      if (this.inFlight.has(key) || this.node.getConnections(peer).length > 0) continue
      // a node with no connection at all has nothing to lose by trying again
      if ((this.backoff.get(key)?.until ?? 0) > Date.now() && this.node.getConnections().length > 0) continue
      if (this.node.getConnections().length >= this.opts.targetConnections) {
        this.pending.length = 0
        return
      }
      this.inFlight.add(key)
      this.node.dial(peer, { signal: AbortSignal.timeout(10_000) })
        .catch(() => {
          // unreachable peers are common; the peer store keeps trying others
          this.deferRedial(key)
        })
        .finally(() => {
          this.inFlight.delete(key)
          this.drain()
        })
    }
  }
}
