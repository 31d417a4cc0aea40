/**
 * The composition root: the one place that knows every part. It builds them in
 * order — config (given) → identity → policy → engine → libp2p with krill's
 * network services → router → HTTP API — hands each only the port it declares
 * (bindings.ts), and returns a fully built, read-only handle. Only the program
 * entry (src/cli/commands/daemon.ts) and tests import this folder
 * (.dependency-cruiser.cjs says so, and `npm test` checks it).
 */
import type { Server as HttpServer } from 'node:http'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { ServiceFactoryMap } from 'libp2p'
import type { Registry } from 'prom-client'
import { RequestLog } from '../api/request-log.js'
import { createApiServer, type ApiServer } from '../api/server.js'
import { createMetricsRegistry, libp2pMetrics } from '../api/metrics.js'
import type { ValidationStats } from '../discovery/announcement-validator.js'
import type { FindProvidersOptions } from '../discovery/dht-provider.js'
import { discovery, type Discovery, type DiscoveryOptions } from '../discovery/discovery.js'
import { announceScoreParams, ANNOUNCE_SCORE_THRESHOLDS } from '../discovery/gossip-scoring.js'
import type { ProviderTable } from '../discovery/provider-table.js'
import type { ProviderEntry } from '../discovery/types.js'
import { ModelWatcher } from '../engine/model-watcher.js'
import { OllamaEngine } from '../engine/ollama-engine.js'
import type { EmbedEngine, Engine, ModelInfo } from '../engine/types.js'
import { AddressInUseError, AddressUnavailableError } from '../errors.js'
import type { DaemonEvent, EventSink } from '../events.js'
import { uiAssetsDir } from '../ui/index.js'
import { componentLogger, logger } from '../log.js'
import type { KrillConfig } from '../node/config.js'
import { createKrillNode, type KrillLibp2p, type KrillNode } from '../node/create-node.js'
import { loadOrCreateIdentity } from '../node/identity.js'
import type { NatStatus } from '../node/nat.js'
import { dialTarget, peerDialer, type PeerDialer } from '../node/peer-dialer.js'
import { inviteService, type CreatedInvite, type InviteService } from '../network/invite-service.js'
import { decodeInvite } from '../network/invite-token.js'
import { resolveMembership, type Membership } from '../network/membership.js'
import type { NetworkMode } from '../network/network-mode.js'
import { syncExchange, type SyncExchange } from '../discovery/sync-exchange.js'
import { NotInSwarmError } from '../errors.js'
import { ScorePenalty } from '@libp2p/gossipsub/metrics'
import { PolicyStore } from '../policy/policy-store.js'
import { rendezvous, speaksKrill, type Rendezvous } from '../discovery/rendezvous.js'
import { chatServer, type ChatServer, type ChatServerEvent } from '../protocol/chat-server.js'
import { embedServer, type EmbedServer, type EmbedServerEvent } from '../protocol/embed-server.js'
import { showServer, type ShowServer } from '../protocol/show-exchange.js'
import { CHAT_PROTOCOL } from '../protocol/ids.js'
import { ReadyStreams } from '../protocol/ready-streams.js'
import { sameModel } from '../models/index.js'
import { RoundTripTimes } from '../peers/rtt.js'
import { parsePeerId } from '../peers/parse-peer-id.js'
import type { Router } from '../router/router.js'
import { receipts, type ReceiptBook } from '../receipts/receipt-book.js'
import { bindApiBackend, bindControl, bindLedger, bindMetrics, bindRouter, serveLoad, type Parts } from './bindings.js'

const log = logger('daemon')

export interface DaemonOptions {
  onEvent?: EventSink
  /** start-up progress for people, one short line per step */
  onProgress?: (step: string) => void
  /** discovery tuning; `gossip: false` finds providers through the DHT only */
  discovery?: Pick<DiscoveryOptions, 'gossip' | 'announcer'>
  /** POST /krill/v1/shutdown: the program stops the daemon as on SIGTERM (default: it stops itself) */
  onStopRequest?: () => void
}

