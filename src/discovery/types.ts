import type { ModelInfo } from '../engine/types.js'

/** A peer's announced load: what the router ranks providers by. */
export interface Capacity {
  slots: number
  active: number
  queued: number
}

/** One peer serving one model, as learned from gossip or the DHT. */
export interface ProviderEntry {
  peerId: string
  model: ModelInfo
  capacity: Capacity
  /** software version the peer announced, e.g. "krill/0.1.0" */
  version: string
  /** where we learned it: a signed announcement, or a DHT provider record (no details) */
  source: 'gossip' | 'dht'
  receivedAt: number
  /** the entry is dropped at this time unless refreshed */
  expiresAt: number
}

/** One model of the network's catalog. */
export interface CatalogEntry {
  name: string
  digests: string[]
  providers: number
  /** details of one provider's copy (largest context wins) */
  model: ModelInfo
}

/** Read side of the provider table, for the router, the API and the CLI. */
export interface ProviderDirectory {
  /** fresh providers of `model` (any digest when `digest` is omitted), excluding this node */
  providersFor: (model: string, digest?: string) => ProviderEntry[]
  /** every model some fresh peer serves */
  catalog: () => CatalogEntry[]
  /** every fresh entry */
  all: () => ProviderEntry[]
}
