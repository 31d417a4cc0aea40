import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Registry } from 'prom-client'
import { UsageError } from '../errors.js'
import { createApiServer, type ApiServer } from '../api/server.js'
import { createMetricsRegistry, libp2pMetrics } from '../api/metrics.js'
import type { KrillConfig } from '../node/config.js'
import { createKrillNode, type KrillNode, type KrillLibp2p } from '../node/create-node.js'
import { loadOrCreateIdentity } from '../node/identity.js'
import type { NatStatus } from '../node/nat.js'
import { PeerDialer } from '../node/peer-dialer.js'
import { logger } from '../log.js'
import type { DaemonEvent, EventSink } from './events.js'
import type { ValidationStats } from '../discovery/announcement-validator.js'
import type { FindProvidersOptions } from '../discovery/dht-provider.js'
import { Discovery, type DiscoveryOptions } from '../discovery/discovery.js'
import type { ProviderTable } from '../discovery/provider-table.js'
import type { Capacity, ProviderEntry } from '../discovery/types.js'
import { ModelWatcher } from '../engine/model-watcher.js'
import { OllamaEngine } from '../engine/ollama-engine.js'
import type { ModelInfo } from '../engine/types.js'
import { ChatServer, type ChatServerEvent } from '../protocol/chat-server.js'
import { PolicyStore } from '../policy/policy-store.js'
import { createDaemonRouter } from '../router/daemon-router.js'
import { sameModel } from '../models/index.js'
import { RoundTripTimes } from '../peers/rtt.js'
import type { Router } from '../router/router.js'

const log = logger('daemon')

export interface DaemonOptions {
  onEvent?: EventSink
  /** start-up progress for people, one short line per step */
  onProgress?: (step: string) => void
  /** discovery tuning; `gossip: false` finds providers through the DHT only */
  discovery?: Pick<DiscoveryOptions, 'gossip' | 'announcer'>
}

/** A running krill node: libp2p, the local engine, discovery, the chat protocol and the HTTP API. */
export class Daemon {
  readonly config: KrillConfig
  readonly startedAt = Date.now()
  /** this daemon's Prometheus registry: libp2p's metrics and krill's own (GET /metrics) */
  readonly metrics: Registry
  /** round-trip times per peer, for the router's ranking and the control API */
  readonly rtt: RoundTripTimes
  private readonly node: KrillNode
  private readonly dialer: PeerDialer
  private readonly emit: EventSink
  private api?: ApiServer
  private stopping?: Promise<void>
  private discovery!: Discovery
  private chatRouter?: Router
  private ollama?: OllamaEngine
  private chat?: ChatServer
  private policyStore?: PolicyStore
  /** what our announcements say about load; the chat server installs its own via setCapacitySource */
  private capacity: () => Capacity = () => ({ slots: this.config.slots, active: 0, queued: 0 })

  private constructor (config: KrillConfig, node: KrillNode, emit: EventSink, metrics: Registry) {
    this.config = config
    this.metrics = metrics
    this.node = node
    this.emit = emit
    this.dialer = new PeerDialer(node.libp2p, { targetConnections: Math.min(64, config.maxConnections) })
    const libp2p = node.libp2p
    this.rtt = new RoundTripTimes({
      getConnections: peer => libp2p.getConnections(peer),
      ping: async (peer, signal) => await libp2p.services.ping.ping(peer, { signal }),
      peerIdFromString
    })
  }

  get libp2p (): KrillLibp2p {
    return this.node.libp2p
  }

  /** reachability and relaying: public addresses, relays we are reachable through, relaying for others */
  get nat (): NatStatus {
    return this.node.nat.status()
  }

  /** whether our DHT answers queries right now (with dhtMode 'auto' it follows our reachability) */
  get dhtMode (): 'server' | 'client' {
    return this.node.dhtMode()
  }

  get peerId (): PeerId {
    return this.node.libp2p.peerId
  }

  get apiUrl (): string {
    return this.api?.url ?? ''
  }

  /** picks the local engine or the best peer for each chat, with failover */
  get router (): Router {
    if (this.chatRouter == null) throw new Error('the router is created when the daemon starts')
    return this.chatRouter
  }

  /** who serves which model, from announcements and DHT lookups (never this node) */
  get providers (): ProviderTable {
    return this.discovery.providers
  }

