/**
 * The ledger: every served and received request, append-only in the node's own
 * datastore (the LevelDB libp2p uses) under /krill/ledger/. Entries older than
 * `retentionMs` fold into per-peer totals, so the ledger stays bounded; the totals
 * keep counting in the balance.
 *
 *   /krill/ledger/entry/<recorded ms, 13 digits>-<id>   one JSON entry
 *   /krill/ledger/folded/<peer id>                      totals of folded entries
 */
import { pipe } from 'it-pipe'
import { Key } from 'interface-datastore'
import type { ReceiptKind } from '../protocol/receipt-exchange.js'
import type { Datastore } from 'interface-datastore'

export const LEDGER_PREFIX = '/krill/ledger'
const ENTRY_PREFIX = `${LEDGER_PREFIX}/entry/`
const FOLDED_PREFIX = `${LEDGER_PREFIX}/folded/`

/**
 * signed: both signatures; disputed: the consumer refused to sign (its counts or
 * facts disagree); refused: the consumer refused a receipt that was malformed,
 * replayed or outside the clock-skew window; unreceipted: the other side sent no
 * receipt or no countersignature (an older krill, or it went away).
 */
export type EntryStatus = 'signed' | 'disputed' | 'refused' | 'unreceipted'

/** One ledger entry, as stored and as served by GET /krill/v1/ledger. */
export interface LedgerEntry {
  id: string
  /** our part in it */
  role: 'provider' | 'consumer'
  /** the other party */
  peer: string
  status: EntryStatus
  kind: ReceiptKind
  consumer: string
  provider: string
  model: string
  modelDigest: string
  promptTokens: number
  completionTokens: number
  /** ISO times; the provider's clock when there is a receipt, ours otherwise */
  startedAt: string
  finishedAt: string
  recordedAt: string
  /** hex; absent without a receipt */
  nonce?: string
  /** base64 of the exact signed bytes: "krill-receipt-v1\n" || encoded Receipt */
  signedBytes?: string
  providerSignature?: string
  consumerSignature?: string
  /** why it is disputed, refused or unreceipted */
  reason?: string
}

export interface TokenCounts {
  prompt: number
  completion: number
  total: number
}

/** What one peer and we did for each other, over the whole ledger (folded totals included). */
export interface PeerBalance {
  peer: string
  /** tokens we served this peer */
  servedThem: TokenCounts
  /** tokens this peer served us */
  servedUs: TokenCounts
  /** servedThem.total - servedUs.total: positive when we gave more than we got */
  net: number
  requests: { servedThem: number, servedUs: number }
  receipts: Record<EntryStatus, number>
}

interface Folded {
  servedThem: { prompt: number, completion: number, requests: number }
  servedUs: { prompt: number, completion: number, requests: number }
  receipts: Record<EntryStatus, number>
}

export interface LedgerOptions {
  /** entries older than this fold into per-peer totals (default 30 days) */
  retentionMs?: number
  now?: () => number
}

export const DEFAULT_RETENTION_MS = 30 * 24 * 3_600_000

function emptyFolded (): Folded {
  return {
    servedThem: { prompt: 0, completion: 0, requests: 0 },
    servedUs: { prompt: 0, completion: 0, requests: 0 },
    receipts: { signed: 0, disputed: 0, refused: 0, unreceipted: 0 }
  }
}

/** Whether an entry's tokens count as served (for balances and budgets): not when the consumer refused the claim. */
export function countsAsUsage (e: Pick<LedgerEntry, 'status'>): boolean {
  return e.status === 'signed' || e.status === 'unreceipted'
}

export class Ledger {
  private readonly store: Datastore
  private readonly retentionMs: number
  private readonly now: () => number
  /** per peer: the totals of every entry (folded or not) */
  private readonly totals = new Map<string, Folded>()
  /** the folded totals as stored (fold adds to them) */
  private readonly storedFolded = new Map<string, Folded>()
  private writes: Promise<void> = Promise.resolve()
  private seq = 0

  constructor (store: Datastore, opts: LedgerOptions = {}) {
    this.store = store
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS
    this.now = opts.now ?? Date.now
  }

  /** Loads the totals; calls `replay` with every entry still in the ledger, oldest first. */
  async load (replay: (e: LedgerEntry) => void = () => {}): Promise<void> {
    this.totals.clear()
    this.storedFolded.clear()
    for await (const { key, value } of this.store.query({ prefix: FOLDED_PREFIX })) {
      const peer = key.toString().slice(FOLDED_PREFIX.length)
      this.totals.set(peer, parseFolded(value))
      this.storedFolded.set(peer, parseFolded(value))
    }
    for await (const e of this.scan()) {
      this.count(e)
      replay(e)
    }
  }

  /** Appends an entry and waits until it is written. */
  async append (entry: Omit<LedgerEntry, 'id' | 'recordedAt'>, recordedAtMs = this.now()): Promise<LedgerEntry> {
    const full = this.record(entry, recordedAtMs)
    await this.flush()
    return full
  }

