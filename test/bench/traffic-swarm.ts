/**
 * Discovery traffic in a real swarm (run by swarm-proc.ts with SWARM_MODE=traffic):
 * SWARM_SIZE full daemons on 127.0.0.1, every one a provider of the same three
 * models (one Ollama stand-in behind all of them), node 0 the bootstrap.
 *
 * - idle: after the swarm has settled, every node's received gossipsub bytes
 *   (GossipMeter, at the pubsub layer), DHT and sync-exchange bytes over a window
 *   with no chats and no model changes; per node = the swarm's total / nodes / seconds.
 * - chat load: the same window while every node keeps one chat at a time running,
 *   each pinned (x-krill-peer) to a random provider it lists, so capacity really
 *   changes on the providers.
 * - newcomer: a fresh daemon joins through node 0; the time from its start until its
 *   provider table lists a model of a provider it has no connection to yet (the
 *   last node) — the sync exchange's job — timed from the moment its daemon is ready. Repeated `trials` times.
 *
 * DHT (/krill/kad/1.0.0) and sync-exchange bytes come from each daemon's own libp2p
 * metrics, both directions (protocol-meter.ts); the figures are bytes received.
 */
import { loadavg } from 'node:os'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { TestDaemon } from '../helpers/swarm.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { Cleanup } from './cleanup.js'
import { addCounts, emptyCounts, GossipMeter, type GossipCounts } from './gossip-meter.js'
import { startKrillInProcess, startStandinProc, until } from './procs.js'
import { diffBytes, discoveryBytes, protocolBytes, type ProtocolBytes } from './protocol-meter.js'
import { DEFAULT_QUOTA, quotaTicket } from '../../src/discovery/gossip-quota.js'
import { modelId } from '../../src/models/index.js'
import { modelShard } from '../../src/discovery/shards.js'

/** the sharded swarm's TTL in the bench; the default is 1 h (DEFAULT_LARGE_TTL_MS) */
export const COMPRESSED_TTL_MS = 60_000

export const TRAFFIC_MODELS = ['llama3.2:1b', 'qwen3:8b', 'gemma3:4b']

export interface TrafficWindow {
  seconds: number
  /** per node and second: everything gossipsub received (GossipMeter, at decodeRpc) */
  gossipBytesPerNode: number
  /** per node and second: sync-exchange stream bytes received (requests and answers) */
  syncBytesPerNode: number
  /** per node and second: DHT (/krill/kad/1.0.0) stream bytes received, queries and answers */
  dhtBytesPerNode: number
  /** gossip + DHT + sync received, per node and second */
  totalBytesPerNode: number
  /** the same three as sent, per node and second (in a closed swarm the mean equals received) */
  sentBytesPerNode: { gossip: number, dht: number, sync: number }
  /** gossipsub stream bytes received by the stream meter (a check on GossipMeter) */
  gossipStreamBytesPerNode: number
  /** every protocol's stream bytes received per node and second (identify, ping, chat, …) */
  receivedByProtocol: Record<string, number>
  /** the swarm process's event-loop delay over the window (ms): how starved its daemons were */
  loopDelayMs: { p50: number, p99: number, max: number }
  /** the machine's 1-minute load average at the window's end */
  loadAverage: number
  /** per node and second */
  newMessagesPerNode: number
  duplicatesPerNode: number
  controlBytesPerNode: number
  /** the swarm's totals over the window */
  totals: GossipCounts
  chats?: number
  /** chats refused or failed in the load loop */
  failedChats?: number
}