  /** the local Ollama; undefined when this node does not serve (--no-serve) */
  get engine (): OllamaEngine | undefined {
    return this.ollama
  }

  /** the models this node shares right now ([] while Ollama is unreachable) */
  localModels (): ModelInfo[] {
    return this.discovery.localModels()
  }

  /** providers of `model`: announced ones, else a DHT lookup (entries without details) */
  async findProviders (model: string, opts?: FindProvidersOptions): Promise<ProviderEntry[]> {
    return await this.discovery.findProviders(model, opts)
  }

  /** who may use our engine and whom we send prompts to (policy.json, GET/PUT /krill/v1/policy) */
  get policy (): PolicyStore {
    if (this.policyStore == null) throw new Error('the peer policy is loaded when the daemon starts')
    return this.policyStore
  }

  /** the provider side of /krill/chat/1.0.0; undefined when this node does not serve */
  get chatServer (): ChatServer | undefined {
    return this.chat
  }

  /** counts of received announcements accepted / rejected / ignored, by reason */
  get announcementStats (): ValidationStats | undefined {
    return this.discovery.announcer?.stats
  }

  /** Installs the source of the capacity we announce (the chat server's slots and queue). */
  setCapacitySource (capacity: () => Capacity): void {
    this.capacity = capacity
    this.discovery?.capacityChanged()
  }

  /** Our capacity changed: re-announce soon (throttled to one message a second). */
  capacityChanged (): void {
    this.discovery?.capacityChanged()
  }

  /** addresses other peers can dial, each ending in /p2p/<peer id> */
  addrs (): string[] {
    return this.node.libp2p.getMultiaddrs().map(a => a.toString())
  }

  static async start (config: KrillConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    const progress = opts.onProgress ?? ((step: string) => log.info(step))
    const emit = opts.onEvent ?? (() => {})

    const { privateKey, created } = await loadOrCreateIdentity(config.dataDir)
    progress(`${created ? 'created' : 'loaded'} identity in ${config.dataDir}`)

    // before libp2p: a broken policy.json must stop us before we serve anyone
    const policy = new PolicyStore({ dataDir: config.dataDir, privateSwarm: config.swarmKey != null })
    await policy.start()

    const metrics = createMetricsRegistry()
    const node = await createKrillNode({
      privateKey,
      metrics: libp2pMetrics(metrics),
      listen: config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      dhtMode: config.dhtMode,
      maxConnections: config.maxConnections,
      maxPendingConnections: config.maxPendingConnections,
      inboundConnectionsPerSecond: config.inboundConnectionsPerSecond,
      relay: config.relay,
      autoRelay: config.autoRelay,
      relayLimits: config.relayLimits,
      upnp: config.upnp,
      autonat: config.autonat,
      swarmKey: config.swarmKey,
      datastorePath: join(config.dataDir, 'datastore')
    }).catch(err => { policy.stop(); throw err })
    const daemon = new Daemon(config, node, emit, metrics)
    daemon.policyStore = policy
    try {
      await daemon.startNode(progress)
      daemon.createDiscovery(opts.discovery, progress)
      await daemon.startChatServer()
      daemon.chatRouter = createDaemonRouter(daemon)
      daemon.api = await createApiServer(daemon)
      await daemon.api.listen(config.api)
    } catch (err) {
      await daemon.stop()
      throw err
    }
    progress(`API on ${daemon.apiUrl}`)
    emit({ event: 'ready', peerId: daemon.peerId.toString(), addrs: daemon.addrs(), api: daemon.apiUrl })
    // discovery reports events (models, Ollama), and those come after the ready line
    daemon.discovery.start()
    return daemon
  }

  private async startNode (progress: (step: string) => void): Promise<void> {
    const libp2p = this.node.libp2p
    libp2p.addEventListener('peer:connect', (evt) => {
      this.emit({ event: 'peer:joined', peerId: evt.detail.toString() })
    })
    libp2p.addEventListener('peer:disconnect', (evt) => {
      this.emit({ event: 'peer:left', peerId: evt.detail.toString() })
    })
    try {
      await libp2p.start()
    } catch (err: any) {
      throw explainListenError(err, this.config.listen)
    }
    this.dialer.start()
    void this.dialer.redialKnownPeers().catch(err => { log.debug(`redialing known peers failed: ${err.message}`) })
    progress(`peer id ${libp2p.peerId.toString()}`)
    progress(`listening on ${libp2p.getMultiaddrs().map(String).join(', ') || '(no addresses)'}`)
    if (this.config.bootstrap.length > 0) progress(`dialing ${this.config.bootstrap.length} bootstrap peer(s)`)
    const first = (): void => {
      progress('connected to the first peer')
      libp2p.removeEventListener('peer:connect', first)
    }
    libp2p.addEventListener('peer:connect', first)
  }

