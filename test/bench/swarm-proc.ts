/**
 * One discovery swarm in a process of its own (forked by sections/discovery.ts), so
 * that its memory per node is its own, not blurred by an earlier swarm's garbage or
 * freed pages: SWARM_SIZE full daemons (libp2p, gossipsub, DHT, HTTP API) on
 * 127.0.0.1, node 0 the bootstrap everyone joins through, the middle node serving a
 * stand-in. Sends one {type: 'result'} or {type: 'error'} message over IPC and
 * exits, after stopping everything it started.
 *
 * - propagation: a model is added to the provider's Ollama; from the moment the
 *   provider publishes the announcement that carries it, until each node's provider
 *   table lists it (and until the last node's does). A trial in which some node
 *   has not learned it after TRIAL_TIMEOUT_MS counts as that long.
 * - DHT: provider lookups of a model name (until the provider is found) from up to
 *   20 nodes.
 * - memory: RSS and heap growth of this process from before the first node to the
 *   settled swarm (after a forced GC), per node.
 * - churn: over a quiet minute (QUIET_MS; no model changes), connections opened per
 *   minute (all nodes together) and catalog changes per minute (models appearing in
 *   or vanishing from some node's provider table): in a steady swarm both stay low —
 *   trimmed connections, late pings and re-announcements show up here. With
 *   SWARM_LOADED=1 the same window is counted again while another process keeps
 *   every core busy (stress-ng --cpu N): CPU starvation delays pings, and a swarm
 *   that turns late pings into reconnections shows it here, with the open
 *   connections sampled every second to show whether their number stays steady.
 * - baseline: a libp2p ping round trip between nodes of the swarm.
 */
import { performance } from 'node:perf_hooks'
import { peerIdFromString } from '@libp2p/peer-id'
import { ANNOUNCE_TOPIC } from '../../src/discovery/announcer.js'
import { modelKey } from '../../src/discovery/keys.js'
import { setLogLevel } from '../../src/log.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import type { TestDaemon } from '../helpers/swarm.js'
import { Cleanup } from './cleanup.js'
import { startCpuLoad } from './cpu-load.js'
import { MODEL, startKrillInProcess, until } from './procs.js'
import { measureTraffic } from './traffic-swarm.js'

export const TRIAL_TIMEOUT_MS = 30_000
/** the quiet window over which churn is counted */
export const QUIET_MS = Number(process.env.SWARM_QUIET_MS ?? 60_000)

export interface SwarmResult {
  size: number
  /** per trial: publish → last node (TRIAL_TIMEOUT_MS when some node never learned it) */
  allNodes: number[]
  /** per trial and node that learned it: publish → that node */
  perNode: number[]
  /** trials in which some node had not learned the model after TRIAL_TIMEOUT_MS */
  missedTrials: number
  /** per trial: model added to Ollama → its announcement published */
  toPublish: number[]
  dht: number[]
  dhtMisses: number
  ping: number[]
  rssPerNode: number
  heapPerNode: number
  /** nodes started and all knowing the first model */
  startSeconds: number
  /** connections opened per minute by all nodes together, in the quiet window */
  connectionsPerMinute: number
  /** models appearing in or vanishing from some node's catalog per minute, in the quiet window */
  catalogChangesPerMinute: number
  /** the quiet window, in seconds */
  quietSeconds: number
  /** the same window under a CPU load from another process (SWARM_LOADED=1) */
  loaded?: LoadedChurn
}

export interface LoadedChurn {
  /** what made the load, e.g. "stress-ng --cpu 2" */
  load: string
  connectionsPerMinute: number
  catalogChangesPerMinute: number
  seconds: number
  /** of the catalog changes, how many were a model vanishing */
  vanished: number
  /** connections the liveness service aborted (pings unanswered), and failed pings it excused (our loop was starved) */
  pingAborts: number
  pingsExcused: number
  /** open connections, all nodes together, sampled every second */
  openConnections: number[]
}

interface Churn { opened: number, catalogChanges: number, vanished: number, minutes: number, openConnections: number[], pingAborts: number, pingsExcused: number }

/** Counts new connections and catalog changes on every node for `ms`. */
async function countChurn (nodes: TestDaemon[], ms: number): Promise<Churn> {
  let opened = 0
  let catalogChanges = 0
  let vanished = 0
  const countOpen = (): void => { opened++ }
  const countChange = (): void => { catalogChanges++ }
  const countVanished = (): void => { catalogChanges++; vanished++ }
  const offs: Array<() => void> = []
  for (const n of nodes) {
    n.daemon.libp2p.addEventListener('connection:open', countOpen)
    offs.push(() => { n.daemon.libp2p.removeEventListener('connection:open', countOpen) })
    offs.push(n.daemon.providers.on('model:appeared', countChange), n.daemon.providers.on('model:vanished', countVanished))
  }
  const liveness = (): { aborted: number, excused: number } => nodes.reduce((sum, n) => ({ aborted: sum.aborted + n.daemon.libp2p.services.liveness.aborted, excused: sum.excused + n.daemon.libp2p.services.liveness.excused }), { aborted: 0, excused: 0 })
  const livenessBefore = liveness()
  const openConnections: number[] = []
  const sampler = setInterval(() => { openConnections.push(nodes.reduce((sum, n) => sum + n.daemon.libp2p.getConnections().length, 0)) }, 1_000)
  const start = performance.now()
  try {
    await sleep(ms)
  } finally {
    clearInterval(sampler)
    for (const off of offs) off()
  }
  const livenessAfter = liveness()
  return { opened, catalogChanges, vanished, minutes: (performance.now() - start) / 60_000, openConnections, pingAborts: livenessAfter.aborted - livenessBefore.aborted, pingsExcused: livenessAfter.excused - livenessBefore.excused }
}

