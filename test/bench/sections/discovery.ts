/**
 * Discovery in swarms of 10, 25 and 50 daemons on loopback, each swarm in a process
 * of its own (test/bench/swarm-proc.ts: what is measured, and how).
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchContext, Section } from '../context.js'
import { stopChild, trackChild } from '../cleanup.js'
import { latencyFigure, type Figure } from '../report.js'
import { summarize } from '../stats.js'
import { TRIAL_TIMEOUT_MS, type SwarmResult } from '../swarm-proc.js'
import type { TrafficResult, TrafficWindow } from '../traffic-swarm.js'
import { DEFAULT_LARGE_TTL_MS } from '../../../src/discovery/announcer.js'
import { simulate, SIM_POPULARITIES, SIM_SIZES } from '../discovery-sim.js'

const SWARM_PROC = fileURLToPath(new URL('../swarm-proc.js', import.meta.url))

async function measureSwarm (ctx: BenchContext, size: number, trials: number): Promise<SwarmResult> {
  // the full run also counts churn while another process keeps every core busy
  return await inChild<SwarmResult>(ctx, size, { SWARM_TRIALS: String(trials), SWARM_QUIET_MS: String(ctx.quick ? 20_000 : 60_000), SWARM_LOADED: ctx.quick ? '0' : '1' })
}

async function measureTrafficIn (ctx: BenchContext, size: number, trials: number, sharded: boolean): Promise<TrafficResult> {
  // the full run's idle window spans kad-dht's self-query period (5 min), so the DHT's upkeep is in it
  // 50 in-process daemons on one event loop stall for seconds at a time: a 60 s TTL
  // (refreshes 20 s apart) expires under them, so that swarm's shard TTL is 300 s
  const ttl = size >= 50 ? 300_000 : 60_000
  return await inChild<TrafficResult>(ctx, size, { SWARM_MODE: 'traffic', SWARM_SHARDED: sharded ? '1' : '0', SWARM_TRIALS: String(trials), SWARM_WINDOW_MS: String(ctx.quick ? 20_000 : 60_000), SWARM_IDLE_MS: String(ctx.quick ? 20_000 : 300_000), SWARM_TTL_MS: String(ttl) })
}

async function inChild<T> (ctx: BenchContext, size: number, env: Record<string, string>): Promise<T> {
  const child = fork(SWARM_PROC, [], {
    execArgv: ['--expose-gc'],
    env: { ...process.env, SWARM_SIZE: String(size), ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  trackChild(child)
  const release = ctx.cleanup.add(`swarm process of ${size}`, async () => { await stopChild(child, 'SIGTERM', 15_000) })
  try {
    return await new Promise<T>((resolve, reject) => {
      child.on('message', (msg: any) => {
        if (msg?.type === 'log') ctx.log(`discovery: ${String(msg.msg)}`)
        else if (msg?.type === 'result') resolve(msg.result as T)
        else if (msg?.type === 'error') reject(new Error(String(msg.message)))
      })
      child.once('exit', code => { reject(new Error(`the swarm process of ${size} exited (${String(code)}) without a result`)) })
    })
  } finally {
    await release()
  }
}

function fmt (w: TrafficWindow): string {
  return `${w.totalBytesPerNode.toFixed(0)} B/s per node = ${w.gossipBytesPerNode.toFixed(0)} gossip + ${w.dhtBytesPerNode.toFixed(0)} DHT + ${w.syncBytesPerNode.toFixed(0)} sync (received; sent ${w.sentBytesPerNode.gossip.toFixed(0)} + ${w.sentBytesPerNode.dht.toFixed(0)} + ${w.sentBytesPerNode.sync.toFixed(0)}) over ${w.seconds.toFixed(0)} s (${w.newMessagesPerNode.toFixed(2)} new announcements/s + ${w.duplicatesPerNode.toFixed(2)} duplicates/s, control ${w.controlBytesPerNode.toFixed(0)} B/s; event loop delay p99 ${w.loopDelayMs.p99.toFixed(0)} ms, load average ${w.loadAverage.toFixed(1)})`
}

/** the simulator's per-node figures, one-topic beside sharded */
function simFigures (): Figure[] {
  const out: Figure[] = []
  for (const popularity of SIM_POPULARITIES) {
    for (const nodes of SIM_SIZES) {
      const old = simulate({ nodes, design: 'one-topic', popularity })
      const now = simulate({ nodes, design: 'sharded', popularity })
      out.push({
        id: `discovery.sim.${popularity}.${nodes}`,
        label: `simulated ${nodes / 1000}k nodes (20 % providers × 3 models, ${popularity}): discovery bytes per node, sharded vs one topic`,
        unit: 'B/s',
        baselineLabel: 'one topic',
        baseline: summarize([old.totalBytes]),
        krill: summarize([now.totalBytes]),
        delta: { kind: 'ratio', median: now.totalBytes / old.totalBytes },
        target: { text: '≤ 1 KB/s per node (gossip + DHT + sync)', met: now.totalBytes <= 1024 },
        note: `gossip ${now.gossipBytes.toFixed(0)} + sync ${now.syncBytes.toFixed(0)} + DHT ${now.dhtBytes.toFixed(0)} B/s (kad-dht upkeep ${now.dht.maintenance.toFixed(0)}, provides ${now.dht.provide.toFixed(0)}, lookups ${now.dht.lookups.toFixed(0)}; ${now.dht.askedPerLookup.toFixed(0)} peers per lookup); one topic ${old.gossipBytes.toFixed(0)} + ${old.syncBytes.toFixed(0)} + ${old.dhtBytes.toFixed(0)}`
      })
    }
  }
  return out
}

