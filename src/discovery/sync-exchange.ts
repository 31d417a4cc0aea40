/**
 * The sync exchange, /krill/sync/1.0.0 (protocols/README.md): a newcomer learns
 * the catalog from its first peers at once instead of at the next re-announcement.
 *
 * When identify says a newly connected peer speaks the protocol, we open one
 * stream, send a SyncRequest and read one SyncResponse: the signed gossip messages
 * (topic krill/models/1) the peer holds, each exactly as its author signed it, with
 * how much longer the peer would keep it. Every entry is checked like gossip: the
 * author's signature (StrictSign rules), then the announcement validator (bounds,
 * seq, rate). A peer that hands us junk — a bad signature, a message our validator
 * rejects, an answer over the bounds — gets the stream reset and a gossipsub
 * behaviour penalty, just as a peer forwarding junk on the topic would lose score.
 *
 * Bounds: one answer ≤ 1 MiB and ≤ 1024 entries; each peer is asked at most once
 * per `resyncMs` (its reconnects do not repeat the exchange), and answers at most
 * a few requests a minute per peer.
 */
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { Message } from '@libp2p/gossipsub'
import { RPC } from '@libp2p/gossipsub/message'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { ComponentLogger, Connection, IdentifyResult, Libp2pEvents, Logger, PeerId, PrivateKey, PublicKey, Startable, Stream, TypedEventTarget } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import { peerIdFromMultihash, peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import * as Digest from 'multiformats/hashes/digest'
import { SyncRequest, SyncResponse } from '../protocol/generated/sync.js'
import { ANNOUNCE_TOPIC } from './announcement-validator.js'
import { shardTopic, SHARD_COUNT } from './shards.js'
import type { SignedAnnouncement, SyncStore } from './types.js'

export type { SyncStore }
import { PeerRateLimiter } from '../limits/index.js'

export const SYNC_PROTOCOL = '/krill/sync/1.0.0'
export const MAX_SYNC_ENTRIES = 1024
export const MAX_SYNC_RESPONSE_BYTES = 1024 * 1024
const SIGN_PREFIX = new TextEncoder().encode('libp2p-pubsub:')

export interface SyncExchangeInit {
  /** discovery's store; undefined until discovery runs (then nothing is asked or answered) */
  store: () => SyncStore | undefined
  /** a peer that hands us junk: lower its standing (gossipsub behaviour penalty) */
  penalize?: (peer: PeerId, why: string) => void
  /** ask a peer again at most this often (default 30 s) */
  resyncMs?: number
  /** one exchange's limit (default 5 s) */
  timeoutMs?: number
  /**
   * false: ask only during our first `youngMs` (a large swarm: answers are big and
   * connections come and go all the time, so only a newcomer asks); default true
   */
  everyPeer?: () => boolean
  /** default 2 min */
  youngMs?: number
}

export interface SyncExchangeComponents {
  privateKey: PrivateKey
  registrar: Registrar
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface SyncStats {
  asked: number
  answered: number
  received: number
  accepted: number
  junk: number
  /** bytes of the answers we read (length prefixes included): discovery traffic */
  bytesReceived: number
  /** bytes of the answers we sent */
  bytesSent: number
}

class Junk extends Error {}

/** The bytes a gossipsub author signs (StrictSign): "libp2p-pubsub:" + RPC.Message{from, data, seqno, topic}. */
export function gossipSigningBytes (from: Uint8Array, data: Uint8Array, seqno: Uint8Array, topic: string = ANNOUNCE_TOPIC): Uint8Array {
  const signed = RPC.Message.encode({ from, data, seqno, topic })
  const bytes = new Uint8Array(SIGN_PREFIX.byteLength + signed.byteLength)
  bytes.set(SIGN_PREFIX, 0)
  bytes.set(signed, SIGN_PREFIX.byteLength)
  return bytes
}

/** Our own announcement as a gossipsub message we signed; its seqno is the announcement's seq. */
export async function signOwn (privateKey: PrivateKey, data: Uint8Array, seq: number, shard?: number): Promise<SignedAnnouncement> {
  const from = peerIdFromPrivateKey(privateKey).toMultihash().bytes
  const seqno = new Uint8Array(8)
  new DataView(seqno.buffer).setBigUint64(0, BigInt(seq), false)
  const signature = await privateKey.sign(gossipSigningBytes(from, data, seqno, shard == null ? ANNOUNCE_TOPIC : shardTopic(shard)))
  return { from, data, seqno, signature, ...(shard != null ? { shard } : {}) }
}

/** Checks a handed-on entry's signature as gossipsub's StrictSign does; returns the message or throws Junk. */
export async function verifySyncEntry (entry: SyncResponse.Entry): Promise<Message & { type: 'signed' }> {
  if (entry.seqno.byteLength !== 8) throw new Junk('seqno must be 8 bytes')
  if (entry.shard != null && (!Number.isInteger(entry.shard) || entry.shard >= SHARD_COUNT)) throw new Junk(`shard ${entry.shard} does not exist`)
  const topic = entry.shard == null ? ANNOUNCE_TOPIC : shardTopic(entry.shard)
  if (entry.signature.byteLength === 0) throw new Junk('no signature')
  let from: PeerId
  try {
    from = peerIdFromMultihash(Digest.decode(entry.from))
  } catch {
    throw new Junk('from is not a peer id')
  }
  let key: PublicKey
  if (entry.key != null && entry.key.byteLength > 0) {
    try {
      key = publicKeyFromProtobuf(entry.key)
    } catch {
      throw new Junk('key does not decode')
    }
    if (!from.equals(key.toMultihash().bytes)) throw new Junk('key is not the author\'s')
  } else {
    if (from.publicKey == null) throw new Junk('no key for an author whose id does not embed one')
    key = from.publicKey
  }
  let valid = false
  try {
    valid = await key.verify(gossipSigningBytes(entry.from, entry.data, entry.seqno, topic), entry.signature)
  } catch {
    valid = false
  }
  if (!valid) throw new Junk('signature does not match')
  return {
    type: 'signed',
    from,
    data: entry.data,
    sequenceNumber: new DataView(entry.seqno.buffer, entry.seqno.byteOffset, 8).getBigUint64(0, false),
    topic,
    signature: entry.signature,
    key
  }
}

function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 128); len++ }
  return len
}

