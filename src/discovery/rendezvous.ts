/**
 * Public rendezvous: how nodes of the public krill network meet without a server of
 * ours. Every public node provides one well-known key (`rendezvousKey()`, the CID of
 * `krill/rendezvous/v1/public`) on the public IPFS (Amino) DHT, `/ipfs/kad/1.0.0`,
 * and looks it up; the providers it finds are dialed, and those that speak krill's
 * protocols stay connected — from there krill's own DHT (`/krill/kad/1.0.0`),
 * gossip and the sync exchange take over. protocols/README.md, "Public rendezvous",
 * is the spec.
 *
 * The Amino DHT runs as a second kad-dht instance, a DHT client (we never answer
 * Amino queries), owned by this service rather than registered as a libp2p service
 * of its own: libp2p would otherwise route every content and peer lookup through it
 * too — krill's model keys would be provided to the whole IPFS network and every
 * IPFS peer the walk meets would be "discovered" and dialed by the peer dialer.
 *
 * Strangers' records are just provider records (a peer id and addresses): at most
 * `maxProvidersPerLookup` per lookup are taken, at most `maxAddrsPerPeer` addresses
 * each, dials go `dialConcurrency` at a time under a token bucket
 * (`dialsPerMinute`), and a dialed peer that does not list a `/krill/` protocol
 * after identify is hung up on and not dialed again for `refuseMs`.
 */
import type { ComponentLogger, Connection, IdentifyResult, Libp2pEvents, PeerId, PeerInfo, PeerStore, PrivateKey, Startable, TypedEventTarget } from '@libp2p/interface'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import type { Datastore } from 'interface-datastore'
import { PeerRateLimiter } from '../limits/index.js'
import { logger, type Logger } from '../log.js'
import { isLoopbackAddr, isPrivateAddr } from '../peers/index.js'
import { rendezvousKey, PUBLIC_NETWORK } from './keys.js'

/** The public IPFS DHT's protocol. */
export const AMINO_DHT_PROTOCOL = '/ipfs/kad/1.0.0'

/**
 * The public IPFS DHT's standard bootstrap peers (Kubo's `config/bootstrap_peers.go`),
 * used when no `--rendezvous` is given. Tests always pass `--rendezvous`.
 */
export const AMINO_BOOTSTRAP = [
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt',
  '/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ'
]

/** Provider records on the public DHT live 48 h (Amino's validity); ours are re-provided after 22 h. */
export const RENDEZVOUS_RECORD_VALIDITY_MS = 48 * 3_600_000
export const RENDEZVOUS_REPROVIDE_AFTER_MS = 22 * 3_600_000

/** A peer is a krill peer when identify lists one of krill's protocols. */
export function speaksKrill (protocols: readonly string[]): boolean {
  return protocols.some(p => p.startsWith('/krill/'))
}

export interface RendezvousInit {
  /** the public DHT's bootstrap peers (`--rendezvous`); default AMINO_BOOTSTRAP */
  peers?: string[]
  /** which public network (the key's last part); default 'public' */
  network?: string
  /** below this many connected krill peers, look up again (with backoff); default 4 */
  minKrillPeers?: number
  /** providers taken from one lookup; default 20 */
  maxProvidersPerLookup?: number
  /** addresses tried per provider; default 8 */
  maxAddrsPerPeer?: number
  /** dials at once; default 2 */
  dialConcurrency?: number
  /** dials per minute (token bucket, bursts of 8); default 30 */
  dialsPerMinute?: number
  /** how long a provider that is not krill (or not reachable) is left alone; default 1 h */
  refuseMs?: number
  /** first and longest wait between lookups while short of krill peers; default 2 s … 5 min */
  backoffMs?: { min: number, max: number }
  /** lookups while well connected; default every 30 min */
  steadyLookupMs?: number
  /** one provide, lookup or dial gives up after this long; default 60 s */
  operationTimeoutMs?: number
}

/** What the service takes from libp2p: what kad-dht needs, plus events and connections. */
export interface RendezvousComponents {
  peerId: PeerId
  privateKey: PrivateKey
  logger: ComponentLogger
  events: TypedEventTarget<Libp2pEvents>
  peerStore: PeerStore
  datastore: Datastore
  ping: Ping
  registrar: any
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: {
    getConnections: (peerId?: PeerId) => Connection[]
    openConnection: (peer: PeerId | Multiaddr | Multiaddr[], options?: { signal?: AbortSignal }) => Promise<Connection>
    closeConnections: (peer: PeerId, options?: { signal?: AbortSignal }) => Promise<void>
  }
  metrics?: any
}