/** A running krill node, fully built. What the CLI and tests may look at; everything else stays inside. */
export interface Daemon {
  readonly config: KrillConfig
  readonly startedAt: number
  readonly peerId: PeerId
  readonly libp2p: KrillLibp2p
  /** http://host:port of the HTTP API */
  readonly apiUrl: string
  /** round-trip times per peer, for the router's ranking and the control API */
  readonly rtt: RoundTripTimes
  /** picks the local engine or the best peer for each chat, with failover */
  readonly router: Router
  /** the chat streams kept negotiated for the next chat to each provider in use */
  readonly readyStreams: ReadyStreams
  /** who serves which model, from announcements and DHT lookups (never this node) */
  readonly providers: ProviderTable
  /** the provider side of /krill/chat/1.0.0; undefined when this node does not serve */
  readonly chatServer: ChatServer | undefined
  /** counts of received announcements accepted / rejected / ignored; undefined without gossip */
  readonly announcementStats: ValidationStats | undefined
  /** whether our DHT answers queries right now (with dhtMode 'auto' it follows our reachability) */
  readonly dhtMode: 'server' | 'client'
  /** reachability and relaying */
  readonly nat: NatStatus
  /** this daemon's Prometheus registry (GET /metrics) */
  readonly metrics: Registry
  /** 'private' (a pnet swarm) or, once it exists, 'public' */
  readonly network: NetworkMode
  /** which swarm we are in and how we got there (own, joined by invite, --swarm-key) */
  readonly membership: Membership
  /** an invite token for this node's private swarm (`krill invite`) */
  createInvite: (opts?: { expiresInMs?: number }) => Promise<CreatedInvite>
  /** the HTTP API's node:http server (tests pin its timeouts) */
  readonly http: HttpServer
  /** every HTTP route, "GET /krill/v1/status" (docs/http-api.md is checked against it) */
  readonly apiRoutes: readonly string[]
  /** addresses other peers can dial, each ending in /p2p/<peer id> */
  addrs: () => string[]
  /** the models this node shares right now ([] while Ollama is unreachable) */
  localModels: () => ModelInfo[]
  /** providers of `model`: announced ones, else a DHT lookup */
  findProviders: (model: string, opts?: FindProvidersOptions) => Promise<ProviderEntry[]>
  /** stops accepting work, finishes or cancels what runs, withdraws, closes everything; safe to call twice */
  stop: () => Promise<void>
}