export interface TrafficResult {
  size: number
  sharded: boolean
  /** sharded: the compressed TTL the run used */
  shardTtlMs: number
  idle: TrafficWindow
  load: TrafficWindow
  /** ms from a newcomer being ready to its table listing the far provider's model */
  newcomer: number[]
  newcomerMisses: number
  /** one real announcement as published (bytes of the gossipsub message), for the simulator */
  announcementMessageBytes: number
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

async function streamBytes (nodes: TestDaemon[]): Promise<ProtocolBytes[]> {
  return await Promise.all(nodes.map(async n => await protocolBytes(n.daemon.metrics)))
}

/** the swarm's stream bytes over a window, summed over nodes */
function sumBytes (after: ProtocolBytes[], before: ProtocolBytes[]): ProtocolBytes {
  const out: ProtocolBytes = {}
  for (const [i, a] of after.entries()) {
    for (const [p, v] of Object.entries(diffBytes(a, before[i]))) {
      const e = out[p] ?? { received: 0, sent: 0 }
      out[p] = { received: e.received + v.received, sent: e.sent + v.sent }
    }
  }
  return out
}

async function window (nodes: TestDaemon[], meters: GossipMeter[], ms: number): Promise<TrafficWindow> {
  for (const m of meters) m.reset()
  const before = await streamBytes(nodes)
  const delay = monitorEventLoopDelay({ resolution: 20 })
  delay.enable()
  const start = performance.now()
  await sleep(ms)
  delay.disable()
  const totals = meters.map(m => m.reset()).reduce(addCounts, emptyCounts())
  const streams = sumBytes(await streamBytes(nodes), before)
  const seconds = (performance.now() - start) / 1000
  const d = discoveryBytes(streams)
  const per = (x: number): number => x / nodes.length / seconds
  return {
    seconds,
    gossipBytesPerNode: per(totals.totalBytes),
    syncBytesPerNode: per(d.sync.received),
    dhtBytesPerNode: per(d.dht.received),
    totalBytesPerNode: per(totals.totalBytes + d.dht.received + d.sync.received),
    sentBytesPerNode: { gossip: per(d.gossip.sent), dht: per(d.dht.sent), sync: per(d.sync.sent) },
    gossipStreamBytesPerNode: per(d.gossip.received),
    receivedByProtocol: Object.fromEntries(Object.entries(streams).map(([p, v]) => [p, per(v.received)])),
    loopDelayMs: { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 },
    loadAverage: loadavg()[0],
    newMessagesPerNode: per(totals.messages - totals.duplicates),
    duplicatesPerNode: per(totals.duplicates),
    controlBytesPerNode: per(totals.controlBytes),
    totals
  }
}

/** per node, the fewest gossip providers it lists of any model (for the log) */
function listing (nodes: TestDaemon[]): number[] {
  return nodes.map(n => Math.min(...TRAFFIC_MODELS.map(m => n.daemon.providers.providersFor(m).filter(p => p.source === 'gossip').length)))
}

/**
 * Why a sharded swarm lists fewer announcers than the quota (for the log): per
 * model, the quota's lowest tickets of the whole swarm, whether each one announces
 * the model now, and how many nodes list it; and the validators' ignore reasons.
 */
function describeQuota (nodes: TestDaemon[]): string[] {
  const out: string[] = []
  for (const model of TRAFFIC_MODELS) {
    const ranked = nodes.map(n => ({ n, id: n.daemon.peerId.toString(), t: quotaTicket(n.daemon.peerId.toString(), model) })).sort((a, b) => a.t - b.t)
    const held = (n: TestDaemon): boolean => ((n.daemon.libp2p.services as unknown as { discovery?: { announcer?: { quotaHeld?: Set<string> } } }).discovery?.announcer?.quotaHeld?.has(modelId(model))) ?? false
    const shard = modelShard(model)
    const lastAt = (n: TestDaemon): number | undefined => ((n.daemon.libp2p.services as unknown as { discovery?: { announcer?: { shards?: Map<number, { at: number }> } } }).discovery?.announcer?.shards?.get(shard)?.at)
    const ages = ranked.filter(r => held(r.n)).map(r => { const at = lastAt(r.n); return at == null ? '-' : ((Date.now() - at) / 1000).toFixed(0) })
    out.push(`${model}: announcers' last publish on shard ${shard}, s ago: ${ages.join(' ')}`)
    const announcing = ranked.map((r, rank) => ({ rank, held: held(r.n), listedBy: nodes.filter(o => o !== r.n && o.daemon.providers.providersFor(model).some(p => p.peerId === r.id && p.source === 'gossip')).length }))
    out.push(`${model}: announcing (rank:listedBy) ${announcing.filter(a => a.held).map(a => `${a.rank}:${a.listedBy}`).join(' ')}; lowest ${DEFAULT_QUOTA} listed by ${announcing.slice(0, DEFAULT_QUOTA).map(a => a.listedBy).join(' ')}`)
  }
  const ignored: Record<string, number> = {}
  for (const n of nodes) for (const [k, v] of Object.entries(n.daemon.announcementStats?.ignoredByReason ?? {})) ignored[k] = (ignored[k] ?? 0) + v
  const rejected: Record<string, number> = {}
  for (const n of nodes) for (const [k, v] of Object.entries(n.daemon.announcementStats?.rejectedByReason ?? {})) rejected[k] = (rejected[k] ?? 0) + v
  // nodes that list nobody: what gossipsub knows of their peers
  const lonely = nodes.filter(n => TRAFFIC_MODELS.every(m => !n.daemon.providers.providersFor(m).some(p => p.source === 'gossip')))
  for (const n of [...lonely.slice(0, 3), nodes[1]]) {
    const ps = n.daemon.libp2p.services.pubsub as unknown as { peers: Map<string, unknown>, streamsOutbound: Map<string, unknown>, streamsInbound: Map<string, unknown>, getMeshPeers: (t: string) => string[], getSubscribers: (t: string) => unknown[], getTopics: () => string[], getScore?: (id: string) => number }
    const conns = n.daemon.libp2p.getConnections()
    const shardTopics = ps.getTopics().filter(t => t.startsWith('krill/models/2/'))
    const noOut = [...ps.peers.keys()].filter(id => !ps.streamsOutbound.has(id)).length
    const noIn = [...ps.peers.keys()].filter(id => !ps.streamsInbound.has(id)).length
    const scores = [...ps.peers.keys()].map(id => ps.getScore?.(id) ?? 0)
    out.push(`${lonely.includes(n) ? 'lonely' : 'normal'} node ${nodes.indexOf(n)}: ${conns.length} connections, gossipsub peers ${ps.peers.size} (${noOut} without an outbound stream, ${noIn} without inbound), topics ${ps.getTopics().length}, shard subscribers ${shardTopics.map(t => ps.getSubscribers(t).length).join('/')}, mesh ${shardTopics.map(t => ps.getMeshPeers(t).length).join('/')}, min score ${Math.min(...scores).toFixed(1)}`)
  }
  out.push(`ignored ${JSON.stringify(ignored)}, rejected ${JSON.stringify(rejected)}, accepted ${nodes.reduce((s, n) => s + (n.daemon.announcementStats?.accepted ?? 0), 0)}`)
  return out
}

/**
 * One chat at a time from `node`, each pinned to a random provider of a random
 * model among those this node lists (at scale only the quota's announcers are
 * listed: a pin to a quiet provider would be refused as "does not serve").
 */
async function chatLoop (node: TestDaemon, stop: AbortSignal, done: (ok: boolean) => void): Promise<void> {
  const self = node.daemon.peerId.toString()
  while (!stop.aborted) {
    const model = TRAFFIC_MODELS[Math.floor(Math.random() * TRAFFIC_MODELS.length)]
    const listed = node.daemon.providers.providersFor(model).filter(p => p.source === 'gossip' && p.peerId !== self)
    const peer = listed[Math.floor(Math.random() * listed.length)]?.peerId
    let ok = false
    try {
      const res = await fetch(`${node.daemon.apiUrl}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(peer != null ? { 'x-krill-peer': peer } : {}) },
        body: JSON.stringify({ model, stream: false, messages: [{ role: 'user', content: 'hi' }] }),
        signal: AbortSignal.any([stop, AbortSignal.timeout(30_000)])
      })
      await res.arrayBuffer()
      ok = res.ok
    } catch {}
    if (!stop.aborted) done(ok)
    // a refused chat is no reason to hammer the API
    if (!ok && !stop.aborted) await sleep(200)
  }
}

/**
 * `sharded`: every node announces per shard from the start (largeSwarmProviders 0),
 * as nodes of a large swarm do; otherwise the swarm runs as a small one does (one
 * topic, krill/models/1: the design before shards).
 */
export interface TrafficOptions {
  /** the idle window (default: windowMs) */
  idleWindowMs?: number
  /** sharded: the compressed TTL of shard announcements (default COMPRESSED_TTL_MS) */
  shardTtlMs?: number
  /**
   * the Ollama stand-in in a process of its own (test/bench/standin-proc.js, from the
   * build: the bench), as a real Ollama is, so its answers to the daemons' model polls
   * do not wait on the swarm's own busy event loop; otherwise in this process (tests)
   */
  standinProcess?: boolean
}

export async function measureTraffic (cleanup: Cleanup, size: number, trials: number, windowMs: number, log: (msg: string) => void, sharded = false, withLoad = true, opts: TrafficOptions = {}): Promise<TrafficResult> {
  const idleWindowMs = opts.idleWindowMs ?? windowMs
  // sharded: TTL compressed (to the one-topic design's 60 s by default), so a window
  // of seconds sees the refreshes a real hour would (the report scales the figure back to 1 h)
  const shardTtlMs = opts.shardTtlMs ?? COMPRESSED_TTL_MS
  const shardFlags = sharded ? { largeSwarmProviders: 0, announceLargeTtlMs: shardTtlMs } : {}
  // a little work per chat, so capacity changes while it runs (as a real model's would)
  const knobs = { tokensPerSecond: 50, tokens: Array.from({ length: 10 }, (_, i) => `t${i} `) }
  let standinUrl: string
  if (opts.standinProcess === true) {
    standinUrl = (await startStandinProc(cleanup, { models: TRAFFIC_MODELS, knobs })).url
  } else {
    const standin = await OllamaStandin.start({ models: TRAFFIC_MODELS.map(name => ({ name })), knobs })
    cleanup.add('traffic stand-in', async () => { await standin.stop() })
    standinUrl = standin.url
  }
  const nodes: TestDaemon[] = []
  log(`starting ${size} providers of ${TRAFFIC_MODELS.length} models (${sharded ? 'sharded' : 'one topic'})`)
  for (let i = 0; i < size; i++) {
    const bootstrap = i === 0 ? [] : [nodes[0].daemon.addrs()[0]]
    nodes.push(await startKrillInProcess(cleanup, { bootstrap, ollama: standinUrl, modelRefreshMs: 1_000, ...shardFlags }))
    if ((i + 1) % 10 === 0) log(`${i + 1} started`)
  }
  const ids = nodes.map(n => n.daemon.peerId.toString())
  // sharded: only DEFAULT_QUOTA providers per model gossip it (gossip-quota.ts), so
  // a node lists at least quota − 1 others (it may be one of them)
  const want = sharded ? Math.min(size - 1, DEFAULT_QUOTA - 1) : size - 1
  const complete = (n: TestDaemon): boolean => TRAFFIC_MODELS.every(m => n.daemon.providers.providersFor(m).filter(p => p.source === 'gossip').length >= want)
  // bytes do not need complete tables: on a starved machine a big swarm may take
  // longer than this to list everyone; measure anyway and say so
  const progress = setInterval(() => {
    log(`listed: ${listing(nodes).join(' ')}`)
    if (sharded) for (const line of describeQuota(nodes)) log(`  ${line}`)
  }, 10_000)
  await until(() => nodes.every(complete), `every node to list ${want} providers of each model`, 120_000, 250)
    .finally(() => { clearInterval(progress) })
    .catch(() => { log(`after 120 s, ${nodes.filter(complete).length} of ${size} nodes listed ${want} providers of each model; measuring anyway`) })
  // the mesh and the DHT settle, as in a swarm that has been up a while
  await sleep(5_000)
  const meters = nodes.map(n => new GossipMeter(n.daemon.libp2p.services.pubsub))
  cleanup.add('gossip meters', async () => { for (const m of meters) m.detach() })

  log(`idle window of ${idleWindowMs / 1000} s`)
  const idle = await window(nodes, meters, idleWindowMs)
  const announcementMessageBytes = idle.totals.messages > 0 ? Math.round(idle.totals.messageBytes / idle.totals.messages) : 0

  let load = idle
  if (withLoad) {
    log(`chat-load window of ${windowMs / 1000} s`)
    const stop = new AbortController()
    let chats = 0
    let failed = 0
    const loops = nodes.map(n => chatLoop(n, stop.signal, ok => { if (ok) chats++; else failed++ }))
    await sleep(2_000)
    load = await window(nodes, meters, windowMs)
    stop.abort()
    await Promise.allSettled(loops)
    load.chats = chats
    load.failedChats = failed
  }

  // the windows' figures in the log at once: on a starved machine the newcomer trials below can take many minutes
  const brief = (w: TrafficWindow): Record<string, number> => ({ seconds: w.seconds, gossip: w.gossipBytesPerNode, dht: w.dhtBytesPerNode, sync: w.syncBytesPerNode, total: w.totalBytesPerNode, chats: w.chats ?? 0 })
  log(`windows per node and second: ${JSON.stringify({ idle: brief(idle), load: brief(load) })}`)

  const newcomer: number[] = []
  let newcomerMisses = 0
  // the provider furthest down the list that node 0 (the newcomer's only first peer) lists
  const listed0 = new Set(nodes[0].daemon.providers.providersFor(TRAFFIC_MODELS[0]).filter(p => p.source === 'gossip').map(p => p.peerId))
  const farId = [...ids].reverse().find(id => listed0.has(id)) ?? ids[ids.length - 1]
  for (let t = 0; t < trials; t++) {
    const node = await startKrillInProcess(cleanup, { bootstrap: [nodes[0].daemon.addrs()[0]], ...shardFlags })
    // from ready (the daemon's ready line): that is when it has "just joined"
    const startedAt = performance.now()
    const listed = await until(() => node.daemon.providers.providersFor(TRAFFIC_MODELS[0]).some(p => p.peerId === farId), 'the newcomer to list the far provider', 10_000, 5).then(() => true, () => false)
    if (listed) newcomer.push(performance.now() - startedAt)
    else newcomerMisses++
    await node.daemon.stop()
  }
  return { size, sharded, shardTtlMs, idle, load, newcomer, newcomerMisses, announcementMessageBytes }
}
