import { createHash } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { beforeEach, describe, expect, it } from 'vitest'
import { encodeAnnouncement, type ValidAnnouncement } from '../../src/discovery/announcement.js'
import { AnnouncementValidator } from '../../src/discovery/announcement-validator.js'
import { ProviderTable, type ProviderChange } from '../../src/discovery/provider-table.js'
import { PeerRateLimiter } from '../../src/limits/index.js'
import type { ModelInfo } from '../../src/engine/types.js'

const hex = (s: string): string => createHash('sha256').update(s).digest('hex')

function model (name: string, digest = hex(name), contextLength = 8192): ModelInfo {
  return { name, digest, size: 1000, family: 'llama', parameterSize: '1B', quantization: 'Q8_0', contextLength }
}

function ann (seq: number, models: ModelInfo[], ttlMs = 10_000, timestampMs = 0): ValidAnnouncement {
  return { models, capacity: { slots: 2, active: 0, queued: 0 }, version: 'krill/0.1.0', seq, timestampMs, ttlMs }
}

describe('ProviderTable', () => {
  let now: number
  let table: ProviderTable
  let events: Array<{ type: string } & ProviderChange>

  beforeEach(() => {
    now = 1_000_000
    table = new ProviderTable({ selfId: 'self', now: () => now, seqMemoryMs: 60_000 })
    events = []
    table.on('model:appeared', e => events.push({ type: 'appeared', ...e.detail }))
    table.on('model:vanished', e => events.push({ type: 'vanished', ...e.detail }))
  })

  it("replaces a peer's whole set with each announcement and reports the differences", () => {
    expect(table.applyAnnouncement('A', ann(1, [model('a:1'), model('b:1')]))).toEqual({ ok: true, appeared: 2, vanished: 0 })
    expect(table.providersFor('a:1').map(e => e.peerId)).toEqual(['A'])
    expect(table.providersFor('b:1')[0]).toMatchObject({ source: 'gossip', capacity: { slots: 2 }, version: 'krill/0.1.0', expiresAt: now + 10_000 })

    events.length = 0
    expect(table.applyAnnouncement('A', ann(2, [model('b:1', hex('new')), model('c:1')]))).toEqual({ ok: true, appeared: 2, vanished: 2 })
    expect(table.providersFor('a:1')).toEqual([])
    expect(table.providersFor('b:1', hex('new'))).toHaveLength(1)
    expect(table.providersFor('b:1', hex('b:1'))).toHaveLength(0)
    expect(events).toEqual(expect.arrayContaining([
      { type: 'vanished', model: 'a:1', digest: hex('a:1'), peerId: 'A' },
      { type: 'vanished', model: 'b:1', digest: hex('b:1'), peerId: 'A' },
      { type: 'appeared', model: 'b:1', digest: hex('new'), peerId: 'A' },
      { type: 'appeared', model: 'c:1', digest: hex('c:1'), peerId: 'A' }
    ]))

    // an empty announcement withdraws everything
    expect(table.applyAnnouncement('A', ann(3, []))).toMatchObject({ ok: true, vanished: 2 })
    expect(table.all()).toEqual([])
  })

  it('matches names case-insensitively and "x" as "x:latest"', () => {
    table.applyAnnouncement('A', ann(1, [model('Llama3:latest')]))
    expect(table.providersFor('llama3')).toHaveLength(1)
    expect(table.hasFreshAnnouncement('LLAMA3:latest')).toBe(true)
  })

  it('ignores replays and stale copies: seq must strictly increase per peer', () => {
    table.applyAnnouncement('A', ann(5, [model('a:1')]))
    expect(table.applyAnnouncement('A', ann(5, []))).toMatchObject({ ok: false, reason: 'stale-seq' })
    expect(table.applyAnnouncement('A', ann(4, []))).toMatchObject({ ok: false, reason: 'stale-seq' })
    expect(table.providersFor('a:1')).toHaveLength(1)
    // other peers have their own sequence
    expect(table.applyAnnouncement('B', ann(1, [model('a:1')]))).toMatchObject({ ok: true })
    expect(table.providersFor('a:1')).toHaveLength(2)
  })

  it('never lists this node itself', () => {
    expect(table.applyAnnouncement('self', ann(1, [model('a:1')]))).toMatchObject({ ok: false, reason: 'self' })
    expect(table.addDhtProviders('a:1', ['self'], { ttlMs: 1000 })).toEqual([])
    expect(table.all()).toEqual([])
  })

  it('drops entries at their expiry, and remembers the seq so a replay cannot resurrect them', () => {
    table.applyAnnouncement('A', ann(5, [model('a:1')], 10_000))
    now += 9_999
    expect(table.providersFor('a:1')).toHaveLength(1)
    now += 1
    // reads never return expired entries, even before the sweep ran
    expect(table.providersFor('a:1')).toHaveLength(0)
    expect(table.catalog()).toEqual([])
    expect(events.filter(e => e.type === 'vanished')).toHaveLength(0)
    table.sweep()
    expect(events.filter(e => e.type === 'vanished')).toEqual([{ type: 'vanished', model: 'a:1', digest: hex('a:1'), peerId: 'A' }])

    expect(table.applyAnnouncement('A', ann(5, [model('a:1')]))).toMatchObject({ ok: false, reason: 'stale-seq' })
    expect(table.lastSeq('A')).toBe(5)
    // long after, the record is forgotten (old copies would fail the timestamp check by then)
    now += 10_000 + 60_000
    table.sweep()
    expect(table.lastSeq('A')).toBeUndefined()
  })

  it('drops a disconnected peer at once but keeps its seq', () => {
    table.applyAnnouncement('A', ann(5, [model('a:1')]))
    table.addDhtProviders('z:1', ['A'], { ttlMs: 5000 })
    table.removePeer('A')
    expect(table.all()).toEqual([])
    expect(events.at(-1)).toMatchObject({ type: 'vanished', model: 'a:1' })
    expect(table.applyAnnouncement('A', ann(5, [model('a:1')]))).toMatchObject({ ok: false })
    expect(table.applyAnnouncement('A', ann(6, [model('a:1')]))).toMatchObject({ ok: true, appeared: 1 })
  })

  it('merges DHT providers (name only) with gossip, gossip winning', () => {
    table.applyAnnouncement('A', ann(1, [model('a:1')]))
    table.applyAnnouncement('W', ann(1, [model('a:1')]))
    table.applyAnnouncement('W', ann(2, []))
    const added = table.addDhtProviders('a:1', ['A', 'B', 'W'], { ttlMs: 5000 })
    // A: its live announcement is returned as is; W: withdrew, a DHT record cannot bring it back
    expect(added.map(e => [e.peerId, e.source])).toEqual([['A', 'gossip'], ['B', 'dht']])
    expect(table.providersFor('a:1').map(e => e.peerId).sort()).toEqual(['A', 'B'])
    const dhtEntry = table.providersFor('a:1').find(e => e.peerId === 'B')
    expect(dhtEntry).toMatchObject({ source: 'dht', model: { name: 'a:1', digest: '' }, capacity: { slots: 0 }, expiresAt: now + 5000 })
    // DHT entries are not announcements: no events
    expect(events.filter(e => e.peerId === 'B')).toEqual([])

    // B announces: its DHT entries give way to the signed announcement
    table.applyAnnouncement('B', ann(1, [model('c:1')]))
    expect(table.providersFor('a:1').map(e => e.peerId)).toEqual(['A'])

    // a lookup by digest records the digest; expiry applies as for gossip
    table.addDhtProviders('d:1', ['C'], { ttlMs: 5000, digest: hex('d') })
    expect(table.providersFor('d:1', hex('d'))).toHaveLength(1)
    expect(table.hasFreshAnnouncement('d:1')).toBe(false)
    now += 5000
    expect(table.providersFor('d:1')).toEqual([])
  })

  it('builds the catalog: one row per model with digests, provider count and the richest details', () => {
    table.applyAnnouncement('A', ann(1, [model('a:1', hex('x'), 4096), model('b:1')]))
    table.applyAnnouncement('B', ann(1, [model('a:1', hex('y'), 131072)]))
    table.addDhtProviders('a:1', ['C'], { ttlMs: 5000 })
    const catalog = table.catalog()
    expect(catalog.map(c => c.name)).toEqual(['a:1', 'b:1'])
    expect(catalog[0]).toMatchObject({ digests: [hex('x'), hex('y')].sort(), providers: 3, model: { contextLength: 131072 } })
  })

  it('bounds the number of peers it tracks', () => {
    const small = new ProviderTable({ selfId: 'self', maxPeers: 2, now: () => now })
    expect(small.applyAnnouncement('A', ann(1, [model('a:1')])).ok).toBe(true)
    expect(small.applyAnnouncement('B', ann(1, [model('a:1')])).ok).toBe(true)
    expect(small.applyAnnouncement('C', ann(1, [model('a:1')]))).toMatchObject({ ok: false, reason: 'table-full' })
    // known peers still update
    expect(small.applyAnnouncement('A', ann(2, [model('b:1')])).ok).toBe(true)
  })
})

