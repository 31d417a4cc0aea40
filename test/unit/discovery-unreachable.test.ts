/**
 * A provider a dial could not reach leaves the table, every shard record of it
 * included, and stays out until it announces something newer than all we had:
 * at scale its last announcements would list it for an hour.
 */
import { createHash } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import type { ValidAnnouncement } from '../../src/discovery/announcement.js'
import { ProviderTable } from '../../src/discovery/provider-table.js'
import { modelShard } from '../../src/discovery/shards.js'
import type { ModelInfo } from '../../src/engine/types.js'

const hex = (s: string): string => createHash('sha256').update(s).digest('hex')
const model = (name: string): ModelInfo => ({ name, digest: hex(name), size: 1, family: 'llama', parameterSize: '1B', quantization: 'Q8_0', contextLength: 8192 })
const ann = (seq: number, models: ModelInfo[]): ValidAnnouncement => ({ models, capacity: { slots: 1, active: 0, queued: 0 }, version: 'krill/0.1.0', seq, timestampMs: 0, ttlMs: 3_600_000 })

describe('ProviderTable.forgetUnreachable', () => {
  let now: number
  let table: ProviderTable
  const vanished: string[] = []

  beforeEach(() => {
    now = 1_000_000
    vanished.length = 0
    table = new ProviderTable({ selfId: 'self', now: () => now, seqMemoryMs: 60_000 })
    table.on('model:vanished', e => vanished.push(e.detail.model))
  })

  it('drops every record of the peer at once, and only a newer announcement lists it again', () => {
    const a = model('a:1')
    const b = model('b:1')
    table.applyAnnouncement('P', ann(10, [a]), { shard: modelShard(a.name) })
    table.applyAnnouncement('P', ann(11, [b]), { shard: modelShard(b.name) })
    table.applyAnnouncement('Q', ann(5, [a]), { shard: modelShard(a.name) })
    now += 1_000
    table.forgetUnreachable('P')
    expect(table.providersFor('a:1').map(e => e.peerId)).toEqual(['Q'])
    expect(table.providersFor('b:1')).toEqual([])
    expect(vanished.sort()).toEqual(['a:1', 'b:1'])
    // others are untouched, and what it said is remembered
    expect(table.lastSeq('P')).toBe(11)

    // a copy it made before (a replay, or an old record of a shard we never had,
    // handed on by the sync exchange) does not bring it back
    const c = model('c:1')
    expect(table.applyAnnouncement('P', ann(11, [b]), { shard: modelShard(b.name) })).toMatchObject({ ok: false, reason: 'stale-seq' })
    expect(table.applyAnnouncement('P', ann(9, [c]), { shard: modelShard(c.name) })).toMatchObject({ ok: false, reason: 'stale-seq' })
    expect(table.all().filter(e => e.peerId === 'P')).toEqual([])

    // it is back: its next announcement lists it again, and an older one is stale after all
    expect(table.applyAnnouncement('P', ann(12, [a]), { shard: modelShard(a.name) })).toMatchObject({ ok: true, appeared: 1 })
    expect(table.providersFor('a:1').map(e => e.peerId).sort()).toEqual(['P', 'Q'])
    expect(table.applyAnnouncement('P', ann(13, [c]), { shard: modelShard(c.name) })).toMatchObject({ ok: true })
  })

  it('lets a DHT lookup that reached the peer list it again (name only)', () => {
    table.applyAnnouncement('P', ann(10, [model('a:1')]), { shard: modelShard('a:1') })
    table.forgetUnreachable('P')
    expect(table.addDhtProviders('a:1', ['P'], { ttlMs: 60_000 }).map(e => e.source)).toEqual(['dht'])
  })

  it('forgets the floor once every announcement made before it has expired', () => {
    table.applyAnnouncement('P', ann(10, [model('a:1')]))
    table.forgetUnreachable('P')
    now += 3_600_000 + 60_000
    table.sweep()
    // the record (and its seq) is forgotten too: an announcement of any seq is new
    expect(table.lastSeq('P')).toBeUndefined()
    expect(table.applyAnnouncement('P', ann(3, [model('a:1')]))).toMatchObject({ ok: true })
  })
})
