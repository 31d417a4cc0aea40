/**
 * Discovery as one unit for the daemon: the provider table, gossip announcements and
 * the DHT, driven by the local model watcher. The daemon creates it after libp2p has
 * started and stops it before libp2p stops (so the withdrawal still goes out).
 */
import { DEFAULT_QUOTA } from './gossip-quota.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Startable } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { EventSink } from '../events.js'
import type { ModelWatcher } from '../engine/model-watcher.js'
import type { ModelInfo } from '../engine/types.js'
import { logger, type Logger } from '../log.js'
import { libp2pView, type KrillComponents, type Libp2pView } from '../node/libp2p-view.js'
import { AGENT_VERSION } from '../version.js'
import { Announcer, type AnnouncerOptions } from './announcer.js'
import { DhtProvider, type FindProvidersOptions } from './dht-provider.js'
import { ProviderTable } from './provider-table.js'
import type { Capacity, ProviderEntry } from './types.js'

/** how often a large-swarm node looks a model it uses up in the DHT besides gossip */
const DHT_REFRESH_MS = 10 * 60_000

/** the libp2p node discovery runs on: gossipsub for announcements, the DHT for lookups */
export type DiscoveryLibp2p = Libp2pView & { services: { pubsub: GossipSub, dht: KadDHT } }

/** What discovery takes from libp2p as a service: gossipsub and the DHT (listed before it), and the usual components. */
export type DiscoveryComponents = KrillComponents & { pubsub: GossipSub, dht: KadDHT }

export type DiscoveryInit = Omit<DiscoveryOptions, 'libp2p'>

/**
 * Discovery as a libp2p service: it starts after libp2p has (afterStart: the
 * provider table, the DHT provider, the announcer and the model watcher), withdraws
 * our announcement in beforeStop while gossipsub still runs, and detaches
 * everything on stop.
 */
export function discovery (init: DiscoveryInit): (components: DiscoveryComponents) => Discovery {
  return (components) => new Discovery({
    ...init,
    libp2p: Object.assign(libp2pView(components), { services: { get pubsub () { return components.pubsub }, get dht () { return components.dht } } })
  }, components)
}

export interface DiscoveryOptions {
  libp2p: DiscoveryLibp2p
  /** lifetime of our announcements, and of providers found in the DHT */
  ttlMs: number
  /** the local models to share; absent when this node does not serve */
  watcher?: ModelWatcher
  /** Ollama's URL, for the log lines that say whether we share */
  ollamaUrl?: string
  capacity: () => Capacity
  emit: EventSink
  /** take part in gossip (default true); false: find providers through the DHT only */
  gossip?: boolean
  /** announcer tuning (rate limit, min interval, limits) */
  announcer?: Partial<Pick<AnnouncerOptions, 'minIntervalMs' | 'limits' | 'rateLimit' | 'largeSwarmProviders' | 'largeTtlMs' | 'quota' | 'shardIdleMs'>>
}

export class Discovery implements Startable {
  readonly [Symbol.toStringTag] = '@krill/discovery'
  readonly providers: ProviderTable
  readonly announcer?: Announcer
  readonly dht: DhtProvider
  private readonly opts: DiscoveryOptions
  private readonly cleanups: Array<() => void> = []
  private readonly dhtLookedAt = new Map<string, number>()
  private everReachable = false
  private stopped = false
  private started = false
  private readonly log: Logger

  constructor (opts: DiscoveryOptions, components?: { logger: KrillComponents['logger'] }) {
    this.opts = opts
    this.log = logger('discovery', components)
    const libp2p = opts.libp2p
    this.providers = new ProviderTable({ selfId: libp2p.peerId.toString() })
    this.dht = new DhtProvider({
      libp2p,
      table: this.providers,
      ttlMs: opts.ttlMs,
      // the KadDHT interface does not expose its routing table; the implementation does
      routingTableSize: () => (libp2p.services.dht as unknown as { routingTable?: { size: number } }).routingTable?.size ?? 0
    })
    if (opts.gossip !== false) {
      this.announcer = new Announcer({
        ...opts.announcer,
        selfId: libp2p.peerId.toString(),
        pubsub: libp2p.services.pubsub,
        table: this.providers,
        ttlMs: opts.ttlMs,
        version: AGENT_VERSION,
        models: () => this.localModels(),
        capacity: opts.capacity,
        // a shard topic is sparse: without a connection to some of its peers we have
        // no mesh in it. Its model's providers are in the DHT; reaching a few joins us.
        onShard: (_shard, model) => { void this.dht.findProviders(model, { dial: 6 }).catch(() => {}) }
      })
    }
  }

  /** the models this node shares right now */
  localModels (): ModelInfo[] {
    return this.opts.watcher?.current ?? []
  }

  /** libp2p's start phase: nothing yet (gossipsub and the DHT start alongside) */
  start (): void {}

