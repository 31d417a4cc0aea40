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

const SWARM_PROC = fileURLToPath(new URL('../swarm-proc.js', import.meta.url))

async function measureSwarm (ctx: BenchContext, size: number, trials: number): Promise<SwarmResult> {
  const child = fork(SWARM_PROC, [], {
    execArgv: ['--expose-gc'],
    env: {
      ...process.env,
      SWARM_SIZE: String(size),
      SWARM_TRIALS: String(trials),
      SWARM_QUIET_MS: String(ctx.quick ? 20_000 : 60_000),
      // the full run also counts churn while another process keeps every core busy
      SWARM_LOADED: ctx.quick ? '0' : '1'
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  trackChild(child)
  const release = ctx.cleanup.add(`swarm process of ${size}`, async () => { await stopChild(child, 'SIGTERM', 15_000) })
  try {
    return await new Promise<SwarmResult>((resolve, reject) => {
      child.on('message', (msg: any) => {
        if (msg?.type === 'log') ctx.log(`discovery: ${String(msg.msg)}`)
        else if (msg?.type === 'result') resolve(msg.result as SwarmResult)
        else if (msg?.type === 'error') reject(new Error(String(msg.message)))
      })
      child.once('exit', code => { reject(new Error(`the swarm process of ${size} exited (${String(code)}) without a result`)) })
    })
  } finally {
    await release()
  }
}

export const discoverySection: Section = {
  name: 'discovery',
  title: 'Discovery',
  run: async (ctx) => {
    const sizes = ctx.quick ? [10] : [10, 25, 50]
    const trials = ctx.quick ? 3 : 10
    const figures: Figure[] = []
    const notes: string[] = [
      'each swarm runs in a process of its own: full daemons on 127.0.0.1, node 0 bootstraps the rest, the middle node is the provider; memory per node is that process\'s growth / nodes',
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
      notes.push(`${size} nodes: started and all knowing the first model in ${r.startSeconds.toFixed(1)} s; Ollama listing a model → its announcement leaving the provider: median ${summarize(r.toPublish).median.toFixed(0)} ms (model poll every 100 ms, at most one announcement a second)`)
    }
    return { figures, notes }
  }
}