/** Builds and starts every part of a krill node, in order. On failure, what was built is stopped again. */
export async function startDaemon (config: KrillConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const progress = opts.onProgress ?? ((step: string) => log.info(step))
  // every event goes to the caller (the --json lines) and to the API's live feed
  const sink = fanOut(opts.onEvent)
  // the ready line comes first: what happens while we start is reported right after it
  let ready = false
  const early: DaemonEvent[] = []
  const emit: EventSink = event => { if (ready) sink.send(event); else early.push(event) }
  const startedAt = Date.now()
  // what is built is stopped again when start-up fails, newest first
  const built: Array<() => Promise<void> | void> = []
  const unwind = async (): Promise<void> => {
    for (const stop of built.splice(0).reverse()) {
      try {
        await stop()
      } catch (err: any) {
        log.warn(`stopping after a failed start: ${err?.message ?? err}`)
      }
    }
  }

  try {
    // 1. identity
    const { privateKey, created } = await loadOrCreateIdentity(config.dataDir)
    progress(`${created ? 'created' : 'loaded'} identity in ${config.dataDir}`)

    // 2. swarm: --swarm-key, an invite (--join), the data dir's key, or a new one
    const membership = await resolveMembership({
      dataDir: config.dataDir,
      network: config.network,
      swarmKeyPath: config.swarmKey,
      join: config.join != null ? await decodeInvite(config.join) : undefined,
      selfId: peerIdFromPrivateKey(privateKey).toString()
    })
    progress(membership.source === 'public'
      ? 'on the public network: anyone can connect'
      : membership.source === 'file'
      ? `private swarm of ${membership.swarmKeyPath}`
      : membership.created ? `created this node's own private swarm (${membership.swarmKeyPath})` : `private swarm ${membership.source === 'joined' ? 'joined by invite' : 'of this node'} (${membership.swarmKeyPath})`)

    // 3. policy, before libp2p: a broken policy.json must stop us before we serve anyone
    const policy = new PolicyStore({ dataDir: config.dataDir, privateSwarm: membership.network === 'private' })
    await policy.start()
    built.push(() => { policy.stop() })

    // 4. engine: the local Ollama and the watcher of its models. A public node
    //    without --serve still answers its own API from it; it only shares (announces,
    //    provides, accepts peers' chats) with --serve
    let engine: OllamaEngine | undefined
    let watcher: ModelWatcher | undefined
    if (config.serve || config.network === 'public') {
      engine = new OllamaEngine({ host: config.ollama })
      watcher = new ModelWatcher(engine, { intervalMs: config.modelRefreshMs, share: config.share })
      // start-up progress: the first model list with something to share goes out to the swarm
      const off = watcher.on('change', e => {
        if (e.detail.length === 0 || !config.serve) return
        off()
        progress(`models announced: ${e.detail.map(m => m.name).join(', ')}`)
      })
    }

    // 5. libp2p, with krill's network parts as its services: libp2p starts them
    //    (start, then afterStart) and stops them (beforeStop, then stop)
    let services: DaemonServices | undefined
    // made once libp2p exists (it logs through libp2p's logger); the trimmer asks it before
    let readyStreams: ReadyStreams | undefined
    const servicesNow = (): DaemonServices => {
      if (services == null) throw new Error('libp2p services are used before libp2p exists')
      return services
    }
    // the local Ollama's models this node uses (and, when serving, shares)
    const ownModels = (): ModelInfo[] => watcher?.current ?? []
    const served = (name: string, digest?: string): ModelInfo | undefined =>
      ownModels().find(m => sameModel(m.name, name) && (digest == null || m.digest === digest))
    const metrics = createMetricsRegistry()
    const node = await createKrillNode<DaemonServices>({
      privateKey,
      metrics: libp2pMetrics(metrics),
      logger: componentLogger(),
      gossipScoring: { scoreParams: announceScoreParams(), scoreThresholds: ANNOUNCE_SCORE_THRESHOLDS },
      listen: config.listen,
      announce: config.announce,
      // with the addresses remembered from the invite we joined with
      bootstrap: [...new Set([...config.bootstrap, ...membership.bootstrap])],
      mdns: config.mdns,
      dhtMode: config.dhtMode,
      maxConnections: config.maxConnections,
      // a connection with a chat on it is kept, and pinged less
      busyProtocols: [CHAT_PROTOCOL],
      // ...but not for a chat stream that waits for its request, on either end
      idleStream: stream => readyStreams?.holds(stream) === true || (services?.chat as ChatServer | undefined)?.waitsForRequest(stream) === true,
      maxPendingConnections: config.maxPendingConnections,
      inboundConnectionsPerSecond: config.inboundConnectionsPerSecond,
      relay: config.relay,
      autoRelay: config.autoRelay,
      relayLimits: config.relayLimits,
      upnp: config.upnp,
      autonat: config.autonat,
      holePunch: config.holePunch,
      swarmKey: membership.swarmKeyPath,
      datastorePath: join(config.dataDir, 'datastore')
    }, {
      // before the chat server: it signs the receipts of what we serve
      receipts: receipts({
        skewMs: config.ledger.skewMs,
        retentionMs: config.ledger.retentionDays * 24 * 3_600_000,
        halfLifeMs: config.fairShare.halfLifeMs
      }),
      peerDialer: peerDialer({
        targetConnections: dialTarget(config.maxConnections),
        // on the public network the peer store also holds public-DHT peers met by
        // the rendezvous walk: a restart redials only the krill peers among them
        ...(config.network === 'public' ? { redial: (protocols: string[]) => speaksKrill(protocols) } : {})
      }),
      // newcomers get the announcements we hold at once; junk in an answer costs
      // its sender gossipsub standing (a behaviour penalty, P7), as on the topic
      sync: syncExchange({
        store: () => servicesNow().discovery.announcer?.syncStore,
        // a large swarm: only newcomers ask (every reconnect asking would cost more than gossip)
        everyPeer: () => servicesNow().discovery.announcer?.isSharded !== true,
        penalize: peer => { pubsubScore()?.addPenalty(peer.toString(), 1, ScorePenalty.BrokenPromise) }
      }),
      ...(membership.swarmKey != null ? { invite: inviteService({ swarmKey: membership.swarmKey }) } : {}),
      discovery: discovery({
        ...opts.discovery,
        announcer: { largeSwarmProviders: config.largeSwarmProviders, largeTtlMs: config.announceLargeTtlMs, ...opts.discovery?.announcer },
        ttlMs: config.announceTtlMs,
        // nothing is announced or provided unless this node serves
        watcher: config.serve ? watcher : undefined,
        ollamaUrl: config.ollama,
        capacity: () => {
          const chat = servicesNow().chat
          return chat != null ? serveLoad(chat) : { slots: config.slots, active: 0, queued: 0 }
        },
        emit
      }),
      ...(engine != null
        ? {
            chat: chatServer({
              engine,
              slots: config.slots,
              maxQueue: config.maxQueue,
              limits: config.limits,
              // on shutdown running chats get a moment to finish; the rest are cancelled
              drainGraceMs: 5_000,
              acceptPeers: config.serve,
              authorize: policy.authorizeServe,
              isServedModel: (name, digest) => served(name, digest) != null,
              resolveDigest: name => served(name)?.digest,
              onEvent: event => { onChatServerEvent(event, servicesNow().discovery, emit) },
              receipts: { issue: async facts => await servicesNow().receipts.issue(facts) },
              // fair share: a busy queue is ordered by what each peer gave us against what it took
              standing: peer => servicesNow().receipts.score(peer),
              agingMs: config.fairShare.agingMs
            }),
            embed: embedServer({
              engine,
              // the chat server's slots and queue: one engine, one waiting line
              queue: () => (servicesNow().chat as ChatServer).slotQueue,
              limits: config.limits,
              authorize: policy.authorizeServe,
              isServedModel: (name, digest) => served(name, digest) != null,
              resolveDigest: name => served(name)?.digest,
              acceptPeers: config.serve,
              receipts: { issue: async facts => await servicesNow().receipts.issue(facts) },
              onEvent: event => { onEmbedServerEvent(event, servicesNow().discovery, emit) }
            }),
            show: showServer({
              engine,
              acceptPeers: config.serve,
              limits: config.limits,
              authorize: policy.authorizeServe,
              isServedModel: (name, digest) => served(name, digest) != null
            })
          }
        : {}),
      // the public network: meet other public nodes through the public IPFS DHT
      ...(config.network === 'public' ? { rendezvous: rendezvous({ peers: config.rendezvous }) } : {})
      // libp2p's Components type does not know the services listed before one
      // (pubsub, dht); createLibp2p hands them over all the same, in this order
    } as unknown as ServiceFactoryMap<DaemonServices>)
    built.push(async () => { await node.stop() })
    const libp2p = node.libp2p
    services = libp2p.services
    const invite = (): InviteService => {
      if (libp2p.services.invite == null) throw new NotInSwarmError('this node is on the public network: there is no private swarm to invite to')
      return libp2p.services.invite
    }
    // gossipsub's scoring is not in its public interface type
    const pubsubScore = (): { addPenalty: (id: string, penalty: number, label: ScorePenalty) => void } | undefined =>
      (libp2p.services as unknown as { pubsub?: { score?: { addPenalty: (id: string, penalty: number, label: ScorePenalty) => void } } }).pubsub?.score
    const onJoin = (evt: CustomEvent<PeerId>): void => { emit({ event: 'peer:joined', peerId: evt.detail.toString() }) }
    const onLeave = (evt: CustomEvent<PeerId>): void => { emit({ event: 'peer:left', peerId: evt.detail.toString() }) }
    const first = (): void => {
      progress('connected to the first peer')
      libp2p.removeEventListener('peer:connect', first)
    }
    libp2p.addEventListener('peer:connect', onJoin)
    libp2p.addEventListener('peer:disconnect', onLeave)
    libp2p.addEventListener('peer:connect', first)
    const detach = (): void => {
      libp2p.removeEventListener('peer:connect', onJoin)
      libp2p.removeEventListener('peer:disconnect', onLeave)
      libp2p.removeEventListener('peer:connect', first)
    }
    built.push(detach)
    try {
      await libp2p.start()
    } catch (err: any) {
      throw explainListenError(err, config.listen)
    }
    progress(`peer id ${libp2p.peerId.toString()}`)
    progress(`listening on ${libp2p.getMultiaddrs().map(String).join(', ') || '(no addresses)'}`)
    if (config.bootstrap.length > 0) progress(`dialing ${config.bootstrap.length} bootstrap peer(s)`)

    // discovery runs the watcher of a serving node; a node that only uses its
    // Ollama (public, no --serve) runs it here
    const ownWatcher = !config.serve ? watcher : undefined
    ownWatcher?.start()
    built.push(() => { ownWatcher?.stop() })

    const { discovery: disc, chat, embed, receipts: book } = libp2p.services
    const rtt = new RoundTripTimes({
      getConnections: peer => libp2p.getConnections(peer),
      ping: async (peer, signal) => await libp2p.services.ping.ping(peer, { signal }),
      // remembered per id: ranking asks for every candidate on every chat
      peerIdFromString: parsePeerId
    })
    readyStreams = new ReadyStreams({ logger: libp2p.logger })
    const parts: Parts = { config, node, policy, discovery: disc, engine, chat, embed, rtt, receipts: book, emit, ownModels, membership, readyStreams }

    // 6. router: the local engine through the chat server's slots and queue (the
    //    same ones peers' chats take), ranked by its real load
    const localEngine = engine != null && chat != null ? queuedEngine(engine, chat, embed, disc) : undefined
    const router = bindRouter(parts, () => {
      const models = ownModels()
      return localEngine != null && models.length > 0 ? { engine: localEngine, models, capacity: serveLoad(chat) } : undefined
    })

    // 7. HTTP API, with the web console: its request log hears the router's reports
    const requestLog = new RequestLog({ selfId: libp2p.peerId.toString() })
    const offRequests = sink.subscribe(event => { if (event.event === 'request:routed') requestLog.record(event) })
    built.push(offRequests)
    // POST /krill/v1/shutdown stops the daemon once it exists
    let stopSelf: () => void = () => {}
    const api: ApiServer = await createApiServer({
      host: config.api.host,
      apiToken: config.apiToken,
      backend: bindApiBackend(parts, router),
      control: bindControl(parts, router, startedAt, () => { stopSelf() }),
      metrics: bindMetrics(parts, router, metrics),
      policy,
      events: { subscribe: listener => sink.subscribe(listener) },
      requests: { running: () => router.running(), recent: () => requestLog.recent() },
      uiAssetsDir: uiAssetsDir(),
      ledger: bindLedger(parts),
      invite: { createInvite: async o => await invite().create(o) }
    })
    built.push(async () => { await api.close() })
    await api.listen(config.api)
    progress(`API on ${api.url}`)

    /**
     * Shutdown order, as code: our API's chats (router) and the chats we serve for
     * peers (chat server) finish or are cancelled side by side, while libp2p still
     * carries them; then the API closes; then libp2p stops its services
     * (beforeStop: discovery withdraws our announcement; stop: every listener and
     * timer detached) and itself, then the datastore; the policy file watcher last.
     */
    const shutdown = async (): Promise<void> => {
      emit({ event: 'stopping' })
      await Promise.allSettled([router.drain({ graceMs: 5_000 }), chat?.beforeStop(), embed?.beforeStop()])
      readyStreams.stop()
      await api.close()
      offRequests()
      await node.stop()
      ownWatcher?.stop()
      detach()
      policy.stop()
    }

    let stopping: Promise<void> | undefined
    const daemon: Daemon = {
      config,
      startedAt,
      peerId: libp2p.peerId,
      libp2p,
      apiUrl: api.url,
      rtt,
      router,
      readyStreams,
      providers: disc.providers,
      chatServer: config.serve ? chat : undefined,
      get announcementStats () { return disc.announcer?.stats },
      get dhtMode () { return node.dhtMode() },
      get nat () { return node.nat.status() },
      metrics,
      network: membership.network,
      membership,
      createInvite: async o => await invite().create(o),
      http: api.app.server,
      apiRoutes: [...api.routes],
      addrs: () => libp2p.getMultiaddrs().map(a => a.toString()),
      localModels: () => disc.localModels(),
      findProviders: async (model, o) => await disc.findProviders(model, o),
      stop: async () => {
        stopping ??= shutdown()
        await stopping
      }
    }
    stopSelf = opts.onStopRequest ?? (() => { void daemon.stop() })
    sink.send({ event: 'ready', peerId: libp2p.peerId.toString(), addrs: daemon.addrs(), api: api.url, network: membership.network })
    ready = true
    for (const event of early.splice(0)) sink.send(event)
    return Object.freeze(daemon)
  } catch (err) {
    await unwind()
    throw err
  }
}

