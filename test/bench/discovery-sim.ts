/**
 * Discovery traffic per node at 1k / 10k / 100k nodes, the one-topic design
 * (krill/models/1, what every krill did before shards) against the sharded one
 * (krill/models/2/<shard>), computed from the real encoded sizes of announcements
 * (src/discovery/announcement.ts, wrapped in gossipsub's own RPC codec exactly as
 * they go on the wire) and gossipsub's parameters. docs/benchmarks.md states the
 * model and its assumptions; test/integration/discovery-traffic.test.ts checks it
 * against a real 10-node swarm.
 *
 * Per node and second, for each topic the node subscribes to:
 *   messages/s on the topic × (copies × message bytes + control bytes per message)
 * plus sync answers received, spread over a node's session.
 * - copies: every mesh peer may forward a message once; a node receives
 *   min(topic peers it is connected to, MESH_DEGREE) copies (the first one and
 *   duplicates). Real 10-node swarms measured 6.5–6.7 (docs/benchmarks.md).
 * - control: IHAVE: each holder advertises a message id for HISTORY_GOSSIP
 *   heartbeats to max(D_LAZY, 25 % of its non-mesh topic peers) of them (never more
 *   than it has), so a node receives that many ids per message; IDONTWANT (gossipsub
 *   v1.2): one id from every mesh peer for data ≥ 512 bytes. Ids are from + seqno
 *   (44 bytes) + 2 bytes of framing. GRAFT/PRUNE/IWANT are rare in a steady mesh
 *   and left out.
 */
import { RPC } from '@libp2p/gossipsub/message'
import { encodeAnnouncement } from '../../src/discovery/announcement.js'
import { shardTopic, SHARD_COUNT } from '../../src/discovery/shards.js'
import { SyncResponse } from '../../src/protocol/generated/sync.js'
import type { ModelInfo } from '../../src/engine/types.js'
import { MAX_PROVIDERS_PER_ANSWER } from '../../src/node/dht-provider-cap.js'
import { dhtSizes, K, lookupStats, QUERY_SELF_S, selfQueryBytes, TABLE_REFRESH_S, TYPICAL_ADDRS, type LookupShape } from './dht-sim.js'

export const MESH_DEGREE = 8
export const D_LAZY = 6
export const HISTORY_GOSSIP = 3
export const IDONTWANT_MIN_DATA = 512
/** StrictSign message id: the author's protobuf public key (36 bytes for Ed25519) + seqno (8), + framing */
export const MESSAGE_ID_BYTES = 44 + 2

/** a node's DHT bytes per second, received (mean over nodes: in a closed network bytes received = bytes sent) */
export interface DhtShare {
  /** kad-dht's own: its self-query every 5 min (and its routing-table refresh, when counted) */
  maintenance: number
  /** providers' provide lookups and ADD_PROVIDER messages */
  provide: number
  /** krill's provider lookups (a shard joined; a used model now and then) */
  lookups: number
  /** peers one lookup asks at this size (dht-sim.ts) */
  askedPerLookup: number
}

export type Popularity = 'zipf' | 'uniform' | 'same' | 'longtail'

export interface SimParams {
  nodes: number
  design: 'one-topic' | 'sharded'
  /** share of nodes that serve (default 0.2) */
  providerShare?: number
  modelsPerProvider?: number
  /** how the providers' models are spread: zipf (s = 1) or uniform over `distinctModels`, all the same 3, or all distinct */
  popularity?: Popularity
  distinctModels?: number
  /** how long a node stays, on average (default 4 h; unknown for a real network) */
  sessionHours?: number
  /** models a node uses besides its own (default 2) */
  usedModels?: number
  /** connections a node keeps (default 50) */
  connections?: number
  /** one-topic TTL (announceTtlMs, default 60 s); sharded TTL (default 1 h) */
  ttlMs?: number
  quota?: number
  /** sync answers a node asks for: one-topic every new connection; sharded its first peers (default 8) */
  syncAsks?: number
  /** model changes per provider and day (default 1) */
  modelChangesPerDay?: number
  /** the addresses each DHT peer record carries (default dht-sim's TYPICAL_ADDRS: TCP and QUIC on IPv4, TCP on IPv6, a relay circuit) */
  dhtAddrs?: Uint8Array[]
  /** provides of each key per session: the first, krill's repeats while the routing table doubles at start-up, kad-dht's own after 24 h (default 3 + session / 24 h) */
  providesPerSession?: number
  /** kad-dht's query shape (default its own: alpha 10, 20 disjoint paths; answers name at most 20 providers, as krill's DHT does) */
  dhtShape?: LookupShape
  /** count kad-dht's routing-table refresh (default false: kad-dht 16.4.5 never starts it, dht-sim.ts) */
  dhtTableRefresh?: boolean
  /** its period in s (default 300; kad-dht 16 does not let it be set) */
  dhtRefreshS?: number
  /** sharded: DHT lookups per hour of each model a node uses, besides the one when it subscribes to its shard (discovery.ts: at most one per 10 min while chatting; default 1) */
  usedLookupsPerHour?: number
}

