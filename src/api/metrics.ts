import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { Daemon } from '../daemon/daemon.js'
import type { NodeOptions } from '../node/create-node.js'

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
export function libp2pMetrics (registry: Registry): NonNullable<NodeOptions['metrics']> {
  const collectDefaultMetrics = !defaultMetricsClaimed
  defaultMetricsClaimed = true
  return prometheusMetrics({ registry, collectDefaultMetrics, preserveExistingMetrics: false })
}

/** GET /metrics: Prometheus text format (libp2p's metrics plus krill's own). */
export function registerMetricsRoute (app: FastifyInstance, daemon: Daemon): void {
  app.get('/metrics', async (_request, reply) => {
    const text = await daemon.metrics.metrics()
    return await reply.type(daemon.metrics.contentType).send(text)
  })
}