describe('PeerRateLimiter', () => {
  it('allows a burst, then the sustained rate', () => {
    let now = 0
    const limiter = new PeerRateLimiter({ burst: 3, perMinute: 60, now: () => now })
    expect([1, 2, 3, 4].map(() => limiter.take('A'))).toEqual([true, true, true, false])
    expect(limiter.take('B')).toBe(true)
    now += 999
    expect(limiter.take('A')).toBe(false)
    now += 1
    expect(limiter.take('A')).toBe(true)
    expect(limiter.take('A')).toBe(false)
  })
})

describe('AnnouncementValidator', () => {
  let author: PeerId
  const now = 1_750_000_000_000

  beforeEach(async () => {
    author = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  })

  function signed (data: Uint8Array, from: PeerId = author): Message {
    // gossipsub has verified the signature before a validator runs; only from + data matter here
    return { type: 'signed', from, topic: 'krill/models/1', data, sequenceNumber: 1n, signature: new Uint8Array(64), key: (from as any).publicKey }
  }

  function bytes (seq: number, models = [model('a:1')]): Uint8Array {
    return encodeAnnouncement(ann(seq, models, 10_000, now)).bytes
  }

  it('accepts, ignores replays and rejects garbage, counting each by reason', () => {
    const table = new ProviderTable({ selfId: 'self', now: () => now })
    const validator = new AnnouncementValidator({ table, now: () => now })
    expect(validator.validate(author, signed(bytes(1)))).toBe(TopicValidatorResult.Accept)
    expect(validator.validate(author, signed(bytes(1)))).toBe(TopicValidatorResult.Ignore)
    expect(validator.validate(author, signed(new Uint8Array([1, 2, 3])))).toBe(TopicValidatorResult.Reject)
    expect(validator.validate(author, { type: 'unsigned', topic: 'krill/models/1', data: bytes(2) })).toBe(TopicValidatorResult.Reject)
    expect(validator.validate(author, signed(new Uint8Array(70_000)))).toBe(TopicValidatorResult.Reject)
    expect(validator.stats).toEqual({
      accepted: 1,
      rejected: 3,
      ignored: 1,
      rejectedByReason: { malformed: 1, unsigned: 1, 'too-large': 1 },
      ignoredByReason: { 'stale-seq': 1 }
    })
    expect(table.providersFor('a:1').map(e => e.peerId)).toEqual([author.toString()])
  })

  it('ignores an author over its announcement rate', () => {
    const table = new ProviderTable({ selfId: 'self', now: () => now })
    const validator = new AnnouncementValidator({ table, now: () => now, rateLimit: { burst: 5, perMinute: 10 } })
    const results = Array.from({ length: 8 }, (_, i) => validator.validate(author, signed(bytes(i + 1))))
    expect(results.filter(r => r === TopicValidatorResult.Accept)).toHaveLength(5)
    expect(validator.stats.ignoredByReason).toEqual({ 'rate-limited': 3 })
    expect(table.lastSeq(author.toString())).toBe(5)
  })
})