export interface SimResult {
  params: Required<SimParams>
  /** per node and second */
  gossipBytes: number
  syncBytes: number
  /** the DHT (all three parts below) */
  dhtBytes: number
  dht: DhtShare
  /** gossip + sync + DHT */
  totalBytes: number
  /** new messages a node receives per second */
  messagesPerSecond: number
  /** the sizes the figures were computed from */
  messageBytes: number
  dataBytes: number
  syncEntryBytes: number
}

/** Three models as Ollama lists them (the bench stand-in's kinds): realistic field sizes. */
export const SIM_MODELS: ModelInfo[] = [
  { name: 'llama3.2:1b', digest: 'a'.repeat(64), size: 1_321_098_329, family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', contextLength: 131_072, capabilities: ['completion', 'tools'], modifiedAt: '2026-11-01T10:00:00.000Z' },
  { name: 'qwen3:8b', digest: 'b'.repeat(64), size: 5_225_387_923, family: 'qwen3', parameterSize: '8.2B', quantization: 'Q4_K_M', contextLength: 40_960, capabilities: ['completion', 'tools', 'thinking'], modifiedAt: '2026-11-01T10:00:00.000Z' },
  { name: 'gemma3:4b', digest: 'c'.repeat(64), size: 3_338_801_804, family: 'gemma3', parameterSize: '4.3B', quantization: 'Q4_K_M', contextLength: 131_072, capabilities: ['completion', 'vision'], modifiedAt: '2026-11-01T10:00:00.000Z' }
]

/** The gossipsub message (and its RPC frame) of a real announcement, as sent. */
export function wireSizes (models: ModelInfo[], topic: string, ttlMs: number): { data: number, message: number, rpc: number, syncEntry: number } {
  const now = Date.now()
  const { bytes } = encodeAnnouncement({ models, capacity: { slots: 4, active: 1, queued: 0 }, version: 'krill/0.1.0', seq: now, timestampMs: now, ttlMs })
  const from = new Uint8Array(38)
  const seqno = new Uint8Array(8)
  const signature = new Uint8Array(64)
  const msg = { from, data: bytes as Uint8Array<ArrayBuffer>, seqno, topic, signature }
  const rpc = RPC.encode({ subscriptions: [], messages: [msg] }).byteLength
  const entry = SyncResponse.encode({ entries: [{ from, data: msg.data, seqno, signature, key: new Uint8Array(0), remainingMs: ttlMs, shard: 1 }] }).byteLength
  return { data: bytes.byteLength, message: RPC.Message.encode(msg).byteLength, rpc: rpc + 2, syncEntry: entry }
}

function harmonic (n: number): number {
  let h = 0
  for (let i = 1; i <= n; i++) h += 1 / i
  return h
}

/** providers of each model (index 0 the most popular) */
function providersPerModel (slots: number, p: Required<SimParams>): number[] {
  switch (p.popularity) {
    case 'same': return Array.from({ length: p.modelsPerProvider }, () => slots / p.modelsPerProvider)
    case 'longtail': return Array.from({ length: Math.max(1, Math.round(slots)) }, () => 1)
    case 'uniform': return Array.from({ length: p.distinctModels }, () => slots / p.distinctModels)
    case 'zipf': {
      const h = harmonic(p.distinctModels)
      return Array.from({ length: p.distinctModels }, (_, i) => slots / (i + 1) / h)
    }
  }
}

/** control bytes a node receives per message of a topic it shares with `topicPeers` connected peers */
function controlPerMessage (topicPeers: number, dataBytes: number): number {
  const mesh = Math.min(topicPeers, MESH_DEGREE)
  const nonMesh = Math.max(0, topicPeers - mesh)
  const lazy = Math.min(nonMesh, Math.max(D_LAZY, 0.25 * nonMesh))
  const ihave = HISTORY_GOSSIP * lazy * MESSAGE_ID_BYTES
  const idontwant = dataBytes >= IDONTWANT_MIN_DATA ? mesh * MESSAGE_ID_BYTES : 0
  return ihave + idontwant
}

export function simulate (input: SimParams): SimResult {
  const p: Required<SimParams> = {
    providerShare: 0.2,
    modelsPerProvider: 3,
    popularity: 'zipf',
    distinctModels: 1000,
    sessionHours: 4,
    usedModels: 2,
    connections: 50,
    ttlMs: input.design === 'one-topic' ? 60_000 : 3_600_000,
    quota: 8,
    syncAsks: 8,
    modelChangesPerDay: 1,
    dhtAddrs: TYPICAL_ADDRS,
    providesPerSession: 3 + (input.sessionHours ?? 4) / 24,
    usedLookupsPerHour: 1,
    dhtShape: { maxProvidersPerAnswer: MAX_PROVIDERS_PER_ANSWER },
    dhtTableRefresh: false,
    dhtRefreshS: TABLE_REFRESH_S,
    ...input
  }
  const session = p.sessionHours * 3600
  const providers = p.nodes * p.providerShare
  const perProviderChurn = 2 / session + p.modelChangesPerDay / 86_400
  if (p.design === 'one-topic') {
    const sizes = wireSizes(SIM_MODELS.slice(0, p.modelsPerProvider), 'krill/models/1', p.ttlMs)
    // every provider: a refresh each ttl/3, its join and its goodbye, model changes
    const rate = providers * (3_000 / p.ttlMs + perProviderChurn)
    const topicPeers = Math.min(p.nodes - 1, p.connections)
    const copies = Math.min(topicPeers, MESH_DEGREE)
    const gossip = rate * (copies * sizes.rpc + controlPerMessage(topicPeers, sizes.data))
    // every new connection asks for everything held (at most 1024 entries)
    const held = Math.min(providers, 1024)
    const newConnections = topicPeers * 2 / session
    const sync = newConnections * held * sizes.syncEntry
    // the one-topic design looks nothing up while gossip lists the model
    const dht = dhtShare(p, [], 0, 0)
    return { params: p, gossipBytes: gossip, syncBytes: sync, dhtBytes: dhtTotal(dht), dht, totalBytes: gossip + sync + dhtTotal(dht), messagesPerSecond: rate * (p.nodes - 1) / p.nodes, messageBytes: sizes.rpc, dataBytes: sizes.data, syncEntryBytes: sizes.syncEntry }
  }
  // sharded: one message per shard a provider serves in, one model each (almost always)
  const sizes = wireSizes(SIM_MODELS.slice(0, 1), shardTopic(1), p.ttlMs)
  const counts = providersPerModel(providers * p.modelsPerProvider, p)
  const announcers = counts.map(n => Math.min(n, p.quota))
  const modelsPerShard = counts.length / SHARD_COUNT
  const meanAnnouncers = announcers.reduce((a, b) => a + b, 0) / counts.length
  // the shard of a model a node serves or uses: that model's announcers plus the
  // other models that happen to share its shard
  const popularityWeight = counts.reduce((a, b) => a + b, 0)
  const expectedOwn = counts.reduce((sum, n, i) => sum + (n / popularityWeight) * announcers[i], 0)
  const perShard = expectedOwn + Math.max(0, modelsPerShard - 1) * meanAnnouncers
  const subscribedShards = p.providerShare * p.modelsPerProvider + p.usedModels
  // per announcer: a refresh each ttl/3, its join, its goodbye, a quiet provider filling the vacancy
  const perAnnouncer = 3_000 / p.ttlMs + 1.5 * perProviderChurn
  const rate = subscribedShards * perShard * perAnnouncer
  // who else listens to the shard of a model m: nodes serving m, nodes using m
  // (chosen by popularity), and those of the other models in the shard
  const share = (i: number): number => Math.min(1, p.providerShare * counts[i] / providers + p.usedModels * counts[i] / popularityWeight)
  const meanShare = counts.reduce((sum, _n, i) => sum + share(i), 0) / counts.length
  const subscribers = counts.reduce((sum, n, i) => sum + (n / popularityWeight) * p.nodes * Math.min(1, share(i) + Math.max(0, modelsPerShard - 1) * meanShare), 0)
  // the peers of the shard a node is connected to: those it dialed when it
  // subscribed (6) and those that dialed it, or its random connections' share
  const topicPeers = Math.max(1, Math.min(subscribers - 1, Math.max(12, p.connections * subscribers / p.nodes)))
  const copies = Math.min(topicPeers, MESH_DEGREE)
  const gossip = rate * (copies * sizes.rpc + controlPerMessage(topicPeers, sizes.data))
  // only a newcomer asks: its first peers' answers, held = their shards' records
  const held = Math.min(1024, perShard * subscribedShards)
  const sync = p.syncAsks * held * sizes.syncEntry / session
  // a provider lookup when a node joins each shard it listens to, and now and then for a model it uses
  // (discovery.ts looks a used model up in the background only once its quota is full: below it nobody is quiet)
  const dht = dhtShare(p, counts, subscribedShards, p.usedModels * p.usedLookupsPerHour * p.sessionHours)
  return { params: p, gossipBytes: gossip, syncBytes: sync, dhtBytes: dhtTotal(dht), dht, totalBytes: gossip + sync + dhtTotal(dht), messagesPerSecond: rate, messageBytes: sizes.rpc, dataBytes: sizes.data, syncEntryBytes: sizes.syncEntry }
}

function dhtTotal (d: DhtShare): number {
  return d.maintenance + d.provide + d.lookups
}

/**
 * A node's DHT bytes per second (dht-sim.ts: lookups emulated on kad-dht's
 * algorithm, messages in its codec), every node a DHT server. `counts`: providers
 * of each model (for the size of provider answers); `lookupsPerSession`: krill's
 * provider lookups per node and session, each of a model chosen by popularity.
 */
function dhtShare (p: Required<SimParams>, counts: number[], joinLookupsPerSession: number, usedLookupsPerSession: number): DhtShare {
  const session = p.sessionHours * 3600
  const stats = lookupStats(p.nodes, p.dhtShape)
  // an answer names the asker's K closest, neither the asker nor the answering node
  const sizes = dhtSizes(p.dhtAddrs, Math.max(0, Math.min(K, p.nodes - 2)))
  const lookupBytes = stats.asked * (sizes.findNodeRequest + sizes.closerAnswer)
  const maintenance = selfQueryBytes(p.nodes, sizes) / QUERY_SELF_S + (p.dhtTableRefresh ? stats.refreshLookups / p.dhtRefreshS * lookupBytes : 0)
  // every model a provider serves has two keys (name, digest)
  const keys = 2 * p.modelsPerProvider
  const provide = p.providerShare * keys * p.providesPerSession / session * (lookupBytes + K * sizes.addProvider)
  let lookups = 0
  if (joinLookupsPerSession + usedLookupsPerSession > 0 && counts.length > 0) {
    const weight = counts.reduce((a, b) => a + b, 0)
    // the expected cost of looking up a model chosen by popularity (most models share few provider counts: group them)
    const byCount = new Map<number, number>()
    for (const n of counts) byCount.set(Math.round(n), (byCount.get(Math.round(n)) ?? 0) + n / weight)
    let perJoin = 0
    let perUsed = 0
    for (const [n, share] of byCount) {
      const r = stats.providerLookup(n)
      const cost = share * (r.asked * (sizes.getProvidersRequest + sizes.closerAnswer) + r.providersCarried * sizes.perProvider)
      perJoin += cost
      if (n >= p.quota) perUsed += cost
    }
    lookups = (joinLookupsPerSession * perJoin + usedLookupsPerSession * perUsed) / session
  }
  return { maintenance, provide, lookups, askedPerLookup: stats.asked }
}

export const SIM_SIZES = [1_000, 10_000, 100_000]
export const SIM_POPULARITIES: Popularity[] = ['zipf', 'uniform', 'same', 'longtail']