function memoryNow (): { rss: number, heap: number } {
  // started with --expose-gc by the discovery section; without it the figures are rougher
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  return { rss: m.rss / 1024 / 1024, heap: m.heapUsed / 1024 / 1024 }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

export async function measureSwarm (cleanup: Cleanup, size: number, trials: number, log: (msg: string) => void): Promise<SwarmResult> {
  const startedAt = performance.now()
  const standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
  cleanup.add('discovery stand-in', async () => { await standin.stop() })
  const before = memoryNow()
  const providerIndex = Math.floor(size / 2)
  const nodes: TestDaemon[] = []
  log(`starting ${size} nodes`)
  for (let i = 0; i < size; i++) {
    const bootstrap = i === 0 ? [] : [nodes[0].daemon.addrs()[0]]
    nodes.push(await startKrillInProcess(cleanup, {
      bootstrap,
      ...(i === providerIndex ? { ollama: standin.url, modelRefreshMs: 100 } : {})
    }))
  }
  const provider = nodes[providerIndex]
  const providerId = provider.daemon.peerId.toString()
  const others = nodes.filter(n => n !== provider)
  await until(() => others.every(n => n.daemon.providers.providersFor(MODEL).some(p => p.peerId === providerId)), `all ${size - 1} nodes to learn the first model`, 120_000, 100)
  const startSeconds = (performance.now() - startedAt) / 1000
  // let the gossip mesh and the DHT settle, as in a swarm that has been up a while
  await sleep(3_000)

  // when the provider publishes, and with which models
  const pubsub = provider.daemon.libp2p.services.pubsub
  const publishes: Array<{ at: number, models: string[] }> = []
  const publish = pubsub.publish.bind(pubsub)
  pubsub.publish = async (topic: string, data?: Uint8Array) => {
    if (topic === ANNOUNCE_TOPIC) publishes.push({ at: performance.now(), models: provider.daemon.localModels().map(m => m.name) })
    return await publish(topic, data)
  }

  // churn in a quiet swarm: nothing changes, so every new connection and every
  // catalog change is the network's own doing
  log(`counting churn for ${QUIET_MS / 1000} s`)
  const quiet = await countChurn(nodes, QUIET_MS)
  let loaded: LoadedChurn | undefined
  if (process.env.SWARM_LOADED === '1') {
    const load = startCpuLoad(cleanup)
    log(`counting churn for ${QUIET_MS / 1000} s under ${load.label}`)
    try {
      const c = await countChurn(nodes, QUIET_MS)
      loaded = { load: load.label, connectionsPerMinute: c.opened / c.minutes, catalogChangesPerMinute: c.catalogChanges / c.minutes, vanished: c.vanished, pingAborts: c.pingAborts, pingsExcused: c.pingsExcused, seconds: c.minutes * 60, openConnections: c.openConnections }
    } finally {
      await load.stop()
    }
    // the swarm catches up before the timed trials
    await sleep(3_000)
  }

  const result: SwarmResult = {
    size, allNodes: [], perNode: [], missedTrials: 0, toPublish: [], dht: [], dhtMisses: 0, ping: [], rssPerNode: 0, heapPerNode: 0, startSeconds,
    connectionsPerMinute: quiet.opened / quiet.minutes,
    catalogChangesPerMinute: quiet.catalogChanges / quiet.minutes,
    quietSeconds: quiet.minutes * 60,
    loaded
  }
  for (let t = 0; t < trials; t++) {
    const model = `bench-${size}-${t}:1b`
    const seen = new Map<TestDaemon, number>()
    const offs = others.map(n => n.daemon.providers.on('model:appeared', e => {
      if (e.detail.model === model && e.detail.peerId === providerId && !seen.has(n)) seen.set(n, performance.now())
    }))
    try {
      const added = performance.now()
      standin.addModel({ name: model })
      const complete = await until(() => seen.size === others.length, model, TRIAL_TIMEOUT_MS, 5).then(() => true, () => false)
      const published = publishes.find(p => p.at >= added && p.models.includes(model))
      if (published == null) {
        // the model never left the provider within the trial (a starved machine): a miss, not the end of the section
        result.missedTrials++
        result.allNodes.push(TRIAL_TIMEOUT_MS)
        log(`${model}: no announcement of it was seen leaving the provider within ${TRIAL_TIMEOUT_MS} ms`)
        continue
      }
      const arrivals = [...seen.values()].map(at => at - published.at)
      result.perNode.push(...arrivals)
      result.allNodes.push(complete ? Math.max(...arrivals) : TRIAL_TIMEOUT_MS)
      if (!complete) {
        result.missedTrials++
        log(`${model}: ${others.length - seen.size} of ${others.length} nodes had not learned it after ${TRIAL_TIMEOUT_MS} ms`)
        for (const n of others.filter(n => !seen.has(n))) log(`  ${describeNode(n, providerId)}`)
      }
      result.toPublish.push(published.at - added)
    } finally {
      for (const off of offs) off()
    }
    // past the announcer's one-message-a-second throttle, so trials do not queue up
    await sleep(1_200)
  }
  pubsub.publish = publish

  // DHT lookups of the first model (provided at start-up) from nodes other than the provider
  const cid = modelKey(MODEL)
  const lookup = async (node: TestDaemon): Promise<number | undefined> => {
    const start = performance.now()
    for await (const peer of node.daemon.libp2p.contentRouting.findProviders(cid, { signal: AbortSignal.timeout(10_000) })) {
      if (peer.id.toString() === providerId) return performance.now() - start
    }
    return undefined
  }
  await until(async () => await lookup(others[others.length - 1]).catch(() => undefined) != null, 'the provider record to be findable in the DHT', 60_000, 500)
  for (const node of others.slice(0, 20)) {
    const ms = await lookup(node).catch(() => undefined)
    if (ms == null) result.dhtMisses++
    else result.dht.push(ms)
  }
  // the floor: one libp2p round trip between two nodes of this swarm
  const target = peerIdFromString(providerId)
  for (const node of others.slice(0, 20)) {
    await node.daemon.libp2p.services.ping.ping(target).catch(() => undefined)
    // timed here: ping's own result is in whole milliseconds
    const start = performance.now()
    await node.daemon.libp2p.services.ping.ping(target)
    result.ping.push(performance.now() - start)
  }
  const after = memoryNow()
  result.rssPerNode = (after.rss - before.rss) / size
  result.heapPerNode = (after.heap - before.heap) / size
  return result
}

/** What a node that missed an announcement looks like, for the log. */
function describeNode (node: TestDaemon, providerId: string): string {
  const pubsub = node.daemon.libp2p.services.pubsub
  // the implementation has it; the GossipSub interface does not
  const mesh = (pubsub as unknown as { getMeshPeers?: (topic: string) => string[] }).getMeshPeers?.(ANNOUNCE_TOPIC).length
  const conns = node.daemon.libp2p.getConnections()
  return [
    `node ${node.daemon.peerId.toString()}:`,
    `${conns.length} connections${conns.some(c => c.remotePeer.toString() === providerId) ? ' (one to the provider)' : ' (none to the provider)'},`,
    `${pubsub.getSubscribers(ANNOUNCE_TOPIC).length} topic peers, ${String(mesh ?? '?')} in its mesh,`,
    `provider's last seq here ${String(node.daemon.providers.lastSeq(providerId))},`,
    `announcements ${JSON.stringify(node.daemon.announcementStats ?? {})}`
  ].join(' ')
}

async function main (): Promise<void> {
  setLogLevel('error')
  const size = Number(process.env.SWARM_SIZE)
  const trials = Number(process.env.SWARM_TRIALS)
  const log = (msg: string): void => { process.send?.({ type: 'log', msg: `${size} nodes: ${msg}` }) }
  const cleanup = new Cleanup()
  // the parent went away or stops us (Ctrl-C, a crash): stop everything and leave
  const abandon = (): void => { void cleanup.closeAll().finally(() => process.exit(1)) }
  process.on('disconnect', abandon)
  process.on('SIGTERM', abandon)
  process.on('SIGINT', abandon)
  let message: Record<string, unknown>
  try {
    // SWARM_MODE=traffic: discovery bytes per node (traffic-swarm.ts) instead of propagation
    const result = process.env.SWARM_MODE === 'traffic'
      ? await measureTraffic(cleanup, size, trials, Number(process.env.SWARM_WINDOW_MS ?? 30_000), log, process.env.SWARM_SHARDED === '1', true, {
        idleWindowMs: Number(process.env.SWARM_IDLE_MS ?? process.env.SWARM_WINDOW_MS ?? 30_000),
        standinProcess: true,
        ...(process.env.SWARM_TTL_MS != null ? { shardTtlMs: Number(process.env.SWARM_TTL_MS) } : {})
      })
      : await measureSwarm(cleanup, size, trials, log)
    log(`stopping ${size} nodes`)
    message = { type: 'result', result }
  } catch (err) {
    message = { type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) }
  }
  // the figures first: stopping dozens of daemons on a loaded machine can take minutes
  await new Promise(resolve => process.send?.(message, resolve))
  process.off('disconnect', abandon)
  await cleanup.closeAll()
  // libp2p may leave timers and closing sockets behind; everything of ours is stopped
  process.exit(0)
}

if (process.env.SWARM_SIZE != null) {
  main().catch((err: unknown) => {
    process.stderr.write(`swarm-proc: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(2)
  })
}