  private createDiscovery (opts: DaemonOptions['discovery'], progress: (step: string) => void): void {
    const config = this.config
    let watcher: ModelWatcher | undefined
    if (config.serve) {
      this.ollama = new OllamaEngine({ host: config.ollama })
      watcher = new ModelWatcher(this.ollama, { intervalMs: config.modelRefreshMs, share: config.share })
      // start-up progress: the first model list with something to share goes out to the swarm
      const off = watcher.on('change', e => {
        if (e.detail.length === 0) return
        off()
        progress(`models announced: ${e.detail.map(m => m.name).join(', ')}`)
      })
    }
    this.discovery = new Discovery({
      ...opts,
      libp2p: this.node.libp2p,
      ttlMs: config.announceTtlMs,
      watcher,
      ollamaUrl: config.ollama,
      capacity: () => this.capacity(),
      emit: this.emit
    })
  }

  /** Serves the chat protocol for the models we announce, within our slots. */
  private async startChatServer (): Promise<void> {
    const engine = this.ollama
    if (engine == null) return
    const served = (name: string, digest?: string): ModelInfo | undefined =>
      this.localModels().find(m => sameModel(m.name, name) && (digest == null || m.digest === digest))
    this.chat = new ChatServer({
      engine,
      slots: this.config.slots,
      maxQueue: this.config.maxQueue,
      limits: this.config.limits,
      authorize: this.policy.authorizeServe,
      isServedModel: (name, digest) => served(name, digest) != null,
      resolveDigest: name => served(name)?.digest,
      onEvent: event => { this.onChatServerEvent(event) }
    })
    const chat = this.chat
    this.setCapacitySource(() => ({ slots: chat.stats.slots, active: chat.stats.active, queued: chat.stats.queued }))
    await chat.start(this.node.libp2p)
  }

  private onChatServerEvent (event: ChatServerEvent): void {
    // load changed: tell the swarm (the announcer throttles this)
    this.capacityChanged()
    if (event.type === 'done') {
      this.emit({ event: 'request:served', model: event.model, peerId: event.peer, tokens: event.usage.completionTokens, durationMs: event.durationMs, outcome: 'done' })
    } else if (event.type === 'error' || event.type === 'cancelled') {
      this.emit({ event: 'request:served', model: event.model ?? '', peerId: event.peer, tokens: 0, durationMs: 0, outcome: event.type === 'error' ? `error ${event.code}` : 'cancelled' })
    }
  }

  /** Stops accepting work, closes the API, libp2p and the datastore. Safe to call twice. */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      this.emit({ event: 'stopping' })
      // refuse new chats and give running ones a moment to finish; the rest are cancelled
      // (ours, routed for our API's clients, and the ones we serve for peers, side by side)
      const routed = this.chatRouter?.drain({ graceMs: 5_000 })
      await this.chat?.stop({ graceMs: 5_000 })
      await routed
      // withdraw our models while libp2p can still say so, then stop watching Ollama
      await this.discovery?.stop()
      this.dialer.stop()
      await this.api?.close()
      this.policyStore?.stop()
      await this.node.stop()
    })()
    await this.stopping
  }

  /** for the HTTP control API */
  emitEvent (event: DaemonEvent): void {
    this.emit(event)
  }
}

function explainListenError (err: any, listen: string[]): Error {
  const text = String(err?.message ?? err)
  if (/EADDRINUSE|address already in use/i.test(text) || err?.code === 'EADDRINUSE') {
    return new UsageError(`a listen address is already in use (${listen.join(', ')}): is another krill daemon running? Stop it or pass --listen with another port`, 1)
  }
  if (/EADDRNOTAVAIL|EACCES/i.test(text)) {
    return new UsageError(`cannot listen on ${listen.join(', ')}: ${text}; pass --listen with an address of this machine`, 1)
  }
  return err
}
