/**
 * The peer-record cache in front of a real LevelDB (temp dir): peer records are
 * read from memory and written behind, yet every query, batch and close sees them;
 * every other key goes straight to disk.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelDatastore } from 'datastore-level'
import { Key } from 'interface-datastore'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PeerRecordCache } from '../../src/node/peer-record-cache.js'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

describe('PeerRecordCache', () => {
  let dir: string
  let level: LevelDatastore
  let store: PeerRecordCache

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'krill-peer-cache-'))
    level = new LevelDatastore(dir)
    store = new PeerRecordCache(level, { flushMs: 60_000 })
    await store.open()
  })

  afterEach(async () => {
    await store.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  it('after close, a peer record write fails as it would on the closed LevelDB, and nothing is held back to retry', async () => {
    const errors: Error[] = []
    const watched = new PeerRecordCache(new LevelDatastore(join(dir, 'closed')), { flushMs: 10, onError: err => { errors.push(err) } })
    await watched.open()
    await watched.close()
    await expect(Promise.resolve().then(async () => await watched.put(new Key('/peers/late'), bytes('v')))).rejects.toThrow()
    expect(watched.pendingWrites).toBe(0)
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(errors).toEqual([])
  })

  it('a LevelDB closed under it (not through close()) fails the pending writes once, and retries nothing', async () => {
    const errors: Error[] = []
    const inner = new LevelDatastore(join(dir, 'under'))
    const watched = new PeerRecordCache(inner, { flushMs: 10, onError: err => { errors.push(err) } })
    await watched.open()
    watched.put(new Key('/peers/pending'), bytes('v'))
    await inner.close()
    await new Promise(resolve => setTimeout(resolve, 100))
    // one failed flush, then silence: not one retry every flushMs for ever
    expect(errors).toHaveLength(1)
    expect(watched.pendingWrites).toBe(0)
  })

  it('answers a peer record from memory at once and writes it to disk behind', async () => {
    const key = new Key('/peers/abc')
    // synchronous: no LevelDB round trip on the way
    expect(store.put(key, bytes('v1'))).toBe(key)
    const read = store.get(key)
    expect(read).toBeInstanceOf(Uint8Array)
    expect(text(read as Uint8Array)).toBe('v1')
    expect(await store.has(key)).toBe(true)
    expect(await level.has(key)).toBe(false)
    expect(store.pendingWrites).toBe(1)
    // a burst of writes to one record is one disk write of the last one
    store.put(key, bytes('v2'))
    store.put(key, bytes('v3'))
    expect(store.pendingWrites).toBe(1)
    await store.flush()
    expect(store.pendingWrites).toBe(0)
    expect(text(await level.get(key))).toBe('v3')
  })

  it('lets queries and batches see every write made before them', async () => {
    store.put(new Key('/peers/a'), bytes('1'))
    store.put(new Key('/peers/b'), bytes('2'))
    const seen: string[] = []
    for await (const { key, value } of store.query({ prefix: '/peers/' })) seen.push(`${key.toString()}=${text(value)}`)
    expect(seen.sort()).toEqual(['/peers/a=1', '/peers/b=2'])

    store.put(new Key('/peers/a'), bytes('older'))
    const batch = store.batch()
    batch.put(new Key('/peers/a'), bytes('newer'))
    await batch.commit()
    expect(text(await store.get(new Key('/peers/a')))).toBe('newer')
    expect(text(await level.get(new Key('/peers/a')))).toBe('newer')
  })

  it('persists what is pending on close, and reads it back after a restart', async () => {
    store.put(new Key('/peers/kept'), bytes('yes'))
    await store.close()
    const again = new PeerRecordCache(new LevelDatastore(dir))
    await again.open()
    try {
      expect(text(await again.get(new Key('/peers/kept')))).toBe('yes')
      // a miss is the underlying store's NotFoundError, as libp2p's peer store expects
      await expect(Promise.resolve(again.get(new Key('/peers/missing')))).rejects.toMatchObject({ name: 'NotFoundError' })
    } finally {
      await again.close()
    }
    store = new PeerRecordCache(new LevelDatastore(dir))
    await store.open()
  })

  it('sends every other key straight to disk, and deletes through', async () => {
    const dht = new Key('/dht/record/xyz')
    await store.put(dht, bytes('r'))
    expect(text(await level.get(dht))).toBe('r')
    const peer = new Key('/peers/gone')
    store.put(peer, bytes('x'))
    await store.delete(peer)
    expect(await store.has(peer)).toBe(false)
    await store.flush()
    expect(await level.has(peer)).toBe(false)
    // deleted while a flush is writing it: it stays deleted
    store.put(peer, bytes('again'))
    const flushing = store.flush()
    // let the flush hand its batch to LevelDB before the delete comes
    await Promise.resolve()
    await Promise.resolve()
    await store.delete(peer)
    await flushing
    expect(await level.has(peer)).toBe(false)
    expect(await store.has(peer)).toBe(false)
  })
})
