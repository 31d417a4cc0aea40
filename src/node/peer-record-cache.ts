/**
 * A datastore in front of krill's LevelDB that keeps libp2p's peer records
 * (`/peers/…`) in memory and writes them to disk behind the caller's back.
 *
 * Why: libp2p's peer store does `await peerStore.merge(peer, { protocols: [p] })`
 * for every stream it opens or accepts (connection.newStream, onIncomingStream) —
 * a LevelDB read and a LevelDB write, each a round trip through libuv's thread
 * pool, on both ends, before the first byte of a chat request goes out or is
 * handled. Those two awaits were the largest cost a chat stream's opening had in
 * the daemons' CPU profiles (classic-level's _get and _put, bench: ttft). Here a
 * record read is a Map lookup after the first time, and a write lands in memory at
 * once and on disk within FLUSH_MS, coalesced: a burst of streams from one peer is
 * one disk write, not one each.
 *
 * Peer records are soft state (addresses, protocols, keys libp2p relearns through
 * identify): losing the last second of updates to a crash costs nothing. Every
 * other key goes straight through. Queries and batches first flush what is
 * pending, so they see every write made before them; close() flushes too.
 */
import type { LevelDatastore } from 'datastore-level'

type Key = Parameters<LevelDatastore['put']>[0]
type Pair = { key: Key, value: Uint8Array }
type Options = Parameters<LevelDatastore['get']>[1]

const PREFIX = '/peers/'
/** how long a record write may wait in memory before it goes to disk */
export const FLUSH_MS = 1_000
/** records kept for reads at most (pending writes are never dropped) */
const MAX_CACHED = 10_000

export interface PeerRecordCacheOptions {
  flushMs?: number
  /** a flush failed (the records stay in memory and are tried again with the next flush) */
  onError?: (err: Error) => void
}

export class PeerRecordCache {
  private readonly inner: LevelDatastore
  private readonly flushMs: number
  private readonly onError: (err: Error) => void
  private readonly cache = new Map<string, Uint8Array>()
  private pending = new Map<string, Pair>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private closed = false
  private flushing: Promise<void> = Promise.resolve()

  constructor (inner: LevelDatastore, opts: PeerRecordCacheOptions = {}) {
    this.inner = inner
    this.flushMs = opts.flushMs ?? FLUSH_MS
    this.onError = opts.onError ?? (() => {})
  }

  /** writes not yet on disk (for tests) */
  get pendingWrites (): number {
    return this.pending.size
  }

  async open (): Promise<void> {
    await this.inner.open()
    this.closed = false
  }

  /** Writes what is pending, then closes the LevelDB. */
  async close (): Promise<void> {
    // from now on writes reach the LevelDB directly (and fail there once it is
    // closed), as without the cache: a write held back now could never be written,
    // and its timer would retry forever
    this.closed = true
    await this.flush()
    await this.inner.close()
  }

  put (key: Key, value: Uint8Array, options?: Options): Key | Promise<Key> {
    const k = key.toString()
    if (!k.startsWith(PREFIX) || this.closed) return this.inner.put(key, value, options)
    this.remember(k, value)
    this.pending.set(k, { key, value })
    if (this.timer == null) {
      this.timer = setTimeout(() => { void this.flush() }, this.flushMs)
      // close() flushes; the timer alone must not keep a process alive
      this.timer.unref()
    }
    return key
  }

  get (key: Key, options?: Options): Uint8Array | Promise<Uint8Array> {
    const k = key.toString()
    if (!k.startsWith(PREFIX)) return this.inner.get(key, options)
    const cached = this.cache.get(k)
    if (cached != null) return cached
    return this.inner.get(key, options).then(value => {
      // a put that came in meanwhile is newer than what the disk had
      if (!this.cache.has(k)) this.remember(k, value)
      return this.cache.get(k) ?? value
    })
  }

  has (key: Key, options?: Options): boolean | Promise<boolean> {
    const k = key.toString()
    if (k.startsWith(PREFIX) && this.cache.has(k)) return true
    return this.inner.has(key, options)
  }

  async delete (key: Key, options?: Options): Promise<void> {
    const k = key.toString()
    this.cache.delete(k)
    this.pending.delete(k)
    // a flush under way may still be writing the record: delete after it, not before
    if (k.startsWith(PREFIX)) await this.flushing
    await this.inner.delete(key, options)
  }

  async * putMany (source: Iterable<Pair> | AsyncIterable<Pair>, options?: Options): AsyncGenerator<Key> {
    for await (const { key, value } of source) yield await this.put(key, value, options)
  }

  async * getMany (source: Iterable<Key> | AsyncIterable<Key>, options?: Options): AsyncGenerator<Pair> {
    for await (const key of source) yield { key, value: await this.get(key, options) }
  }

  async * deleteMany (source: Iterable<Key> | AsyncIterable<Key>, options?: Options): AsyncGenerator<Key> {
    for await (const key of source) {
      await this.delete(key, options)
      yield key
    }
  }

  batch (): ReturnType<LevelDatastore['batch']> {
    const batch = this.inner.batch()
    return {
      put: (key: Key, value: Uint8Array) => {
        this.forget(key.toString())
        batch.put(key, value)
      },
      delete: (key: Key) => {
        this.forget(key.toString())
        batch.delete(key)
      },
      commit: async (options?: Options) => {
        // what was written before the batch goes first
        await this.flush()
        await batch.commit(options)
      }
    }
  }

  async * query (q: Parameters<LevelDatastore['query']>[0], options?: Options): AsyncGenerator<Pair> {
    await this.flush()
    yield * this.inner.query(q, options)
  }

  async * queryKeys (q: Parameters<LevelDatastore['queryKeys']>[0], options?: Options): AsyncGenerator<Key> {
    await this.flush()
    yield * this.inner.queryKeys(q, options)
  }

  /** Writes every pending record to disk (one LevelDB batch); resolves once they are there. */
  async flush (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    const run = async (): Promise<void> => {
      if (this.pending.size === 0) return
      const writes = this.pending
      this.pending = new Map()
      const batch = this.inner.batch()
      for (const { key, value } of writes.values()) batch.put(key, value)
      try {
        await batch.commit()
      } catch (err) {
        this.onError(err instanceof Error ? err : new Error(String(err)))
        // closing, or closed under us: there is no next flush
        if (this.closed || notOpen(err)) return
        // keep them for the next flush, unless a newer write took their place
        for (const [k, w] of writes) if (!this.pending.has(k)) this.pending.set(k, w)
        if (this.timer == null) {
          this.timer = setTimeout(() => { void this.flush() }, this.flushMs)
          this.timer.unref()
        }
      }
    }
    this.flushing = this.flushing.then(run)
    await this.flushing
  }

  private remember (k: string, value: Uint8Array): void {
    this.cache.delete(k)
    this.cache.set(k, value)
    if (this.cache.size <= MAX_CACHED) return
    // drop the least recently written or read record that is already on disk
    for (const old of this.cache.keys()) {
      if (!this.pending.has(old)) {
        this.cache.delete(old)
        break
      }
    }
  }

  private forget (k: string): void {
    this.cache.delete(k)
    this.pending.delete(k)
  }
}

/** LevelDB's error for a write to a database that is closed (maybe wrapped by the datastore) */
function notOpen (err: unknown): boolean {
  const code = (e: unknown): unknown => (e as { code?: unknown } | undefined)?.code
  return code(err) === 'LEVEL_DATABASE_NOT_OPEN' || code((err as { cause?: unknown } | undefined)?.cause) === 'LEVEL_DATABASE_NOT_OPEN'
}