export interface RendezvousStats {
  /** lookups run / provides that reached at least one DHT peer */
  lookups: number
  provides: number
  /** provider records seen (after the per-lookup bound), dials made, peers kept, peers dropped as not krill */
  found: number
  dialed: number
  joined: number
  refused: number
  /** dials that failed, and dials skipped by the rate limit */
  failed: number
  rateLimited: number
}

export function rendezvous (init: RendezvousInit = {}): (components: RendezvousComponents) => Rendezvous {
  return (components) => new Rendezvous(components, init)
}

export class Rendezvous implements Startable {
  readonly [Symbol.toStringTag] = '@krill/rendezvous'
  readonly key: CID
  readonly stats: RendezvousStats = { lookups: 0, provides: 0, found: 0, dialed: 0, joined: 0, refused: 0, failed: 0, rateLimited: 0 }
  /** the Amino DHT client (not a libp2p service: see the file comment) */
  readonly dht: KadDHT
  private readonly c: RendezvousComponents
  private readonly log: Logger
  private readonly peers: Multiaddr[]
  private readonly o: Required<Omit<RendezvousInit, 'peers' | 'network'>>
  private readonly krillPeers = new Set<string>()
  /** peer id → when it may be dialed again (not krill, or unreachable) */
  private readonly refused = new Map<string, number>()
  private readonly dialing = new Set<string>()
  private readonly limiter: PeerRateLimiter
  private timer: ReturnType<typeof setTimeout> | undefined
  private abort = new AbortController()
  private running = false
  private busy = false
  private delayMs: number
  private lastLookup = 0

  constructor (components: RendezvousComponents, init: RendezvousInit = {}) {
    this.c = components
    this.log = logger('rendezvous', components)
    this.key = rendezvousKey(init.network ?? PUBLIC_NETWORK)
    this.peers = (init.peers != null && init.peers.length > 0 ? init.peers : AMINO_BOOTSTRAP).map(a => multiaddr(a))
    this.o = {
      minKrillPeers: init.minKrillPeers ?? 4,
      maxProvidersPerLookup: init.maxProvidersPerLookup ?? 20,
      maxAddrsPerPeer: init.maxAddrsPerPeer ?? 8,
      dialConcurrency: init.dialConcurrency ?? 2,
      dialsPerMinute: init.dialsPerMinute ?? 30,
      refuseMs: init.refuseMs ?? 3_600_000,
      backoffMs: init.backoffMs ?? { min: 2_000, max: 300_000 },
      steadyLookupMs: init.steadyLookupMs ?? 30 * 60_000,
      operationTimeoutMs: init.operationTimeoutMs ?? 60_000
    }
    this.delayMs = this.o.backoffMs.min
    this.limiter = new PeerRateLimiter({ burst: 8, perMinute: this.o.dialsPerMinute, maxPeers: 1 })
    // rendezvous peers on loopback or a LAN keep those addresses (a test or LAN
    // "public DHT"); on the real one, private addresses of strangers are dropped
    const local = this.peers.some(ma => isLoopbackAddr(ma) || isPrivateAddr(ma))
    this.dht = kadDHT({
      protocol: AMINO_DHT_PROTOCOL,
      clientMode: true,
      peerInfoMapper: local ? passthroughMapper : removePrivateAddressesMapper,
      logPrefix: 'libp2p:dht-amino',
      datastorePrefix: '/dht-amino',
      metricsPrefix: 'libp2p_dht_amino',
      reprovide: {
        validity: RENDEZVOUS_RECORD_VALIDITY_MS,
        threshold: RENDEZVOUS_RECORD_VALIDITY_MS - RENDEZVOUS_REPROVIDE_AFTER_MS
      }
    })(components as any)
  }

  /** connected peers that speak krill's protocols */
  krillPeerCount (): number {
    return this.krillPeers.size
  }

  async start (): Promise<void> {
    await (this.dht as unknown as Startable).start()
  }

