import type { Message, TopicValidatorResult } from '@libp2p/gossipsub'
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

/**
 * An announcement exactly as its author signed it on gossipsub (the fields of
 * RPC.Message; the topic is implied), kept so that the sync exchange can hand it
 * on to newcomers, who check the signature themselves.
 */
export interface SignedAnnouncement {
  /** author's peer id, multihash bytes */
  from: Uint8Array
  data: Uint8Array
  /** 8 bytes, big-endian */
  seqno: Uint8Array
  signature: Uint8Array
  /** author's public key (protobuf) when its peer id does not embed it */
  key?: Uint8Array
  /** the shard topic (krill/models/2/<shard>) it was published on; absent: krill/models/1 */
  shard?: number
}

/** What the sync exchange needs from discovery: what we hold, and the judge of what we get. */
export interface SyncStore {
  /** the signed announcements we list now, longest-lived first */
  held: (max: number) => Array<SignedAnnouncement & { remainingMs: number }>
  /** our own current announcement (the sync exchange signs it as gossipsub would) */
  own: () => Array<{ data: Uint8Array, seq: number, remainingMs: number, shard?: number }>
  /** judges one handed-on announcement exactly like gossip (the signature is already checked) */
  receive: (msg: Message, remainingMs: number) => TopicValidatorResult
  /** an exchange with a peer went through (its entries, if any, were received) */
  synced?: () => void
}
