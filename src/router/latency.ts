/**
 * Round-trip times per peer for ranking. libp2p's connection monitor keeps
 * `connection.rtt` fresh on open connections; for a peer without one we remember
 * the last value seen and, at most once per `pingEveryMs`, ping it in the
 * background. The request path never waits for a ping.
 */
import type { Connection, PeerId } from '@libp2p/interface'

export interface LatencySource {
  getConnections: (peer?: PeerId) => Connection[]
  ping: (peer: PeerId, signal: AbortSignal) => Promise<number>
  peerIdFromString: (id: string) => PeerId
}

export interface LatencyCacheOptions {
  pingEveryMs?: number
  pingTimeoutMs?: number
  now?: () => number
}

export class LatencyCache {
  private readonly source: LatencySource
  private readonly pingEveryMs: number
  private readonly pingTimeoutMs: number
  private readonly now: () => number
  private readonly known = new Map<string, number>()
  private readonly lastPing = new Map<string, number>()

  constructor (source: LatencySource, opts: LatencyCacheOptions = {}) {
    this.source = source
    this.pingEveryMs = opts.pingEveryMs ?? 30_000
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 2_000
    this.now = opts.now ?? Date.now
  }

  /** best known RTT in ms, or undefined; schedules a background ping when nothing is measured */
  get (peerId: string): number | undefined {
    let peer: PeerId
    try {
      peer = this.source.peerIdFromString(peerId)
    } catch {
      return undefined
    }
    const rtts = this.source.getConnections(peer)
      .filter(c => c.status === 'open')
      .map(c => c.rtt)
      .filter((rtt): rtt is number => rtt != null && Number.isFinite(rtt))
    if (rtts.length > 0) {
      const best = Math.min(...rtts)
      this.remember(peerId, best)
      return best
    }
    this.pingLater(peer, peerId)
    return this.known.get(peerId)
  }

  private remember (peerId: string, ms: number): void {
    if (this.known.size > 4096 && !this.known.has(peerId)) this.known.clear()
    this.known.set(peerId, ms)
  }

  private pingLater (peer: PeerId, peerId: string): void {
    const now = this.now()
    if (now - (this.lastPing.get(peerId) ?? -Infinity) < this.pingEveryMs) return
    this.lastPing.set(peerId, now)
    if (this.lastPing.size > 4096) this.lastPing.clear()
    void this.source.ping(peer, AbortSignal.timeout(this.pingTimeoutMs))
      .then(ms => { this.remember(peerId, ms) })
      .catch(() => { /* unreachable now; ranking treats it as unmeasured */ })
  }
}
