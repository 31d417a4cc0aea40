import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ComponentLogger, Metrics } from '@libp2p/interface'
import type { ValidationStats } from '../discovery/announcement-validator.js'
import type { PolicyStats } from '../policy/policy-store.js'
import type { ChatServerStats } from '../protocol/chat-server.js'
import type { RunningChat } from '../router/router.js'
import type { RouterStats } from '../router/stats.js'
import { registerEmbedMetrics, type EmbedMetricsPort } from './embed-metrics.js'

/** What /metrics reads, declared here and bound by the composition root. */
export interface MetricsPort {
  /** this daemon's registry: libp2p's metrics and krill's own */
  registry: Registry
  router: { stats: RouterStats, running: () => RunningChat[] }
  /** the chat server's counters; undefined when this node does not serve */
  serving: () => ChatServerStats | undefined
  /** received announcements by outcome; undefined without gossip */
  announcements: () => ValidationStats | undefined
  /** fresh provider entries (peer × model) */
  providerEntries: () => number
  policy: () => PolicyStats
  /** tokens served / consumed and receipts by state, from the ledger; undefined without receipts */
  receipts?: () => ReceiptMetrics
  /** embeddings routed for our clients and served for peers */
  embed?: EmbedMetricsPort
}

export interface ReceiptMetrics {
  served: { prompt: number, completion: number }
  consumed: { prompt: number, completion: number }
  receipts: Record<string, number>
}

/** libp2p's `metrics` option */
export type Libp2pMetricsFactory = (components: { nodeInfo: unknown, logger: ComponentLogger }) => Metrics

/**
 * Process-wide metrics (CPU, memory, event loop, GC) may be collected into one
 * registry only: prom-client's collectors are global, so the first daemon of a
 * process gets them and later in-process daemons (test swarms) do without.
 */
let defaultMetricsClaimed = false

/** A fresh registry per daemon: in-process swarms must not mix their numbers. */
export function createMetricsRegistry (): Registry {
  return new Registry()
}

/**
 * libp2p's metrics, recorded into `registry`.
 *
 * preserveExistingMetrics stays false on purpose. @libp2p/prometheus-metrics keeps
 * a module-global cache of metric objects by name; with "preserve" the second
 * node of a process reuses the first node's objects, so its own registry stays
 * empty and its counts land in the first node's registry (checked with three
 * nodes: nodes 2 and 3 exported no libp2p_* series at all). Without "preserve" the
 * cache is cleared when a node is created, so each node registers fresh objects
 * in its own registry; the only other effect is clearing prom-client's *global*
 * registry, which krill never uses.
 */
export function libp2pMetrics (registry: Registry): Libp2pMetricsFactory {
  const collectDefaultMetrics = !defaultMetricsClaimed
  defaultMetricsClaimed = true
  return prometheusMetrics({ registry, collectDefaultMetrics, preserveExistingMetrics: false })
}

/**
 * Sets a counter to totals kept elsewhere: prom-client counters only count up by
 * themselves, so each scrape starts from zero and adds the current totals.
 */
function setTotals (counter: Counter<string>, totals: Array<[Record<string, string>, number]>): void {
  counter.reset()
  for (const [labels, value] of totals) counter.inc(labels, value)
}

/** Time-to-first-token buckets in seconds: from a warm local model to a cold load far away. */
const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]

/**
 * krill's own metrics. The router, the chat server and the announcer keep plain
 * counters; these metrics read them when Prometheus scrapes (collect callbacks), so
 * the request path never touches prom-client. Time to first token needs every
 * sample, so the histogram listens to the router.
 */