export class SyncExchange implements Startable {
  readonly [Symbol.toStringTag] = 'krill:sync'
  readonly stats: SyncStats = { asked: 0, answered: 0, received: 0, accepted: 0, junk: 0, bytesReceived: 0, bytesSent: 0 }
  private readonly components: SyncExchangeComponents
  private readonly init: SyncExchangeInit
  private readonly log: Logger
  private readonly askedAt = new Map<string, number>()
  private readonly answerRate = new PeerRateLimiter({ burst: 4, perMinute: 6 })
  private readonly stopping = new AbortController()
  private running = false
  private startedAt = 0
  /** our own announcements, each signed once per version (key: shard, or -1 for krill/models/1) */
  private readonly ownSigned = new Map<number, { seq: number, signed: SignedAnnouncement }>()

  constructor (components: SyncExchangeComponents, init: SyncExchangeInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('krill:sync')
  }

  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    const { peerId, protocols, connection } = evt.detail
    if (!protocols.includes(SYNC_PROTOCOL) || connection == null) return
    void this.ask(peerId, connection).catch(err => { this.log('sync with %p failed: %s', peerId, err?.message ?? err) })
  }

  async start (): Promise<void> {
    await this.components.registrar.handle(SYNC_PROTOCOL, (stream, connection) => {
      void this.answer(stream, connection).catch(err => {
        this.log('answering %p failed: %s', connection.remotePeer, err?.message ?? err)
        stream.abort(err)
      })
    }, { maxInboundStreams: 2, maxOutboundStreams: 2, runOnLimitedConnection: true })
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.running = true
    this.startedAt = Date.now()
  }

  async stop (): Promise<void> {
    this.running = false
    this.stopping.abort()
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    await this.components.registrar.unhandle(SYNC_PROTOCOL)
  }

  /** Asks `peer` for what it holds (once per resyncMs) and judges every entry. */
  async ask (peer: PeerId, connection: Connection): Promise<void> {
    const store = this.init.store()
    if (!this.running || store == null) return
    const id = peer.toString()
    const now = Date.now()
    if (this.init.everyPeer?.() === false && now - this.startedAt > (this.init.youngMs ?? 120_000)) return
    if ((this.askedAt.get(id) ?? -Infinity) > now - (this.init.resyncMs ?? 30_000)) return
    if (this.askedAt.size >= 10_000) this.askedAt.clear()
    this.askedAt.set(id, now)
    this.stats.asked++
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.init.timeoutMs ?? 5_000)])
    const stream = await connection.newStream(SYNC_PROTOCOL, { signal, runOnLimitedConnection: true })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_SYNC_RESPONSE_BYTES })
      await lp.write(SyncRequest.encode({ maxEntries: MAX_SYNC_ENTRIES, shards: true }), { signal })
      let response: SyncResponse
      try {
        const bytes = await lp.read({ signal })
        this.stats.bytesReceived += bytes.byteLength + varintLength(bytes.byteLength)
        response = SyncResponse.decode(bytes, { limits: { entries: MAX_SYNC_ENTRIES } })
      } catch (err: any) {
        if (signal.aborted) throw err
        throw new Junk(`the answer is over the bounds or does not decode (${err?.name ?? err})`)
      }
      await stream.close({ signal }).catch(() => {})
      let accepted = 0
      for (const entry of response.entries) {
        this.stats.received++
        const msg = await verifySyncEntry(entry)
        const result = store.receive(msg, entry.remainingMs)
        if (result === TopicValidatorResult.Reject) throw new Junk(`an announcement by ${msg.from.toString()} that the validator rejects`)
        if (result === TopicValidatorResult.Accept) accepted++
      }
      this.stats.accepted += accepted
      store.synced?.()
      this.log('synced %d of %d announcement(s) from %p', accepted, response.entries.length, peer)
    } catch (err: any) {
      if (err instanceof Junk) {
        this.stats.junk++
        this.log.error('peer %p sent a bad sync answer: %s', peer, err.message)
        this.init.penalize?.(peer, err.message)
      }
      stream.abort(err)
      if (!(err instanceof Junk)) {
        // not the peer's fault (it was not ready, the connection went): the next identify may ask again
        this.askedAt.delete(id)
        throw err
      }
    }
  }

  private async answer (stream: Stream, connection: Connection): Promise<void> {
    const store = this.init.store()
    if (store == null || !this.answerRate.take(connection.remotePeer.toString())) {
      stream.abort(new Error('not answering sync requests now'))
      return
    }
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.init.timeoutMs ?? 5_000)])
    const lp = lpStream(stream, { maxDataLength: 64 })
    const request = SyncRequest.decode(await lp.read({ signal }))
    const max = Math.min(request.maxEntries === 0 ? MAX_SYNC_ENTRIES : request.maxEntries, MAX_SYNC_ENTRIES)
    const entries: SyncResponse.Entry[] = []
    let bytes = 0
    const list: Array<SignedAnnouncement & { remainingMs: number }> = []
    for (const own of store.own()) {
      if (own.shard != null && !request.shards) continue
      const slot = own.shard ?? -1
      let signed = this.ownSigned.get(slot)
      if (signed?.seq !== own.seq) {
        signed = { seq: own.seq, signed: await signOwn(this.components.privateKey, own.data, own.seq, own.shard) }
        this.ownSigned.set(slot, signed)
      }
      list.push({ ...signed.signed, remainingMs: own.remainingMs })
    }
    // an old asker checks every signature against krill/models/1: no shard entries for it
    list.push(...store.held(max).filter(h => request.shards || h.shard == null).slice(0, Math.max(0, max - list.length)))
    for (const held of list) {
      // protobuf overhead per entry is a few dozen bytes; stay well clear of the limit
      const size = held.data.byteLength + held.signature.byteLength + held.from.byteLength + (held.key?.byteLength ?? 0) + 64
      if (bytes + size > MAX_SYNC_RESPONSE_BYTES - 1024) break
      bytes += size
      entries.push({ from: held.from, data: held.data, seqno: held.seqno, signature: held.signature, key: held.key ?? new Uint8Array(0), remainingMs: Math.min(held.remainingMs, 0xffffffff), ...(held.shard != null ? { shard: held.shard } : {}) } as SyncResponse.Entry)
    }
    const answer = SyncResponse.encode({ entries })
    await lp.write(answer, { signal })
    this.stats.bytesSent += answer.byteLength + varintLength(answer.byteLength)
    this.stats.answered++
    await stream.close({ signal }).catch(() => { stream.abort(new Error('closing failed')) })
  }
}

export function syncExchange (init: SyncExchangeInit): (components: SyncExchangeComponents) => SyncExchange {
  return (components) => new SyncExchange(components, init)
}