  afterStart (): void {
    if (this.running) return
    this.running = true
    this.abort = new AbortController()
    void (this.dht as unknown as Startable).afterStart?.()
    // what libp2p does for a peer-discovery service, minus the peer:discovery event
    // (which would have the peer dialer dial every IPFS peer the walk meets): the
    // DHT dials the peers it learns of by id, so their addresses go to the peer store
    this.dhtEvents().addEventListener('peer', this.onDhtPeer)
    this.c.events.addEventListener('peer:identify', this.onIdentify)
    this.c.events.addEventListener('peer:disconnect', this.onDisconnect)
    this.log.info(`meeting the public krill network under ${this.key.toString()} through ${this.peers.length} rendezvous peer(s)`)
    this.schedule(0)
  }

  beforeStop (): void {
    this.running = false
    clearTimeout(this.timer)
    this.timer = undefined
    this.abort.abort()
    this.c.events.removeEventListener('peer:identify', this.onIdentify)
    this.c.events.removeEventListener('peer:disconnect', this.onDisconnect)
    this.dhtEvents().removeEventListener('peer', this.onDhtPeer)
  }

  async stop (): Promise<void> {
    this.beforeStop()
    await (this.dht as unknown as Startable).stop()
  }

  /** kad-dht is an event target of 'peer' (its peer-discovery side); the KadDHT type does not say so */
  private dhtEvents (): TypedEventTarget<{ peer: CustomEvent<PeerInfo> }> {
    return this.dht as unknown as TypedEventTarget<{ peer: CustomEvent<PeerInfo> }>
  }

