/**
 * The root's glue: each function binds the ports one part declares to the other
 * parts that fulfil them. Nothing here has state of its own.
 */
import type { Membership } from '../network/membership.js'
import { Ollama } from 'ollama'
import { mergeCatalog, type ApiBackend } from '../api/backend.js'
import type { ControlPort } from '../api/control.js'
import type { LedgerPort } from '../api/ledger-routes.js'
import type { MetricsPort } from '../api/metrics.js'
import type { Discovery } from '../discovery/discovery.js'
import type { ProviderDirectory, ProviderEntry } from '../discovery/types.js'
import type { OllamaEngine } from '../engine/ollama-engine.js'
import type { ModelInfo } from '../engine/types.js'
import type { EventSink } from '../events.js'
import type { KrillConfig } from '../node/config.js'
import type { KrillNode } from '../node/create-node.js'
import type { PolicyStore } from '../policy/policy-store.js'
import { requestChat } from '../protocol/chat-client.js'
import { budgetRefusal } from '../receipts/budget.js'
import type { ReceiptBook } from '../receipts/receipt-book.js'
import type { ChatServer } from '../protocol/chat-server.js'
import { requestEmbed } from '../protocol/embed-client.js'
import type { EmbedServer } from '../protocol/embed-server.js'
import { requestShow } from '../protocol/show-exchange.js'
import { ShowLookup } from '../router/show-lookup.js'
import type { RoundTripTimes } from '../peers/rtt.js'
import { parsePeerId } from '../peers/parse-peer-id.js'
import { Router, type LocalSide, type RouterOptions } from '../router/router.js'
import type { Capacity } from '../discovery/types.js'
import type { ReadyStreams } from '../protocol/ready-streams.js'

export interface Parts {
  config: KrillConfig
  node: KrillNode
  policy: PolicyStore
  discovery: Discovery
  /** the local Ollama; undefined with --no-serve */
  engine?: OllamaEngine
  /** the provider side of the chat protocol; undefined with --no-serve */
  chat?: ChatServer
  /** the provider side of the embedding protocol; undefined with --no-serve */
  embed?: EmbedServer
  /** round-trip times per peer (src/peers/rtt.ts) */
  rtt: RoundTripTimes
  /** receipts, the ledger, standing and today's budget */
  receipts: ReceiptBook
  emit: EventSink
  /** the local Ollama's models this node uses for its own API (shared too when it serves) */
  ownModels: () => ModelInfo[]
  /** which swarm this node is in */
  membership: Membership
  /** chat streams negotiated ahead of the next chat to a provider in use */
  readyStreams: ReadyStreams
}

/** this node's load as a provider: the chat server's slots and queue (none when not serving) */
export function serveLoad (chat: ChatServer | undefined): Capacity {
  const stats = chat?.stats
  return { slots: stats?.slots ?? 0, active: stats?.active ?? 0, queued: stats?.queued ?? 0 }
}

/**
 * The router, bound to discovery (provider table, DHT lookups), the local engine
 * and its real load, the chat protocol client for remote peers, and the node's
 * round-trip times (src/peers/rtt.ts) for ranking. The consume side of the peer policy applies here:
 * providers it excludes are invisible to the router (never asked, never sent a
 * prompt), whether they come from announcements or from the DHT.
 */
export function bindRouter (parts: Parts, local: () => LocalSide | undefined, opts: RouterOptions = {}): Router {
  const { node, policy, discovery } = parts
  const libp2p = node.libp2p
  const allowed = (e: ProviderEntry): boolean => policy.mayConsume(e.peerId)
  const table = discovery.providers
  const providers: ProviderDirectory = {
    providersFor: (model, digest) => {
      // a model we route to: in a large swarm, listen to its shard from now on
      discovery.interest(model)
      return table.providersFor(model, digest).filter(allowed)
    },
    catalog: () => table.catalog(),
    all: () => table.all().filter(allowed)
  }
  return new Router({
    selfId: libp2p.peerId.toString(),
    local,
    providers,
    findProviders: async (model, signal) => (await discovery.findProviders(model, { signal })).filter(allowed),
    // every answer from a peer ends with its receipt, checked and countersigned
    remoteChat: (peerId, request, signal) => requestChat(libp2p, parsePeerId(peerId), request, { signal, receipts: parts.receipts, ready: parts.readyStreams }),
    remoteEmbed: async (peerId, request, signal) => await requestEmbed(libp2p, parsePeerId(peerId), request, { signal, receipts: parts.receipts }),
    // a pinned peer we are connected to, or that announced anything, is known
    knowsPeer: peer => libp2p.getConnections().some(c => c.remotePeer.toString() === peer) || table.all().some(e => e.peerId === peer),
    latencyMs: peer => parts.rtt.get(peer),
    // a provider we could not dial is gone for now: not a candidate until it announces again
    unreachable: peer => { discovery.unreachable(peer) },
    onServed: info => {
      parts.emit({ event: 'request:routed', model: info.model, peerId: info.peerId, tokens: info.tokens, durationMs: info.durationMs, outcome: info.outcome, ttftMs: info.firstTokenMs ?? null })
    },
    budget: {
      // no cap, nothing to count (consumedToday builds dates): the usual case, every chat
      refusal: () => parts.config.budget.tokensPerDay == null ? undefined : budgetRefusal(parts.config.budget, parts.receipts.consumedToday()),
      defaultMaxTokens: parts.config.budget.defaultMaxTokens
    }
  }, { localSlots: parts.config.slots, ...opts })
}

