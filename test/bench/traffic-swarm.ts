/**
 * Discovery traffic in a real swarm (run by swarm-proc.ts with SWARM_MODE=traffic):
 * SWARM_SIZE full daemons on 127.0.0.1, every one a provider of the same three
 * models (one Ollama stand-in behind all of them), node 0 the bootstrap.
 *
 * - idle: after the swarm has settled, every node's received gossipsub bytes
 *   (GossipMeter, at the pubsub layer) and sync-exchange bytes over a window with no
 *   chats and no model changes; per node = the swarm's total / nodes / seconds.
 * - chat load: the same window while every node keeps one chat at a time running,
 *   each pinned (x-krill-peer) to a random other node, so capacity really changes
 *   on the providers.
 * - newcomer: a fresh daemon joins through node 0; the time from its start until its
 *   provider table lists a model of a provider it has no connection to yet (the
 *   last node) — the sync exchange's job — timed from the moment its daemon is ready. Repeated `trials` times.
 *
 * DHT traffic is not counted (unknown here): the kad-dht offers no per-protocol byte
 * counter without libp2p metrics.
 */
import { performance } from 'node:perf_hooks'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import type { TestDaemon } from '../helpers/swarm.js'
import { Cleanup } from './cleanup.js'
import { addCounts, emptyCounts, GossipMeter, type GossipCounts } from './gossip-meter.js'
import { startKrillInProcess, until } from './procs.js'
import { DEFAULT_QUOTA } from '../../src/discovery/gossip-quota.js'

/** the sharded swarm's TTL in the bench; the default is 1 h (DEFAULT_LARGE_TTL_MS) */
export const COMPRESSED_TTL_MS = 60_000

export const TRAFFIC_MODELS = ['llama3.2:1b', 'qwen3:8b', 'gemma3:4b']

export interface TrafficWindow {
  seconds: number
  /** per node and second: everything gossipsub received */
  gossipBytesPerNode: number
  /** per node and second: sync answers received */
  syncBytesPerNode: number
  /** per node and second */
  newMessagesPerNode: number
  duplicatesPerNode: number
  controlBytesPerNode: number
  /** the swarm's totals over the window */
  totals: GossipCounts
  chats?: number
}