/** The daemon's events to the caller's sink and to every subscriber (the API's live feed); a failing subscriber is logged, never fatal. */
function fanOut (first: EventSink | undefined): { send: EventSink, subscribe: (listener: EventSink) => () => void } {
  const listeners = new Set<EventSink>()
  return {
    send: event => {
      first?.(event)
      for (const listener of listeners) {
        try {
          listener(event)
        } catch (err: any) {
          log.warn(`an event subscriber failed on ${event.event}: ${err?.message ?? err}`)
        }
      }
    },
    subscribe: listener => {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    }
  }
}

/** krill's services on the libp2p node (besides libp2p's own: identify, ping, dht, pubsub, …) */
type DaemonServices = {
  /** receipts, the ledger and each peer's standing */
  receipts: ReceiptBook
  peerDialer: PeerDialer
  discovery: Discovery
  /** /krill/sync/1.0.0 */
  sync: SyncExchange
  /** writes invite tokens for our private swarm; absent on the public network */
  invite?: InviteService
  /** the public network's meeting point on the public IPFS DHT (--public) */
  rendezvous?: Rendezvous
  /** present when this node uses its Ollama: it serves, or it is a public node (its own API only) */
  chat?: ChatServer
  /** /krill/embed/1.0.0, on the chat server's slots; present with the chat server (peers only when serving) */
  embed?: EmbedServer
  /** /krill/show/1.0.0; present with the chat server (peers only when serving) */
  show?: ShowServer
}

