/**
 * This node's receipts: signs them as provider, checks and countersigns them as
 * consumer, keeps every outcome in the ledger, and derives from it the balance,
 * each peer's standing and the tokens peers served us today (budgets).
 *
 * It implements the protocol's two receipt ports (src/protocol/receipt-exchange.ts)
 * and is a libp2p service: `receipts(init)` gives it the node's key, peer id and
 * datastore, and libp2p starts it before and stops it after the protocols.
 */
import { randomBytes } from 'node:crypto'
import { logger } from '../log.js'
import { DEFAULT_SKEW_MS, disagreement, outsideWindow } from './checks.js'
import { countsAsUsage, Ledger } from './ledger.js'
import {
  decodeAck, decodeReceipt, decodeSignedReceipt, encodeAck, encodeReceipt, encodeSignedReceipt,
  NONCE_BYTES, ReceiptFormatError, signingBytes, signReceipt, verifyReceiptSignature
} from './receipt.js'
import { Standing } from './standing.js'
import type { ConsumerReceiptPort, IssuedReceipt, ProviderReceiptPort, ReceivedFacts, ServedFacts } from '../protocol/receipt-exchange.js'
import type { EntryStatus, LedgerEntry, PeerBalance, TokenCounts } from './ledger.js'
import type { ReceiptFacts } from './receipt.js'
import type { StandingView } from './standing.js'
import type { PeerId, PrivateKey, Startable } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'

const log = logger('receipts')

export interface ReceiptBookInit {
  /** receipts whose times lie further than this from our request are refused (default 5 min) */
  skewMs?: number
  /** ledger entries older than this fold into per-peer totals (default 30 days) */
  retentionMs?: number
  /** standing half-life (default 6 h) */
  halfLifeMs?: number
  /** how often old entries are folded (default 1 h) */
  foldIntervalMs?: number
  now?: () => number
}

export interface ReceiptBookComponents {
  peerId: PeerId
  privateKey: PrivateKey
  datastore: Datastore
}

export interface Balance {
  peers: Array<PeerBalance & { standing: StandingView }>
  totals: { servedThem: TokenCounts, servedUs: TokenCounts, net: number, disputes: number, unreceipted: number }
}

export interface ReceiptCounters {
  /** tokens we served peers / peers served us, from completed requests (as the engine counted them) */
  served: TokenCounts
  consumed: TokenCounts
  receipts: Record<EntryStatus, number>
}

export class ReceiptBook implements ProviderReceiptPort, ConsumerReceiptPort, Startable {
  readonly ledger: Ledger
  readonly standing: Standing
  private readonly self: string
  private readonly key: PrivateKey
  private readonly skewMs: number
  private readonly foldIntervalMs: number
  private readonly now: () => number
  /** nonces of receipts we countersigned or refused recently (provider id + nonce hex → when) */
  private readonly nonces = new Map<string, number>()
  private readonly pending = new Set<Promise<unknown>>()
  /** receipts we issued whose consumer has not answered yet */
  private readonly outstanding = new Set<(ack: Uint8Array | undefined, reason?: string) => void>()
  private foldTimer: ReturnType<typeof setInterval> | undefined
  /** tokens peers served us per UTC day (key: YYYY-MM-DD) */
  private readonly consumedByDay = new Map<string, number>()
  readonly counters: ReceiptCounters = {
    served: { prompt: 0, completion: 0, total: 0 },
    consumed: { prompt: 0, completion: 0, total: 0 },
    receipts: { signed: 0, disputed: 0, refused: 0, unreceipted: 0 }
  }

  constructor (components: ReceiptBookComponents, init: ReceiptBookInit = {}) {
    this.self = components.peerId.toString()
    this.key = components.privateKey
    this.skewMs = init.skewMs ?? DEFAULT_SKEW_MS
    this.foldIntervalMs = init.foldIntervalMs ?? 3_600_000
    this.now = init.now ?? Date.now
    this.ledger = new Ledger(components.datastore, { retentionMs: init.retentionMs, now: this.now })
    this.standing = new Standing({ halfLifeMs: init.halfLifeMs, now: this.now })
  }