export interface TrafficResult {
  size: number
  sharded: boolean
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

function syncBytes (node: TestDaemon): number {
  return (node.daemon.libp2p.services as unknown as { sync?: { stats: { bytesReceived?: number } } }).sync?.stats.bytesReceived ?? 0
}

async function window (nodes: TestDaemon[], meters: GossipMeter[], ms: number): Promise<TrafficWindow> {
  for (const m of meters) m.reset()
  const syncBefore = nodes.map(syncBytes)
  const start = performance.now()
  await sleep(ms)
  const seconds = (performance.now() - start) / 1000
  const totals = meters.map(m => m.reset()).reduce(addCounts, emptyCounts())
  const sync = nodes.reduce((sum, n, i) => sum + syncBytes(n) - syncBefore[i], 0)
  const per = (x: number): number => x / nodes.length / seconds
  return {
    seconds,
    gossipBytesPerNode: per(totals.totalBytes),
    syncBytesPerNode: per(sync),
    newMessagesPerNode: per(totals.messages - totals.duplicates),
    duplicatesPerNode: per(totals.duplicates),
    controlBytesPerNode: per(totals.controlBytes),
    totals
  }
}

async function chatLoop (node: TestDaemon, peers: TestDaemon[], stop: AbortSignal, done: () => void): Promise<void> {
  while (!stop.aborted) {
    const peer = peers[Math.floor(Math.random() * peers.length)]
    const model = TRAFFIC_MODELS[Math.floor(Math.random() * TRAFFIC_MODELS.length)]
    try {
      const res = await fetch(`${node.daemon.apiUrl}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-krill-peer': peer.daemon.peerId.toString() },
        body: JSON.stringify({ model, stream: false, messages: [{ role: 'user', content: 'hi' }] }),
        signal: AbortSignal.any([stop, AbortSignal.timeout(30_000)])
      })
      await res.arrayBuffer()
      if (res.ok) done()
    } catch {
      if (!stop.aborted) await sleep(200)
    }
  }
}

/**
 * `sharded`: every node announces per shard from the start (largeSwarmProviders 0),
 * as nodes of a large swarm do; otherwise the swarm runs as a small one does (one
 * topic, krill/models/1: the design before shards).
 */
export async function measureTraffic (cleanup: Cleanup, size: number, trials: number, windowMs: number, log: (msg: string) => void, sharded = false, withLoad = true): Promise<TrafficResult> {
  // sharded: TTL compressed to the one-topic design's 60 s, so a window of seconds
  // sees the refreshes a real hour would (the report scales the figure back to 1 h)
  const shardFlags = sharded ? { largeSwarmProviders: 0, announceLargeTtlMs: COMPRESSED_TTL_MS } : {}
  // a little work per chat, so capacity changes while it runs (as a real model's would)
  const standin = await OllamaStandin.start({ models: TRAFFIC_MODELS.map(name => ({ name })), knobs: { tokensPerSecond: 50, tokens: Array.from({ length: 10 }, (_, i) => `t${i} `) } })
  cleanup.add('traffic stand-in', async () => { await standin.stop() })
  const nodes: TestDaemon[] = []
  log(`starting ${size} providers of ${TRAFFIC_MODELS.length} models (${sharded ? 'sharded' : 'one topic'})`)
  for (let i = 0; i < size; i++) {
    const bootstrap = i === 0 ? [] : [nodes[0].daemon.addrs()[0]]
    nodes.push(await startKrillInProcess(cleanup, { bootstrap, ollama: standin.url, modelRefreshMs: 1_000, ...shardFlags }))
  }
  const ids = nodes.map(n => n.daemon.peerId.toString())
  // sharded: only DEFAULT_QUOTA providers per model gossip it (gossip-quota.ts), so
  // a node lists at least quota − 1 others (it may be one of them)
  const want = sharded ? Math.min(size - 1, DEFAULT_QUOTA - 1) : size - 1
  const complete = (n: TestDaemon): boolean => TRAFFIC_MODELS.every(m => n.daemon.providers.providersFor(m).filter(p => p.source === 'gossip').length >= want)
  // bytes do not need complete tables: on a starved machine a big swarm may take
  // longer than this to list everyone; measure anyway and say so
  await until(() => nodes.every(complete), `every node to list ${want} providers of each model`, 120_000, 250)
    .catch(() => { log(`after 120 s, ${nodes.filter(complete).length} of ${size} nodes listed ${want} providers of each model; measuring anyway`) })
  // the mesh and the DHT settle, as in a swarm that has been up a while
  await sleep(5_000)
  const meters = nodes.map(n => new GossipMeter(n.daemon.libp2p.services.pubsub))
  cleanup.add('gossip meters', async () => { for (const m of meters) m.detach() })

  log(`idle window of ${windowMs / 1000} s`)
  const idle = await window(nodes, meters, windowMs)
  const announcementMessageBytes = idle.totals.messages > 0 ? Math.round(idle.totals.messageBytes / idle.totals.messages) : 0

  let load = idle
  if (withLoad) {
    log(`chat-load window of ${windowMs / 1000} s`)
    const stop = new AbortController()
    let chats = 0
    const loops = nodes.map(n => chatLoop(n, nodes.filter(o => o !== n), stop.signal, () => { chats++ }))
    await sleep(2_000)
    load = await window(nodes, meters, windowMs)
    stop.abort()
    await Promise.allSettled(loops)
    load.chats = chats
  }

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
  return { size, sharded, idle, load, newcomer, newcomerMisses, announcementMessageBytes }
}