  /**
   * Appends an entry: counted at once, written in the background (writes are
   * serialized; `flush` waits for them, and a failed write is logged by `onError`).
   */
  record (entry: Omit<LedgerEntry, 'id' | 'recordedAt'>, recordedAtMs = this.now(), onError: (err: Error) => void = () => {}): LedgerEntry {
    const id = `${String(recordedAtMs).padStart(13, '0')}-${entry.nonce ?? `local${(this.seq++).toString(16)}${Math.random().toString(16).slice(2, 10)}`}`
    const full: LedgerEntry = { id, recordedAt: new Date(recordedAtMs).toISOString(), ...entry }
    this.count(full)
    const bytes = new TextEncoder().encode(JSON.stringify(full))
    this.writes = this.writes.then(async () => {
      await this.store.put(new Key(ENTRY_PREFIX + id), bytes)
    }).catch(onError)
    return full
  }

  async flush (): Promise<void> {
    await this.writes
  }

  /** Newest first; `peer` filters by the other party. */
  async entries (opts: { peer?: string, limit?: number } = {}): Promise<LedgerEntry[]> {
    const limit = opts.limit ?? 100
    const ring: LedgerEntry[] = []
    for await (const e of this.scan()) {
      if (opts.peer != null && e.peer !== opts.peer) continue
      ring.push(e)
      if (ring.length > limit) ring.shift()
    }
    return ring.reverse()
  }

  balance (): PeerBalance[] {
    return [...this.totals.entries()].map(([peer, t]) => toBalance(peer, t)).sort((a, b) => b.net - a.net || a.peer.localeCompare(b.peer))
  }

  /**
   * Folds entries recorded before now - retention into per-peer totals and deletes
   * them. The totals (and so the balance) do not change.
   */
  async fold (): Promise<number> {
    const cutoff = this.now() - this.retentionMs
    const old: Array<{ key: Key, entry: LedgerEntry }> = []
    for await (const { key, value } of this.store.query({ prefix: ENTRY_PREFIX })) {
      const entry = parseEntry(value)
      if (entry == null) continue
      if (Date.parse(entry.recordedAt) >= cutoff) break
      old.push({ key, entry })
    }
    if (old.length === 0) return 0
    const changed = new Set<string>()
    for (const { entry } of old) {
      const f = this.storedFolded.get(entry.peer) ?? emptyFolded()
      addTo(f, entry)
      this.storedFolded.set(entry.peer, f)
      changed.add(entry.peer)
    }
    const batch = this.store.batch()
    for (const peer of changed) {
      batch.put(new Key(FOLDED_PREFIX + peer), new TextEncoder().encode(JSON.stringify(this.storedFolded.get(peer))))
    }
    for (const { key } of old) batch.delete(key)
    const write = this.writes.then(async () => { await batch.commit() })
    this.writes = write.catch(() => {})
    await write
    return old.length
  }

  private scan (): AsyncIterable<LedgerEntry> {
    // keys start with the recording time: the datastore returns them oldest first
    return pipe(this.store.query({ prefix: ENTRY_PREFIX }), decodeEntries)
  }

  private count (e: LedgerEntry): void {
    const t = this.totals.get(e.peer) ?? emptyFolded()
    addTo(t, e)
    this.totals.set(e.peer, t)
  }
}

function addTo (f: Folded, e: LedgerEntry): void {
  f.receipts[e.status] = (f.receipts[e.status] ?? 0) + 1
  if (!countsAsUsage(e)) return
  const side = e.role === 'provider' ? f.servedThem : f.servedUs
  side.prompt += e.promptTokens
  side.completion += e.completionTokens
  side.requests++
}

function toBalance (peer: string, t: Folded): PeerBalance {
  const counts = (s: Folded['servedThem']): TokenCounts => ({ prompt: s.prompt, completion: s.completion, total: s.prompt + s.completion })
  const servedThem = counts(t.servedThem)
  const servedUs = counts(t.servedUs)
  return {
    peer,
    servedThem,
    servedUs,
    net: servedThem.total - servedUs.total,
    requests: { servedThem: t.servedThem.requests, servedUs: t.servedUs.requests },
    receipts: { ...t.receipts }
  }
}

function parseEntry (value: Uint8Array): LedgerEntry | undefined {
  try {
    const e = JSON.parse(new TextDecoder().decode(value))
    return typeof e?.peer === 'string' && typeof e?.recordedAt === 'string' ? e as LedgerEntry : undefined
  } catch {
    return undefined
  }
}

function parseFolded (value: Uint8Array): Folded {
  try {
    const f = JSON.parse(new TextDecoder().decode(value))
    const base = emptyFolded()
    return {
      servedThem: { ...base.servedThem, ...f.servedThem },
      servedUs: { ...base.servedUs, ...f.servedUs },
      receipts: { ...base.receipts, ...f.receipts }
    }
  } catch {
    return emptyFolded()
  }
}

/** stored ledger records → entries (an unreadable record is skipped) */
async function * decodeEntries (source: Iterable<{ value: Uint8Array }> | AsyncIterable<{ value: Uint8Array }>): AsyncGenerator<LedgerEntry> {
  for await (const { value } of source) {
    const entry = parseEntry(value)
    if (entry != null) yield entry
  }
}
