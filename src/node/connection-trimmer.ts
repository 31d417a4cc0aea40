/**
 * Keeps a node near its connection cap without turning newcomers away.
 *
 * libp2p refuses every inbound connection once it has `maxConnections`, and its own
 * pruner only closes connections whose streams are all identify/autonat/dcutr: every
 * krill connection carries gossipsub and DHT streams, so nothing was ever pruned and
 * a full node became a wall (with a cap of 16, 22 of 53 nodes never joined; bootstrap
 * nodes of any network larger than the cap stop admitting anyone). So libp2p's limit
 * is set above the cap (`hardConnectionLimit`), which always leaves room to let a
 * newcomer in, and this service closes the least useful connections to bring the
 * count back down to the low-water mark (go-libp2p's connection manager works the same
 * way: high water, low water, a grace period).
 *
 * Never closed: connections younger than the grace period (a newcomer needs a moment
 * to learn the swarm and dial others), connections carrying a chat or a relayed
 * circuit (or a stream still negotiating its protocol: it may be a chat), and
 * connections to peers we keep (gossip mesh peers, the relays we are reachable
 * through). A chat stream negotiated ahead of its request (a ready stream) keeps
 * nothing: otherwise every consumer of the last minute would pin its connection to
 * a popular provider, and the provider would refuse newcomers at its cap. Of the rest, closed first: a peer's second connection, then
 * the oldest: a peer we have known for long has found others meanwhile, while a
 * recent one may still depend on us (closing newcomers first left nodes of a
 * growing swarm with no connection at all). After a trim the next one waits
 * `silenceMs`, unless there is no room left for the next newcomer.
 *
 * A trimmed peer loses its keep-alive tags first: kad-dht tags its 20 closest peers
 * keep-alive, and libp2p's reconnect queue redials such a peer the moment its
 * connection closes, which under a cap below 20 made the trimmer and the reconnect
 * queue take turns forever.
 */
import { KEEP_ALIVE } from '@libp2p/interface'
import type { ComponentLogger, Connection, Logger, PeerId, PeerStore, Startable, Stream, TypedEventTarget, Libp2pEvents } from '@libp2p/interface'

export interface ConnectionTrimmerInit {
  /** the node's connection cap (krill's maxConnections) */
  maxConnections: number
  /** trim down to this many; default the cap itself (fewest closes: each one may cost its peer a redial) */
  lowWater?: number
  /** connections younger than this are left alone (default 30 s) */
  graceMs?: number
  /** a connection with an open stream of one of these protocols is kept */
  keepProtocols?: string[]
  /** ...unless the stream carries nothing yet (a chat stream negotiated ahead of its request) */
  idleStream?: (stream: Stream) => boolean
  /** peers (as strings) whose connections are kept: gossip mesh, our relays */
  keepPeers?: () => Iterable<string>
  /** how often the count is checked besides on every new connection (default 5 s) */
  intervalMs?: number
  /** least time between two trims while there is room for newcomers (default 5 s) */
  silenceMs?: number
}

export interface ConnectionTrimmerComponents {
  connectionManager: { getConnections: () => Connection[] }
  events: TypedEventTarget<Libp2pEvents>
  peerStore: Pick<PeerStore, 'get' | 'merge'>
  logger: ComponentLogger
}

export interface ConnectionTrimmer {
  /** connections this service closed since start */
  readonly trimmed: number
  /** checks the count now (also runs on every new connection) */
  trim: () => Promise<void>
}

/** libp2p's own limit for a krill cap: room above the cap so that a newcomer always gets in. */
export function hardConnectionLimit (maxConnections: number): number {
  return maxConnections + Math.max(4, Math.ceil(maxConnections / 4))
}

class Trimmer implements ConnectionTrimmer, Startable {
  readonly [Symbol.toStringTag] = 'krill:connection-trimmer'
  trimmed = 0
  private readonly components: ConnectionTrimmerComponents
  private readonly log: Logger
  private readonly maxConnections: number
  private readonly lowWater: number
  private readonly graceMs: number
  private readonly keepProtocols: Set<string>
  private readonly idleStream?: (stream: Stream) => boolean
  private readonly keepPeers: () => Iterable<string>
  private readonly intervalMs: number
  private readonly silenceMs: number
  private readonly hardLimit: number
  private lastTrimAt = -Infinity
  private timer: ReturnType<typeof setInterval> | undefined
  private running: Promise<void> | undefined
  private again = false