/**
 * The local engine as the router sees it: every chat waits for one of the chat
 * server's slots like a peer's chat does, and the load we announce follows it.
 */
function queuedEngine (engine: Engine & EmbedEngine, chat: ChatServer, embed: EmbedServer | undefined, disc: Discovery): Engine & EmbedEngine {
  return {
    // local embeddings take the same slots as the peers' (the embed server's queue)
    async embed (request, signal) {
      if (embed == null) return await engine.embed(request, signal)
      disc.capacityChanged()
      try {
        return await embed.embedLocal(request, signal)
      } finally {
        disc.capacityChanged()
      }
    },
    listModels: async signal => await engine.listModels(signal),
    isHealthy: async signal => await engine.isHealthy(signal),
    async * chat (request, signal) {
      disc.capacityChanged()
      try {
        yield * chat.chatLocal(request, signal)
      } finally {
        disc.capacityChanged()
      }
    }
  }
}

function onEmbedServerEvent (event: EmbedServerEvent, discovery: Discovery, emit: EventSink): void {
  discovery.capacityChanged()
  if (event.type === 'done') {
    emit({ event: 'request:served', model: event.model, peerId: event.peer, tokens: event.promptTokens, durationMs: event.durationMs, outcome: 'done' })
  } else {
    emit({ event: 'request:served', model: event.model ?? '', peerId: event.peer, tokens: 0, durationMs: 0, outcome: event.type === 'error' ? `error ${event.code}` : 'cancelled' })
  }
}

