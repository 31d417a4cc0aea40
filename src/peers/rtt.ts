/**
 * Round-trip times per peer, one cache for the whole node: the router ranks by it,
 * the control API (`krill peers`, `krill ping`, provider lists) shows it.
 *
 * libp2p's connection monitor keeps `connection.rtt` fresh on open connections;
 * that figure wins. For a peer without one we use what our last ping said, and ping
 * again at most once per `pingEveryMs`. Pings go through one place (`measure`): one
 * at a time per peer, so concurrent callers share it.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Connection, PeerId } from '@libp2p/interface'

/** What the cache needs from libp2p (the port it declares). */
export interface RttSource {
  getConnections: (peer?: PeerId) => Connection[]
  ping: (peer: PeerId, signal: AbortSignal) => Promise<number>
  peerIdFromString: (id: string) => PeerId
}

export interface RoundTripTimesOptions {
  /** background pings for a peer without a measured connection: at most this often (30 s) */
  pingEveryMs?: number
  /** timeout of a background ping (2 s) */
  pingTimeoutMs?: number
  /** a ping result counts as fresh this long (30 s) */
  freshForMs?: number
  /** peers remembered at once; the cache is cleared beyond (4096) */
  maxPeers?: number
  now?: () => number
}

export class RoundTripTimes {
  private readonly source: RttSource
  private readonly pingEveryMs: number
  private readonly pingTimeoutMs: number
  private readonly freshForMs: number
  private readonly maxPeers: number
  private readonly now: () => number
  private readonly known = new Map<string, { ms: number, at: number }>()
  private readonly lastPing = new Map<string, number>()
  private readonly inFlight = new Map<string, Promise<number>>()

  constructor (source: RttSource, opts: RoundTripTimesOptions = {}) {
    this.source = source
    this.pingEveryMs = opts.pingEveryMs ?? 30_000
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 2_000
    this.freshForMs = opts.freshForMs ?? 30_000
    this.maxPeers = opts.maxPeers ?? 4096
    this.now = opts.now ?? Date.now
  }

  /**
   * Best known RTT in ms, or undefined; never waits. A connected peer without a
   * measured connection gets a background ping (rate-limited per peer).
   */
  get (peerId: string): number | undefined {
    const peer = this.parse(peerId)
    if (peer == null) return undefined
    const measured = this.fromConnections(peer)
    if (measured != null) return measured
    this.pingLater(peer)
    return this.known.get(peerId)?.ms
  }

  /**
   * RTT for display: a measured connection, else a fresh ping result, else (when
   * connected) a ping bounded by `timeoutMs`; null when none of these answers.
   * Never dials a peer we are not connected to.
   */
  async current (peerId: string, timeoutMs: number): Promise<number | null> {
    const peer = this.parse(peerId)
    if (peer == null) return null
    const measured = this.fromConnections(peer)
    if (measured != null) return measured
    const cached = this.fresh(peerId)
    if (cached != null) return cached
    if (this.source.getConnections(peer).length === 0) return null
    try {
      return await this.measure(peer, timeoutMs)
    } catch {
      return null
    }
  }

  /**
   * Pings `peer` now (dialing it if needed) and remembers the result. One ping per
   * peer at a time: concurrent callers share it.
   */
  async measure (peer: PeerId, timeoutMs: number): Promise<number> {
    const key = peer.toString()
    let running = this.inFlight.get(key)
    if (running == null) {
      running = this.pingOnce(peer, AbortSignal.timeout(timeoutMs)).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, running)
    }
    return await running
  }

  /** a ping result younger than `freshForMs` */
  fresh (peerId: string): number | undefined {
    const hit = this.known.get(peerId)
    return hit != null && this.now() - hit.at < this.freshForMs ? hit.ms : undefined
  }

  private parse (peerId: string): PeerId | undefined {
    try {
      return this.source.peerIdFromString(peerId)
    } catch {
      return undefined
    }
  }

  /** the lowest RTT among open connections (the monitor re-measures them every few seconds) */
  private fromConnections (peer: PeerId): number | undefined {
    const rtts = this.source.getConnections(peer)
      .filter(c => c.status === 'open')
      .map(c => c.rtt)
      .filter((rtt): rtt is number => rtt != null && Number.isFinite(rtt))
    if (rtts.length === 0) return undefined
    const best = Math.min(...rtts)
    this.remember(peer.toString(), best)
    return best
  }

  private remember (peerId: string, ms: number): void {
    // peers come and go for months: forget everyone rather than grow without bound
    if (this.known.size >= this.maxPeers && !this.known.has(peerId)) this.known.clear()
    this.known.set(peerId, { ms, at: this.now() })
  }

  private pingLater (peer: PeerId): void {
    const key = peer.toString()
    const now = this.now()
    if (now - (this.lastPing.get(key) ?? -Infinity) < this.pingEveryMs) return
    if (this.lastPing.size >= this.maxPeers) this.lastPing.clear()
    this.lastPing.set(key, now)
    this.measure(peer, this.pingTimeoutMs)
      .catch(() => { /* unreachable now; ranking treats it as unmeasured */ })
  }

  /**
   * The ping service allows one outbound ping stream per connection, and the
   * stream of the previous ping (ours, the DHT's) lingers until the remote has
   * closed it: "too many outbound streams" means "try again in a moment".
   */
  private async pingOnce (peer: PeerId, signal: AbortSignal): Promise<number> {
    for (;;) {
      try {
        const ms = await this.source.ping(peer, signal)
        this.remember(peer.toString(), ms)
        return ms
      } catch (err: any) {
        if (err?.name !== 'TooManyOutboundProtocolStreamsError' || signal.aborted) throw err
        await sleep(25, undefined, { signal })
      }
    }
  }
}
