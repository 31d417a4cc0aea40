import type { Libp2p, PeerId } from '@libp2p/interface'

export interface PeerDialerOptions {
  /** stop dialing new peers once this many are connected */
  targetConnections: number
  /** dials in flight at once */
  concurrency: number
}

/**
 * libp2p v3 only records discovered peers (bootstrap, mDNS, DHT walks); it does
 * not dial them. A krill node wants a well-meshed swarm so gossip and the DHT
 * work, so it dials what it discovers until it has enough connections.
 */
export class PeerDialer {
  private readonly node: Libp2p
  private readonly opts: PeerDialerOptions
  private readonly pending: PeerId[] = []
  private readonly inFlight = new Set<string>()
  private running = false

  constructor (node: Libp2p, opts: Partial<PeerDialerOptions> = {}) {
    this.node = node
    this.opts = { targetConnections: 32, concurrency: 4, ...opts }
  }

  start (): void {
    this.running = true
    this.node.addEventListener('peer:discovery', this.onDiscovery)
  }

  /**
   * Dials peers remembered in the (persistent) peer store: a restarted node
   * rejoins its swarm even when the bootstrap peers are gone.
   */
  async redialKnownPeers (): Promise<void> {
    const known = await this.node.peerStore.all({ filters: [p => p.addresses.length > 0] })
    for (const peer of known) this.pending.push(peer.id)
    this.drain()
  }

  stop (): void {
    this.running = false
    this.pending.length = 0
    this.node.removeEventListener('peer:discovery', this.onDiscovery)
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
      if (this.node.getConnections().length >= this.opts.targetConnections) {
        this.pending.length = 0
        return
      }
      this.inFlight.add(key)
      this.node.dial(peer, { signal: AbortSignal.timeout(10_000) })
        .catch(() => { /* unreachable peers are common; the peer store keeps trying others */ })
        .finally(() => {
          this.inFlight.delete(key)
          this.drain()
        })
    }
  }
}
