/**
 * Embedding metrics: what this node's API clients embedded through the router, and
 * what this node embedded for peers. Read when Prometheus scrapes.
 */
import { Counter, type Registry } from 'prom-client'

export interface EmbedMetricsPort {
  /** the router's embedding counters */
  routed: () => { requests: number, completed: number, failed: number, failovers: number, inputs: number }
  /** the embed server's counters; undefined when this node does not serve */
  served: () => { streams: number, completed: number, cancelled: number, inputs: number, errors: Partial<Record<string, number>> } | undefined
}

function set (counter: Counter<string>, totals: Array<[Record<string, string>, number]>): void {
  counter.reset()
  for (const [labels, value] of totals) counter.inc(labels, value)
}

export function registerEmbedMetrics (registry: Registry, port: EmbedMetricsPort): void {
  const registers = [registry]
  new Counter({
    name: 'krill_embed_requests_total',
    help: 'embedding requests this node routed for its API clients, by outcome',
    labelNames: ['outcome'],
    registers,
    collect () {
      const s = port.routed()
      set(this, [[{ outcome: 'done' }, s.completed], [{ outcome: 'failed' }, s.failed]])
    }
  })
  new Counter({
    name: 'krill_embed_inputs_total',
    help: 'texts embedded for this node\'s API clients',
    registers,
    collect () { set(this, [[{}, port.routed().inputs]]) }
  })
  new Counter({
    name: 'krill_embed_failovers_total',
    help: 'embedding pieces moved to another provider after a failure',
    registers,
    collect () { set(this, [[{}, port.routed().failovers]]) }
  })
  new Counter({
    name: 'krill_embed_served_total',
    help: 'embedding requests this node served for peers, by outcome (error outcomes by code)',
    labelNames: ['outcome'],
    registers,
    collect () {
      const c = port.served()
      if (c == null) { this.reset(); return }
      set(this, [[{ outcome: 'done' }, c.completed], [{ outcome: 'cancelled' }, c.cancelled],
        ...Object.entries(c.errors).map(([code, n]): [Record<string, string>, number] => [{ outcome: code.toLowerCase() }, n ?? 0])])
    }
  })
}