  private readonly onDhtPeer = (evt: CustomEvent<PeerInfo>): void => {
    const { id, multiaddrs } = evt.detail
    if (id.equals(this.c.peerId) || multiaddrs.length === 0) return
    this.c.peerStore.merge(id, { multiaddrs: multiaddrs.slice(0, this.o.maxAddrsPerPeer) }).catch(() => {})
  }

  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    if (speaksKrill(evt.detail.protocols)) this.krillPeers.add(evt.detail.peerId.toString())
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    if (!this.krillPeers.delete(evt.detail.toString())) return
    if (this.krillPeers.size < this.o.minKrillPeers) {
      // short of peers again: look soon, from the short delay
      this.delayMs = this.o.backoffMs.min
      this.schedule(this.delayMs)
    }
  }

  private schedule (ms: number): void {
    if (!this.running) return
    if (this.timer != null) {
      clearTimeout(this.timer)
    }
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.round()
    }, ms)
    this.timer.unref?.()
  }

  /** One round: reach the public DHT, provide our record once, look up when short of krill peers. */
  private async round (): Promise<void> {
    if (!this.running || this.busy) return
    this.busy = true
    try {
      await this.reachDht()
      const work: Array<Promise<void>> = []
      if (this.stats.provides === 0) work.push(this.provide())
      const few = this.krillPeers.size < this.o.minKrillPeers
      if (few || Date.now() - this.lastLookup >= this.o.steadyLookupMs) work.push(this.lookup())
      await Promise.all(work)
    } catch (err: any) {
      if (this.running) this.log.debug(`rendezvous round failed: ${err.message}`)
    } finally {
      this.busy = false
    }
    if (!this.running) return
    if (this.krillPeers.size < this.o.minKrillPeers || this.stats.provides === 0) {
      this.schedule(this.delayMs)
      this.delayMs = Math.min(this.delayMs * 2, this.o.backoffMs.max)
    } else {
      this.delayMs = this.o.backoffMs.min
      this.schedule(this.o.steadyLookupMs)
    }
  }

  private signal (): AbortSignal {
    return AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.o.operationTimeoutMs)])
  }

  /** Dials the rendezvous peers we are not connected to (kad-dht adds them to its table on identify). */
  private async reachDht (): Promise<void> {
    const missing = this.peers.filter(ma => {
      const id = ma.getComponents().findLast(c => c.name === 'p2p')?.value
      return id == null || this.c.connectionManager.getConnections().every(conn => conn.remotePeer.toString() !== id)
    })
    await Promise.all(missing.map(async ma => {
      try {
        await this.c.connectionManager.openConnection(ma, { signal: this.signal() })
      } catch (err: any) {
        this.log.debug(`rendezvous peer ${ma.toString()} unreachable: ${err.message}`)
      }
    }))
  }

  private async provide (): Promise<void> {
    let reached = false
    for await (const event of this.dht.provide(this.key, { signal: this.signal() })) {
      if (event.name === 'PEER_RESPONSE') reached = true
    }
    if (reached) {
      this.stats.provides++
      this.log.debug(`provided ${this.key.toString()} on the public DHT`)
    }
  }

  private async lookup (): Promise<void> {
    this.lastLookup = Date.now()
    this.stats.lookups++
    const self = this.c.peerId.toString()
    const seen = new Set<string>()
    const candidates: PeerInfo[] = []
    const signal = this.signal()
    const enough = new AbortController()
    try {
      for await (const event of this.dht.findProviders(this.key, { signal: AbortSignal.any([signal, enough.signal]) })) {
        if (event.name !== 'PROVIDER') continue
        for (const info of event.providers) {
          if (seen.size >= this.o.maxProvidersPerLookup) break
          const id = info.id.toString()
          if (id === self || seen.has(id)) continue
          seen.add(id)
          this.stats.found++
          if (!this.wanted(id)) continue
          candidates.push({ id: info.id, multiaddrs: info.multiaddrs.slice(0, this.o.maxAddrsPerPeer) })
        }
        if (seen.size >= this.o.maxProvidersPerLookup) {
          enough.abort()
          break
        }
      }
    } catch (err: any) {
      if (!enough.signal.aborted) throw err
    }
    await this.dialAll(candidates.slice(0, this.o.maxProvidersPerLookup))
  }

  private wanted (id: string): boolean {
    if (this.krillPeers.has(id) || this.dialing.has(id)) return false
    const until = this.refused.get(id)
    if (until != null && until > Date.now()) return false
    if (until != null) this.refused.delete(id)
    return true
  }

  private async dialAll (candidates: PeerInfo[]): Promise<void> {
    const queue = [...candidates]
    const worker = async (): Promise<void> => {
      for (let next = queue.shift(); next != null && this.running; next = queue.shift()) {
        if (this.krillPeers.size >= this.o.minKrillPeers * 4) return
        if (!this.limiter.take('dials')) {
          this.stats.rateLimited++
          return
        }
        await this.dialOne(next)
      }
    }
    await Promise.all(Array.from({ length: this.o.dialConcurrency }, worker))
  }

  /** Dials one provider and keeps it only if it speaks krill. */
  private async dialOne (info: PeerInfo): Promise<void> {
    const id = info.id.toString()
    this.dialing.add(id)
    try {
      const target = info.multiaddrs.length > 0
        ? info.multiaddrs.map(ma => ma.getComponents().some(c => c.name === 'p2p') ? ma : ma.encapsulate(`/p2p/${id}`))
        : info.id
      // connected already (a DHT server, a peer that dialed us): identify counts it if it is krill
      if (this.c.connectionManager.getConnections(info.id).length > 0) return
      this.stats.dialed++
      const identified = this.identified(info.id)
      await this.c.connectionManager.openConnection(target, { signal: this.signal() })
      const protocols = await identified
      if (protocols != null && speaksKrill(protocols)) {
        this.krillPeers.add(id)
        this.stats.joined++
        this.log.info(`met krill peer ${id} through the public DHT`)
        return
      }
      this.stats.refused++
      this.remember(id)
      this.log.debug(`rendezvous provider ${id} does not speak krill; hanging up`)
      await this.c.connectionManager.closeConnections(info.id).catch(() => {})
    } catch (err: any) {
      this.stats.failed++
      this.remember(id)
      this.log.debug(`rendezvous provider ${id} unreachable: ${err.message}`)
    } finally {
      this.dialing.delete(id)
    }
  }

  /** The protocols `peer` lists once identify has run on the connection we open (the peer store's after 10 s). */
  private async identified (peer: PeerId): Promise<string[] | undefined> {
    const known = async (): Promise<string[] | undefined> => {
      try {
        return (await this.c.peerStore.get(peer)).protocols
      } catch {
        return undefined
      }
    }
    return await new Promise<string[] | undefined>(resolve => {
      const done = (value: string[] | undefined): void => {
        clearTimeout(timer)
        this.c.events.removeEventListener('peer:identify', onIdentify)
        resolve(value)
      }
      const onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
        if (evt.detail.peerId.equals(peer)) done(evt.detail.protocols)
      }
      const timer = setTimeout(() => { known().then(done, () => { done(undefined) }) }, 10_000)
      this.c.events.addEventListener('peer:identify', onIdentify)
    })
  }

  private remember (id: string): void {
    this.refused.set(id, Date.now() + this.o.refuseMs)
    // bounded: the oldest entries go first
    while (this.refused.size > 1_000) this.refused.delete(this.refused.keys().next().value as string)
  }
}