function onChatServerEvent (event: ChatServerEvent, discovery: Discovery, emit: EventSink): void {
  // load changed: tell the swarm (the announcer throttles this)
  discovery.capacityChanged()
  if (event.type === 'done') {
    emit({ event: 'request:served', model: event.model, peerId: event.peer, tokens: event.usage.completionTokens, durationMs: event.durationMs, outcome: 'done' })
  } else if (event.type === 'error' || event.type === 'cancelled') {
    emit({ event: 'request:served', model: event.model ?? '', peerId: event.peer, tokens: 0, durationMs: 0, outcome: event.type === 'error' ? `error ${event.code}` : 'cancelled' })
  }
}

function explainListenError (err: any, listen: string[]): Error {
  const text = String(err?.message ?? err)
  if (/EADDRINUSE|address already in use/i.test(text) || err?.code === 'EADDRINUSE') {
    return new AddressInUseError(`a listen address is already in use (${listen.join(', ')}): is another krill daemon running? Stop it or pass --listen with another port`, { cause: err })
  }
  if (/EADDRNOTAVAIL|EACCES/i.test(text)) {
    return new AddressUnavailableError(`cannot listen on ${listen.join(', ')}: ${text}; pass --listen with an address of this machine`, { cause: err })
  }
  return err
}

export type { DaemonEvent, KrillNode }