/**
 * The OpenAI and Ollama routes' backend: chats and embeddings go through the
 * router, the catalog is our shared models plus the provider table's, /api/show
 * asks the local Ollama or a provider (/krill/show/1.0.0, within the consume
 * policy), /api/ps the local Ollama.
 */
export function bindApiBackend (parts: Parts, router: Router): ApiBackend {
  const { config, discovery, policy, node, engine } = parts
  const libp2p = node.libp2p
  const ollama = (signal: AbortSignal): Ollama => new Ollama({
    host: config.ollama,
    fetch: async (input, init) => await fetch(input, { ...init, signal: init?.signal != null ? AbortSignal.any([init.signal, signal]) : signal })
  })
  const table = discovery.providers
  const allowed = (e: ProviderEntry): boolean => policy.mayConsume(e.peerId)
  const shows = new ShowLookup({
    selfId: libp2p.peerId.toString(),
    providers: {
      providersFor: (model, digest) => table.providersFor(model, digest).filter(allowed),
      catalog: () => table.catalog(),
      all: () => table.all().filter(allowed)
    },
    local: () => engine != null ? { models: parts.ownModels(), show: async (name, signal) => await engine.show(name, signal) } : undefined,
    remoteShow: async (peerId, model, digest, signal) => await requestShow(libp2p, parsePeerId(peerId), model, { digest, signal })
  })
  return {
    chat: (request, opts) => router.chat(request, opts),
    embed: async (request, opts) => await router.embed(request, opts),
    models: () => mergeCatalog(parts.ownModels(), table.catalog()),
    running: () => router.running(),
    show: async (name, opts) => await shows.show(name, opts),
    psLocal: async signal => engine != null ? (await ollama(signal).ps()).models as unknown as Array<Record<string, unknown>> : []
  }
}

export function bindControl (parts: Parts, router: Router, startedAt: number, requestStop: () => void): ControlPort {
  const { config, node, discovery, engine } = parts
  const libp2p = node.libp2p
  return {
    libp2p,
    rtt: parts.rtt,
    startedAt,
    addrs: () => libp2p.getMultiaddrs().map(a => a.toString()),
    ollama: {
      url: config.ollama,
      serving: config.serve,
      healthy: engine != null ? async signal => await engine.isHealthy(signal) : undefined
    },
    localModels: () => discovery.localModels(),
    providers: discovery.providers,
    findProviders: async (model, opts) => await discovery.findProviders(model, opts),
    serveLoad: () => serveLoad(parts.chat),
    routing: () => router.running().length,
    nat: () => node.nat.status(),
    dht: () => ({ mode: node.dhtMode(), configured: config.dhtMode }),
    tokens: () => ({ served: { ...parts.receipts.counters.served }, consumed: { ...parts.receipts.counters.consumed } }),
    requestStop,
    network: () => ({ mode: parts.membership.network, swarm: parts.membership.source })
  }
}

export function bindMetrics (parts: Parts, router: Router, registry: MetricsPort['registry']): MetricsPort {
  return {
    registry,
    router,
    serving: () => parts.chat?.stats,
    announcements: () => parts.discovery.announcer?.stats,
    providerEntries: () => parts.discovery.providers.all().length,
    policy: () => parts.policy.stats,
    receipts: () => parts.receipts.counters,
    embed: { routed: () => router.embedStats, served: () => parts.embed?.counters }
  }
}

/** GET /krill/v1/ledger and /balance, from the receipt book; today's count against budget.tokensPerDay */
export function bindLedger (parts: Parts): LedgerPort {
  const book = parts.receipts
  return {
    entries: async opts => await book.entries(opts),
    balance: () => book.balance(),
    today: () => {
      const { tokens, resetsAt } = book.consumedToday()
      return { tokens, cap: parts.config.budget.tokensPerDay ?? null, resetsAt: resetsAt.toISOString() }
    }
  }
}