  /** libp2p has started: find, announce and watch */
  afterStart (): void {
    if (this.started) return
    this.started = true
    this.stopped = false
    const { emit, watcher } = this.opts
    this.providers.start()
    this.cleanups.push(
      this.providers.on('model:appeared', e => { emit({ event: 'model:appeared', ...e.detail }) }),
      this.providers.on('model:vanished', e => { emit({ event: 'model:vanished', ...e.detail }) })
    )
    // a closed connection does not take a provider out of the catalog: its
    // announcements reach us through other peers, and it stays listed for as long as
    // they say (TTL); a chat to it dials it again. Dropping it on every disconnect made
    // models blink whenever a connection was trimmed to make room.

    this.dht.start()
    this.announcer?.start()
    if (watcher != null) {
      this.cleanups.push(
        watcher.on('change', e => {
          this.announcer?.changed()
          this.dht.setModels(e.detail)
          this.log.info(`sharing ${e.detail.length} model(s)${e.detail.length > 0 ? `: ${e.detail.map(m => m.name).join(', ')}` : ''}`)
        }),
        watcher.on('reachable', () => { this.onReachable() }),
        watcher.on('unreachable', () => { this.onUnreachable() })
      )
      watcher.start()
    }
  }

  /** We route to `model`: at scale, listen to its shard from now on (cheap when already done or small). */
  interest (model: string): void {
    this.announcer?.interest(model)
  }

  /**
   * A dial to `peerId` failed: it is not reachable now. It leaves the table until it
   * announces again (at scale its last announcement would list it for an hour).
   */
  unreachable (peerId: string): void {
    if (this.providers.all().some(e => e.peerId === peerId)) this.log.info(`peer ${peerId} could not be reached: not listed until it announces again`)
    this.providers.forgetUnreachable(peerId)
  }

  /** Our capacity changed: tell the network soon (announcements are throttled). */
  capacityChanged (): void {
    if (this.localModels().length > 0) this.announcer?.capacityChanged()
  }

  /**
   * Providers of `model`: from fresh announcements when there are any, otherwise from
   * a DHT lookup (those entries have no details; dialing them brings their announcement).
   */
  async findProviders (model: string, opts: FindProvidersOptions = {}): Promise<ProviderEntry[]> {
    this.interest(model)
    const known = this.providers.providersFor(model, opts.digest)
    const gossiping = known.filter(e => e.source === 'gossip').length
    if (gossiping > 0) {
      // at scale only a quota of a model's providers gossip it; the quiet ones are in
      // the DHT, so a large swarm also looks there now and then, off the chat's path
      // (the next chats spread past the quota). Below a full quota there are no quiet
      // ones (a vacancy is filled), so the lookup would find nobody new.
      if (gossiping >= this.gossipQuota && this.dueForDhtLookup(model)) void this.dht.findProviders(model, opts).catch(() => {})
      return known
    }
    await this.dht.findProviders(model, opts)
    return this.providers.providersFor(model, opts.digest)
  }

  /** how many providers of one model gossip it at scale */
  private get gossipQuota (): number {
    return this.opts.announcer?.quota ?? DEFAULT_QUOTA
  }

  /** large swarms: one DHT lookup per model every DHT_REFRESH_MS besides gossip */
  private dueForDhtLookup (model: string): boolean {
    if (this.announcer?.isSharded !== true) return false
    const key = model.toLowerCase()
    const now = Date.now()
    if ((this.dhtLookedAt.get(key) ?? -Infinity) > now - DHT_REFRESH_MS) return false
    if (this.dhtLookedAt.size >= 1_000) this.dhtLookedAt.clear()
    this.dhtLookedAt.set(key, now)
    return true
  }

  /** libp2p is about to stop: withdraw our announcement while gossipsub can still say so. */
  async beforeStop (): Promise<void> {
    if (!this.started) return
    await this.announcer?.stop({ withdraw: true })
  }

  /** Stops everything and detaches every listener. Safe to call twice. */
  async stop (): Promise<void> {
    if (this.stopped || !this.started) return
    this.stopped = true
    this.started = false
    await this.announcer?.stop({ withdraw: true })
    this.opts.watcher?.stop()
    this.dht.stop()
    for (const cleanup of this.cleanups.splice(0)) cleanup()
    this.providers.stop()
  }

  private onReachable (): void {
    const url = this.opts.ollamaUrl ?? 'Ollama'
    this.log.info(this.everReachable ? `Ollama at ${url} answers again; sharing its models` : `Ollama at ${url} reachable`)
    this.everReachable = true
    this.opts.emit({ event: 'ollama:reachable', url })
  }

  private onUnreachable (): void {
    const url = this.opts.ollamaUrl ?? 'Ollama'
    if (this.everReachable) {
      this.log.warn(`Ollama at ${url} stopped answering; no longer sharing models until it is back`)
    } else {
      // said once: a node without Ollama is a normal, useful node
      this.log.warn(`no Ollama at ${url} — running as a consumer/relay only; start Ollama or pass --ollama URL to share models`)
    }
    this.opts.emit({ event: 'ollama:unreachable', url })
  }
}