export function registerKrillMetrics (registry: Registry, port: MetricsPort): void {
  const registers = [registry]
  const router = port.router

  new Counter({
    name: 'krill_requests_total',
    help: 'chats this node routed for its API clients, by outcome',
    labelNames: ['outcome'],
    registers,
    collect () {
      const s = router.stats
      setTotals(this, [[{ outcome: 'done' }, s.completed], [{ outcome: 'failed' }, s.failed], [{ outcome: 'cancelled' }, s.cancelled]])
    }
  })
  new Counter({
    name: 'krill_tokens_total',
    help: 'tokens delivered to this node\'s API clients',
    registers,
    collect () { setTotals(this, [[{}, router.stats.tokens]]) }
  })
  new Counter({
    name: 'krill_failovers_total',
    help: 'attempts abandoned for another provider (before or after the first token)',
    registers,
    collect () { setTotals(this, [[{}, router.stats.failovers]]) }
  })
  new Counter({
    name: 'krill_continuations_total',
    help: 'failovers after tokens had flowed: the answer was continued on another provider',
    registers,
    collect () { setTotals(this, [[{}, router.stats.continuations]]) }
  })
  new Counter({
    name: 'krill_reconnects_total',
    help: 'attempts repeated on the same provider because the connection under them was replaced (a relayed connection upgraded to a direct one)',
    registers,
    collect () { setTotals(this, [[{}, router.stats.reconnects]]) }
  })
  new Counter({
    name: 'krill_hedges_total',
    help: 'second providers asked because the first had not accepted a chat in time (1.5 s or a few round trips); the slower one is cancelled',
    registers,
    collect () { setTotals(this, [[{}, router.stats.hedges]]) }
  })
  const ttft = new Histogram({
    name: 'krill_time_to_first_token_seconds',
    help: 'time from a chat request to its first token, by where it ran',
    labelNames: ['where'],
    buckets: TTFT_BUCKETS,
    registers
  })
  router.stats.onTtft((ms, _model, local) => { ttft.observe({ where: local ? 'local' : 'remote' }, ms / 1000) })

  new Counter({
    name: 'krill_served_requests_total',
    help: 'chats this node ran for peers over /krill/chat/1.0.0, by outcome (errors by code)',
    labelNames: ['outcome'],
    registers,
    collect () {
      const c = port.serving()?.counters
      if (c == null) return
      setTotals(this, [
        [{ outcome: 'done' }, c.completed],
        [{ outcome: 'cancelled' }, c.cancelled],
        ...Object.entries(c.errors).map(([code, n]): [Record<string, string>, number] => [{ outcome: `error_${code.toLowerCase()}` }, n ?? 0])
      ])
    }
  })
  new Counter({
    name: 'krill_served_tokens_total',
    help: 'tokens this node\'s Ollama processed for peers',
    labelNames: ['kind'],
    registers,
    collect () {
      const c = port.serving()?.counters
      if (c == null) return
      setTotals(this, [[{ kind: 'prompt' }, c.promptTokens], [{ kind: 'completion' }, c.completionTokens]])
    }
  })
  new Gauge({
    name: 'krill_active_streams',
    help: 'chat streams open now: inbound (peers asking us) and outbound (we asking peers)',
    labelNames: ['direction'],
    registers,
    collect () {
      this.set({ direction: 'inbound' }, port.serving()?.open ?? 0)
      this.set({ direction: 'outbound' }, router.running().filter(r => !r.local && r.peerId !== '').length)
    }
  })
  new Gauge({
    name: 'krill_serving_slots',
    help: 'this node\'s chat slots for peers: total, active and queued requests',
    labelNames: ['state'],
    registers,
    collect () {
      const s = port.serving()
      this.set({ state: 'total' }, s?.slots ?? 0)
      this.set({ state: 'active' }, s?.active ?? 0)
      this.set({ state: 'queued' }, s?.queued ?? 0)
    }
  })
  new Counter({
    name: 'krill_announcements_rejected_total',
    help: 'model announcements from peers that failed validation, by reason',
    labelNames: ['reason'],
    registers,
    collect () {
      const s = port.announcements()
      if (s == null) return
      setTotals(this, Object.entries(s.rejectedByReason).map(([reason, n]) => [{ reason }, n]))
    }
  })
  new Counter({
    name: 'krill_receipt_tokens_total',
    help: 'tokens this node served peers (direction="served") and peers served it ("consumed"), from its ledger',
    labelNames: ['direction', 'kind'],
    registers,
    collect () {
      const r = port.receipts?.()
      if (r == null) return
      setTotals(this, [
        [{ direction: 'served', kind: 'prompt' }, r.served.prompt], [{ direction: 'served', kind: 'completion' }, r.served.completion],
        [{ direction: 'consumed', kind: 'prompt' }, r.consumed.prompt], [{ direction: 'consumed', kind: 'completion' }, r.consumed.completion]
      ])
    }
  })
  new Counter({
    name: 'krill_receipts_total',
    help: 'ledger entries by receipt state (signed, disputed, refused, unreceipted)',
    labelNames: ['status'],
    registers,
    collect () {
      const r = port.receipts?.()
      if (r == null) return
      setTotals(this, Object.entries(r.receipts).map(([status, n]) => [{ status }, n]))
    }
  })
  new Gauge({
    name: 'krill_providers',
    help: 'fresh provider entries (peer × model) in the provider table',
    registers,
    collect () { this.set(port.providerEntries()) }
  })
}

/** GET /metrics: Prometheus text format (libp2p's metrics plus krill's own). */
export function registerMetricsRoute (app: FastifyInstance, port: MetricsPort): void {
  registerKrillMetrics(port.registry, port)
  if (port.embed != null) registerEmbedMetrics(port.registry, port.embed)
  app.get('/metrics', async (_request, reply) => {
    const text = await port.registry.metrics()
    return await reply.type(port.registry.contentType).send(text)
  })
}
