/**
 * Prometheus series for limits, policies and bad input, next to krill's own metrics
 * in metrics.ts (which already has Error frames by code and rejected announcements):
 * read from the counters the chat server, the announcement validator and the policy
 * store keep anyway, plus HTTP error responses by status.
 */
import type { FastifyInstance } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import type { MetricsPort } from './metrics.js'

/** A counter whose values are copied from `read()` at scrape time. */
function mirroredCounter (registry: Registry, name: string, help: string, labelNames: string[], read: () => Array<[Record<string, string>, number]>): void {
  // eslint-disable-next-line no-new -- registering is the point
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect () {
      this.reset()
      for (const [labels, value] of read()) this.inc(labels, value)
    }
  })
}

export function registerLimitMetrics (app: FastifyInstance, port: MetricsPort): void {
  const registry = port.registry

  mirroredCounter(registry, 'krill_chat_refused_total',
    'chat streams turned away before their request ran, by reason (forbidden by policy, requests per minute, concurrent streams per peer, queue full)',
    ['reason'], () => Object.entries(port.serving()?.counters.refused ?? {}).map(([reason, n]) => [{ reason }, n]))

  // rejected ones are krill_announcements_rejected_total (metrics.ts); ignored ones
  // include authors over their announcement rate
  mirroredCounter(registry, 'krill_announcements_ignored_total',
    'gossip announcements dropped without penalty, by reason (rate-limited: author over its announcement rate; stale, replay, expired, ...)',
    ['reason'], () => Object.entries(port.announcements()?.ignoredByReason ?? {}).map(([reason, n]) => [{ reason }, n]))

  mirroredCounter(registry, 'krill_policy_refusals_total',
    'peer policy refusals: serve (chat streams refused) and consume (providers the router skipped)',
    ['side'], () => [[{ side: 'serve' }, port.policy().serveRefused], [{ side: 'consume' }, port.policy().consumeSkipped]])

  mirroredCounter(registry, 'krill_policy_reload_errors_total',
    'edits of policy.json that were not applied (the previous policy stayed in force)',
    [], () => [[{}, port.policy().reloadErrors]])

  const httpErrors = new Counter({
    name: 'krill_http_errors_total',
    help: 'HTTP API responses with an error status (400 bad input, 413 too large, 408 too slow, 429/503 no capacity, ...), by status',
    labelNames: ['status'],
    registers: [registry]
  })
  app.addHook('onResponse', async (_request, reply) => {
    if (reply.statusCode >= 400) httpErrors.inc({ status: String(reply.statusCode) })
  })
}