function simNotes (): string[] {
  const one = simulate({ nodes: 100_000, design: 'one-topic' })
  const sh = simulate({ nodes: 100_000, design: 'sharded' })
  return [`simulator (test/bench/discovery-sim.ts, model in docs/benchmarks.md): real encoded sizes, one topic ${one.messageBytes} B per announcement RPC (${one.dataBytes} B of it the announcement), sharded ${sh.messageBytes} B (${sh.dataBytes} B); sync entry ${one.syncEntryBytes} / ${sh.syncEntryBytes} B`]
}

/** per-node discovery bytes/s (gossip + sync) idle and under load, and the newcomer's wait */
function trafficFigures (t: TrafficResult): Figure[] {
  const bound = { text: '≤ 1 KB/s per node', met: false }
  const tag = t.sharded ? 'sharded' : 'one-topic'
  // the sharded run's TTL is compressed: its real rate is that many times lower
  const scale = t.sharded ? t.shardTtlMs / DEFAULT_LARGE_TTL_MS : 1
  // only the announcements scale with the TTL; the DHT's traffic does not
  const rate = (id: string, label: string, w: TrafficWindow): Figure => {
    const announcements = (w.gossipBytesPerNode + w.syncBytesPerNode) * scale
    const perNode = announcements + w.dhtBytesPerNode
    const note = `${announcements.toFixed(0)} B/s announcements + ${w.dhtBytesPerNode.toFixed(0)} B/s DHT${t.sharded ? ` (announcements measured ${(announcements / scale).toFixed(0)} B/s with a ${t.shardTtlMs / 1000} s TTL)` : ''}`
    return { id, label, unit: 'B/s', krill: summarize([perNode]), target: { ...bound, met: perNode <= 1024 }, note }
  }
  return [
    rate(`discovery.${t.size}.${tag}.bytes.idle`, `${t.size} nodes, ${tag}: discovery bytes received per node, idle`, t.idle),
    rate(`discovery.${t.size}.${tag}.bytes.load`, `${t.size} nodes, ${tag}: discovery bytes received per node, under chat load`, t.load),
    latencyFigure({
      id: `discovery.${t.size}.${tag}.newcomer`,
      label: `${t.size} nodes, ${tag}: a newcomer lists a far provider's model (from ready)`,
      krill: t.newcomer,
      target: (_added, k) => ({ text: 'p99 ≤ 2 s', met: k.p99 <= 2_000 && t.newcomerMisses === 0 }),
      note: t.newcomerMisses > 0 ? `${t.newcomerMisses} newcomers had not listed it after 10 s` : undefined
    })
  ]
}