  readonly [Symbol.toStringTag] = 'krill/receipts'

  async start (): Promise<void> {
    await this.ledger.fold().catch(err => { log.warn(`folding old ledger entries failed: ${err.message}`) })
    const since = this.now() - 2 * this.skewMs
    await this.ledger.load(e => {
      this.remember(e)
      if (e.nonce != null && e.role === 'consumer' && Date.parse(e.recordedAt) >= since) this.nonces.set(`${e.provider}/${e.nonce}`, Date.parse(e.recordedAt))
    })
    this.foldTimer = setInterval(() => {
      this.track(this.ledger.fold().catch(err => { log.warn(`folding old ledger entries failed: ${err.message}`) }))
      this.pruneNonces()
    }, this.foldIntervalMs)
    this.foldTimer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.foldTimer)
    this.foldTimer = undefined
    // receipts still waiting for their ack are kept as they are: the datastore closes after us
    for (const settle of [...this.outstanding]) settle(undefined, 'this node stopped before the consumer\'s countersignature arrived')
    // every settle in flight reaches the datastore before libp2p closes it
    await Promise.allSettled([...this.pending])
    await this.ledger.flush()
  }

  // ---- provider side ------------------------------------------------------

  async issue (facts: ServedFacts): Promise<IssuedReceipt> {
    const receipt: ReceiptFacts = {
      kind: facts.kind,
      consumer: facts.consumer,
      provider: this.self,
      model: facts.model,
      modelDigest: facts.modelDigest,
      promptTokens: count(facts.promptTokens),
      completionTokens: count(facts.completionTokens),
      startedAtMs: Math.round(facts.startedAtMs),
      finishedAtMs: Math.max(Math.round(facts.finishedAtMs), Math.round(facts.startedAtMs)),
      nonce: randomBytes(NONCE_BYTES)
    }
    const bytes = encodeReceipt(receipt)
    const providerSignature = await signReceipt(this.key, bytes)
    let settled = false
    const settle = (ack: Uint8Array | undefined, reason?: string): void => {
      if (settled) return
      settled = true
      this.outstanding.delete(settle)
      this.track(this.settleIssued(receipt, bytes, providerSignature, ack, reason))
    }
    this.outstanding.add(settle)
    return {
      signedReceipt: encodeSignedReceipt(bytes, providerSignature),
      settle: (ack) => { settle(ack) }
    }
  }

  private async settleIssued (receipt: ReceiptFacts, bytes: Uint8Array, providerSignature: Uint8Array, ackBytes: Uint8Array | undefined, why?: string): Promise<void> {
    let status: EntryStatus = 'unreceipted'
    let reason: string | undefined = why ?? 'the consumer sent no countersignature'
    let consumerSignature: Uint8Array | undefined
    if (ackBytes != null) {
      try {
        const ack = decodeAck(ackBytes)
        if (Buffer.compare(ack.nonce, receipt.nonce) !== 0) {
          reason = 'the consumer answered with another nonce'
        } else if (ack.consumerSignature.byteLength > 0) {
          if (await verifyReceiptSignature(receipt.consumer, bytes, ack.consumerSignature)) {
            status = 'signed'
            reason = undefined
            consumerSignature = ack.consumerSignature
          } else {
            reason = 'the consumer\'s countersignature does not verify'
          }
        } else {
          status = 'disputed'
          reason = ack.dispute !== '' ? ack.dispute : 'the consumer refused to countersign'
        }
      } catch (err) {
        reason = err instanceof ReceiptFormatError ? err.message : String(err)
      }
    }
    if (status !== 'signed') log.info(`receipt for peer ${receipt.consumer} is ${status}: ${reason}`)
    this.record('provider', receipt, status, { bytes, providerSignature, consumerSignature, reason })
  }

  // ---- consumer side ------------------------------------------------------

  async settle (signedReceipt: Uint8Array, received: ReceivedFacts): Promise<Uint8Array | undefined> {
    const work = this.settleReceived(signedReceipt, received)
    this.track(work)
    return await work
  }

  private async settleReceived (signedReceipt: Uint8Array, received: ReceivedFacts): Promise<Uint8Array | undefined> {
    if (signedReceipt.byteLength === 0) {
      this.recordUnreceipted(received)
      return undefined
    }
    let receipt: ReceiptFacts
    let bytes: Uint8Array
    let providerSignature: Uint8Array
    try {
      const signed = decodeSignedReceipt(signedReceipt)
      bytes = signed.receipt
      providerSignature = signed.providerSignature
      receipt = decodeReceipt(bytes)
    } catch (err) {
      const reason = (err as Error).message
      this.recordUnreceipted(received, 'refused', reason)
      return encodeAck(new Uint8Array(0), undefined, reason)
    }
    const refuse = async (status: 'refused' | 'disputed', reason: string): Promise<Uint8Array> => {
      log.info(`receipt from peer ${received.provider} ${status}: ${reason}`)
      this.record('consumer', receipt, status, { bytes, providerSignature, reason })
      return encodeAck(receipt.nonce, undefined, reason)
    }
    if (receipt.provider !== received.provider || !await verifyReceiptSignature(received.provider, bytes, providerSignature)) {
      return await refuse('refused', `the provider's signature does not verify for peer ${received.provider}`)
    }
    const nonceKey = `${receipt.provider}/${Buffer.from(receipt.nonce).toString('hex')}`
    if (this.nonces.has(nonceKey)) return await refuse('refused', `nonce ${Buffer.from(receipt.nonce).toString('hex')} was used before`)
    this.nonces.set(nonceKey, this.now())
    const late = outsideWindow(receipt, received, this.skewMs)
    if (late != null) return await refuse('refused', late)
    const wrong = disagreement(receipt, received, this.self)
    if (wrong != null) return await refuse('disputed', wrong)
    const consumerSignature = await signReceipt(this.key, bytes)
    this.record('consumer', receipt, 'signed', { bytes, providerSignature, consumerSignature })
    return encodeAck(receipt.nonce, consumerSignature)
  }

  private recordUnreceipted (received: ReceivedFacts, status: EntryStatus = 'unreceipted', reason = 'the provider sent no receipt'): void {
    this.append({
      role: 'consumer',
      peer: received.provider,
      status,
      kind: received.kind,
      consumer: this.self,
      provider: received.provider,
      model: received.model,
      modelDigest: received.modelDigest,
      promptTokens: received.promptTokens,
      completionTokens: received.completionTokens,
      startedAt: new Date(received.requestSentAtMs).toISOString(),
      finishedAt: new Date(received.doneAtMs).toISOString(),
      reason
    })
  }

  private record (role: 'provider' | 'consumer', r: ReceiptFacts, status: EntryStatus, sig: { bytes: Uint8Array, providerSignature: Uint8Array, consumerSignature?: Uint8Array, reason?: string }): void {
    this.append({
      role,
      peer: role === 'provider' ? r.consumer : r.provider,
      status,
      kind: r.kind,
      consumer: r.consumer,
      provider: r.provider,
      model: r.model,
      modelDigest: r.modelDigest,
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      startedAt: new Date(r.startedAtMs).toISOString(),
      finishedAt: new Date(r.finishedAtMs).toISOString(),
      nonce: Buffer.from(r.nonce).toString('hex'),
      signedBytes: b64(signingBytes(sig.bytes)),
      providerSignature: b64(sig.providerSignature),
      ...(sig.consumerSignature != null ? { consumerSignature: b64(sig.consumerSignature) } : {}),
      ...(sig.reason != null ? { reason: sig.reason } : {})
    })
  }

  /** Counted at once; the datastore write goes on in the background (stop() waits for it). */
  private append (entry: Omit<LedgerEntry, 'id' | 'recordedAt'>): void {
    const full = this.ledger.record(entry, this.now(), err => { log.warn(`could not write a ledger entry: ${err.message}`) })
    this.remember(full)
  }

  /** Counters, standing and today's budget from one entry (new, or replayed at start). */
  private remember (e: LedgerEntry): void {
    this.counters.receipts[e.status]++
    const tokens = e.promptTokens + e.completionTokens
    const at = Date.parse(e.recordedAt)
    if (e.role === 'provider') {
      // we signed it ourselves: the peer took this much, whether it countersigned,
      // disputed or stayed silent (disputing everything must not keep a taker's standing up)
      this.standing.took(e.peer, tokens, at)
    } else {
      if (e.status === 'signed') this.standing.gave(e.peer, tokens, at)
      // the budget counts every answer peers served us, disputed or not: a cap errs on the safe side
      const day = utcDay(at)
      this.consumedByDay.set(day, (this.consumedByDay.get(day) ?? 0) + tokens)
    }
    if (!countsAsUsage(e)) return
    const side = e.role === 'provider' ? this.counters.served : this.counters.consumed
    side.prompt += e.promptTokens
    side.completion += e.completionTokens
    side.total += tokens
  }


  // ---- views --------------------------------------------------------------

  /** tokens peers served us in the current UTC day, and when that day ends */
  consumedToday (): { tokens: number, resetsAt: Date } {
    const now = this.now()
    const day = utcDay(now)
    for (const d of this.consumedByDay.keys()) if (d < day) this.consumedByDay.delete(d)
    const start = new Date(now)
    const resetsAt = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + 1))
    return { tokens: this.consumedByDay.get(day) ?? 0, resetsAt }
  }

  /** the peer's standing score in (-1, 1): what it served us against what it took, decayed */
  score (peer: string): number {
    return this.standing.score(peer)
  }

  balance (): Balance {
    const peers = this.ledger.balance().map(b => ({ ...b, standing: this.standing.view(b.peer) }))
    const sum = (pick: (b: PeerBalance) => TokenCounts): TokenCounts => peers.reduce((t, b) => {
      const c = pick(b)
      return { prompt: t.prompt + c.prompt, completion: t.completion + c.completion, total: t.total + c.total }
    }, { prompt: 0, completion: 0, total: 0 })
    const servedThem = sum(b => b.servedThem)
    const servedUs = sum(b => b.servedUs)
    return {
      peers,
      totals: {
        servedThem,
        servedUs,
        net: servedThem.total - servedUs.total,
        disputes: peers.reduce((n, b) => n + b.receipts.disputed + b.receipts.refused, 0),
        unreceipted: peers.reduce((n, b) => n + b.receipts.unreceipted, 0)
      }
    }
  }

  async entries (opts: { peer?: string, limit?: number } = {}): Promise<LedgerEntry[]> {
    await this.settled()
    return await this.ledger.entries(opts)
  }

  /** resolves when every receipt settled so far is in the ledger */
  async settled (): Promise<void> {
    await Promise.allSettled([...this.pending])
    await this.ledger.flush()
  }

  private track (p: Promise<unknown>): void {
    this.pending.add(p)
    void p.catch(() => {}).finally(() => this.pending.delete(p))
  }

  private pruneNonces (): void {
    const cutoff = this.now() - 2 * this.skewMs
    for (const [k, at] of this.nonces) if (at < cutoff) this.nonces.delete(k)
  }
}

/** The receipt book as a libp2p service (`services: { receipts: receipts() }`). */
export function receipts (init: ReceiptBookInit = {}): (components: ReceiptBookComponents) => ReceiptBook {
  return (components) => new ReceiptBook(components, init)
}

function count (n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.min(Math.round(n), 0xffffffff) : 0
}

function b64 (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

function utcDay (ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}