  constructor (components: ConnectionTrimmerComponents, init: ConnectionTrimmerInit) {
    this.components = components
    this.log = components.logger.forComponent('krill:connection-trimmer')
    this.maxConnections = init.maxConnections
    this.lowWater = Math.max(1, Math.min(init.lowWater ?? init.maxConnections, init.maxConnections))
    this.graceMs = init.graceMs ?? 30_000
    this.keepProtocols = new Set(init.keepProtocols ?? [])
    this.idleStream = init.idleStream
    this.keepPeers = init.keepPeers ?? (() => [])
    this.intervalMs = init.intervalMs ?? 5_000
    this.silenceMs = init.silenceMs ?? 5_000
    this.hardLimit = hardConnectionLimit(init.maxConnections)
  }

  start (): void {
    this.components.events.addEventListener('connection:open', this.onOpen)
    this.timer = setInterval(this.onOpen, this.intervalMs)
    this.timer.unref?.()
  }

  stop (): void {
    this.components.events.removeEventListener('connection:open', this.onOpen)
    clearInterval(this.timer)
    this.timer = undefined
  }

  private readonly onOpen = (): void => {
    void this.trim().catch(err => { this.log.error('trimming connections failed - %e', err) })
  }

  /** One trim at a time; a request during one runs once more afterwards. */
  async trim (): Promise<void> {
    if (this.running != null) {
      this.again = true
      return await this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        await this.trimOnce()
      } while (this.again)
    })().finally(() => { this.running = undefined })
    return await this.running
  }

  private async dropKeepAlive (peer: PeerId): Promise<void> {
    try {
      const { tags } = await this.components.peerStore.get(peer)
      const keepAlive = [...tags.keys()].filter(tag => tag.startsWith(KEEP_ALIVE))
      if (keepAlive.length > 0) await this.components.peerStore.merge(peer, { tags: Object.fromEntries(keepAlive.map(tag => [tag, undefined])) })
    } catch {
      // not in the peer store: nothing keeps it alive
    }
  }

  private async trimOnce (): Promise<void> {
    const connections = this.components.connectionManager.getConnections().filter(c => c.status === 'open')
    if (connections.length <= this.maxConnections) return
    // one trim in a while, unless the next newcomer would be turned away
    if (Date.now() - this.lastTrimAt < this.silenceMs && connections.length < this.hardLimit - 1) return
    const keepPeers = new Set(this.keepPeers())
    const now = Date.now()
    const perPeer = new Map<string, number>()
    for (const c of connections) perPeer.set(c.remotePeer.toString(), (perPeer.get(c.remotePeer.toString()) ?? 0) + 1)

    const kept = (c: Connection): boolean =>
      keepPeers.has(c.remotePeer.toString()) ||
      // a stream still negotiating its protocol may be a chat about to start
      c.streams.some(s => (this.keepProtocols.has(s.protocol ?? '') && this.idleStream?.(s) !== true) || s.protocol == null || s.protocol === '')
    const closable = connections.filter(c => !kept(c))
    const settled = closable.filter(c => now - c.timeline.open >= this.graceMs)
    const young = closable.filter(c => now - c.timeline.open < this.graceMs)
    const rank = (a: Connection, b: Connection): number =>
      // a peer's extra connection first
      Number((perPeer.get(b.remotePeer.toString()) ?? 0) > 1) - Number((perPeer.get(a.remotePeer.toString()) ?? 0) > 1) ||
      // then the oldest: that peer has had time to find others
      a.timeline.open - b.timeline.open
    settled.sort(rank)
    young.sort((a, b) => a.timeline.open - b.timeline.open)

    const excess = connections.length - this.lowWater
    const victims = settled.slice(0, excess)
    // all still in their grace period and no room for the next newcomer: the oldest of them go
    const room = connections.length - victims.length
    if (room > this.maxConnections) victims.push(...young.slice(0, room - this.maxConnections))
    if (victims.length === 0) {
      this.log('%d connections (cap %d), none of them may be closed now', connections.length, this.maxConnections)
      return
    }
    this.lastTrimAt = Date.now()
    this.log('%d connections (cap %d): closing %d', connections.length, this.maxConnections, victims.length)
    await Promise.all(victims.map(async c => {
      await this.dropKeepAlive(c.remotePeer)
      // the peer store write took a moment: a chat may have started on it meanwhile
      if (kept(c) || c.status !== 'open') return
      try {
        await c.close({ signal: AbortSignal.timeout(2_000) })
      } catch (err: any) {
        c.abort(err)
      }
      this.trimmed++
    }))
  }
}

export function connectionTrimmer (init: ConnectionTrimmerInit): (components: ConnectionTrimmerComponents) => ConnectionTrimmer {
  return (components) => new Trimmer(components, init)
}
