/**
 * Bytes per libp2p protocol, both directions, as a daemon's own metrics count them:
 * every krill daemon records libp2p's metrics into its Prometheus registry
 * (src/api/metrics.ts), and @libp2p/prometheus-metrics wraps every stream once its
 * protocol is negotiated, counting the payload its muxer delivers and sends
 * (`libp2p_data_transfer_bytes_total{protocol="<id> received"|"<id> sent"}`). So
 * these are the bytes krill's DHT (/krill/kad/1.0.0), gossipsub (/meshsub/…) and
 * sync exchange (/krill/sync/1.0.0) streams carry — their length prefixes included;
 * multistream-select negotiation, noise and yamux framing below are not counted.
 */
import type { Registry } from 'prom-client'
import { DHT_PROTOCOL } from '../../src/node/create-node.js'
import { SYNC_PROTOCOL } from '../../src/discovery/sync-exchange.js'

export const TRANSFER_METRIC = 'libp2p_data_transfer_bytes_total'

/** received / sent bytes by protocol id */
export type ProtocolBytes = Record<string, { received: number, sent: number }>

export interface DiscoveryBytes {
  gossip: { received: number, sent: number }
  dht: { received: number, sent: number }
  sync: { received: number, sent: number }
}

/** Reads a daemon's per-protocol byte counters (cumulative since it started). */
export async function protocolBytes (registry: Registry): Promise<ProtocolBytes> {
  const metric = registry.getSingleMetric(TRANSFER_METRIC)
  if (metric == null) throw new Error(`this daemon's registry has no ${TRANSFER_METRIC}: libp2p metrics are off`)
  const { values } = await metric.get()
  const out: ProtocolBytes = {}
  for (const v of values) {
    const label = String(v.labels.protocol ?? '')
    const m = /^(.*) (received|sent)$/.exec(label)
    if (m == null) continue
    const entry = out[m[1]] ?? { received: 0, sent: 0 }
    entry[m[2] as 'received' | 'sent'] += v.value
    out[m[1]] = entry
  }
  return out
}

/** `after` − `before`, per protocol */
export function diffBytes (after: ProtocolBytes, before: ProtocolBytes): ProtocolBytes {
  const out: ProtocolBytes = {}
  for (const [p, a] of Object.entries(after)) {
    const b = before[p] ?? { received: 0, sent: 0 }
    out[p] = { received: a.received - b.received, sent: a.sent - b.sent }
  }
  return out
}

/** krill's discovery protocols out of all: gossipsub (any /meshsub version), the DHT, the sync exchange */
export function discoveryBytes (bytes: ProtocolBytes): DiscoveryBytes {
  const sum = (match: (p: string) => boolean): { received: number, sent: number } => Object.entries(bytes)
    .filter(([p]) => match(p))
    .reduce((s, [, v]) => ({ received: s.received + v.received, sent: s.sent + v.sent }), { received: 0, sent: 0 })
  return {
    gossip: sum(p => p.startsWith('/meshsub/')),
    dht: sum(p => p === DHT_PROTOCOL),
    sync: sum(p => p === SYNC_PROTOCOL)
  }
}