export const discoverySection: Section = {
  name: 'discovery',
  title: 'Discovery',
  run: async (ctx) => {
    const sizes = ctx.quick ? [10] : [10, 25, 50]
    const trials = ctx.quick ? 3 : 10
    const figures: Figure[] = [...simFigures()]
    const notes: string[] = [
      'discovery bytes: every gossipsub RPC a node receives, counted at GossipSub.decodeRpc (exact encoded size + length prefix; below that, noise/yamux framing is not counted), plus the DHT (/krill/kad/1.0.0) and sync-exchange (/krill/sync/1.0.0) stream bytes it receives, from each daemon\'s own libp2p metrics (libp2p_data_transfer_bytes_total by protocol, test/bench/protocol-meter.ts); sent bytes are reported beside',
      'each swarm runs in a process of its own: full daemons on 127.0.0.1, node 0 bootstraps the rest, the middle node is the provider; memory per node is that process\'s growth / nodes',
      ...simNotes(),
      `propagation is timed from the provider publishing the announcement to each node's provider table listing the model, ${trials} new models per swarm`
    ]
    for (const size of sizes) {
      let r: SwarmResult
      try {
        r = await measureSwarm(ctx, size, trials)
      } catch (err) {
        // one swarm that could not be measured leaves the others' figures standing
        notes.push(`${size} nodes: not measured: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`)
        continue
      }
      figures.push(latencyFigure({
        id: `discovery.${size}.all`,
        label: `${size} nodes: new model known by every node`,
        baselineLabel: 'libp2p ping',
        baseline: r.ping,
        krill: r.allNodes,
        target: (_added, k) => ({ text: 'all nodes ≤ 2 s', met: k.max <= 2_000 }),
        note: r.missedTrials > 0 ? `${r.missedTrials} of ${trials} trials had a node without the model after ${TRIAL_TIMEOUT_MS / 1000} s (counted as ${TRIAL_TIMEOUT_MS / 1000} s)` : undefined
      }))
      figures.push(latencyFigure({ id: `discovery.${size}.node`, label: `${size} nodes: new model known by a node`, baselineLabel: 'libp2p ping', baseline: r.ping, krill: r.perNode }))
      figures.push(latencyFigure({
        id: `discovery.${size}.dht`,
        label: `${size} nodes: DHT provider lookup`,
        baselineLabel: 'libp2p ping',
        baseline: r.ping,
        krill: r.dht,
        note: r.dhtMisses > 0 ? `${r.dhtMisses} lookups found no provider within 10 s` : undefined
      }))
      figures.push({ id: `discovery.${size}.connections`, label: `${size} nodes: connections opened per minute (all nodes, quiet swarm)`, unit: '/min', krill: summarize([r.connectionsPerMinute]) })
      figures.push({ id: `discovery.${size}.catalog`, label: `${size} nodes: catalog changes per minute (all nodes, quiet swarm)`, unit: '/min', krill: summarize([r.catalogChangesPerMinute]) })
      if (r.loaded != null) {
        const l = r.loaded
        figures.push({
          id: `discovery.${size}.connections.loaded`,
          label: `${size} nodes: connections opened per minute (all nodes, under ${l.load})`,
          unit: '/min',
          krill: summarize([l.connectionsPerMinute]),
          target: { text: `≤ ${size} (one per node a minute)`, met: l.connectionsPerMinute <= size }
        })
        figures.push({ id: `discovery.${size}.catalog.loaded`, label: `${size} nodes: catalog changes per minute (all nodes, under ${l.load})`, unit: '/min', krill: summarize([l.catalogChangesPerMinute]) })
        const open = summarize(l.openConnections)
        notes.push(`${size} nodes under ${l.load} for ${l.seconds.toFixed(0)} s: ${l.connectionsPerMinute.toFixed(0)} connections opened and ${l.catalogChangesPerMinute.toFixed(1)} catalog changes per minute (${l.vanished} of them a model vanishing); ${l.pingAborts} connections aborted for unanswered pings, ${l.pingsExcused} failed pings excused as our own starved loop; open connections (all nodes, sampled each second) min ${Math.min(...l.openConnections)}, median ${open.median.toFixed(0)}, max ${Math.max(...l.openConnections)}`)
      }
      figures.push({ id: `discovery.${size}.rss`, label: `${size} nodes: RSS per node`, unit: 'MB', krill: summarize([r.rssPerNode]) })
      figures.push({ id: `discovery.${size}.heap`, label: `${size} nodes: JS heap per node`, unit: 'MB', krill: summarize([r.heapPerNode]) })
      notes.push(`${size} nodes: churn counted over ${r.quietSeconds.toFixed(0)} s with no model changes: ${r.connectionsPerMinute.toFixed(0)} connections opened and ${r.catalogChangesPerMinute.toFixed(1)} catalog changes per minute, all nodes together`)
      for (const sharded of [false, true]) {
        const t = await measureTrafficIn(ctx, size, ctx.quick ? 5 : 10, sharded)
        figures.push(...trafficFigures(t))
        const design = sharded ? `sharded (TTL compressed to ${t.shardTtlMs / 1000} s; ÷ ${DEFAULT_LARGE_TTL_MS / t.shardTtlMs} for the real 1 h TTL)` : 'one topic (krill/models/1, the design before shards)'
        notes.push(`${size} nodes, every one a provider of 3 models, ${design}: idle ${fmt(t.idle)}; under chat load (${t.load.chats ?? 0} chats completed and ${t.load.failedChats ?? 0} failed in ${t.load.seconds.toFixed(0)} s, each pinned to a random provider the node lists) ${fmt(t.load)}; gossipsub message ${t.announcementMessageBytes} B on average`)
      }
      notes.push(`${size} nodes: started and all knowing the first model in ${r.startSeconds.toFixed(1)} s; Ollama listing a model → its announcement leaving the provider: median ${summarize(r.toPublish).median.toFixed(0)} ms (model poll every 100 ms, at most one announcement a second)`)
    }
    return { figures, notes }
  }
}
