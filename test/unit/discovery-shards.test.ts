/**
 * Sharded announcements: the shard function's test vectors (protocols/README.md),
 * the per-model gossip quota, and the discovery simulator's design bound.
 */
import { describe, expect, it } from 'vitest'
import { modelShard, shardTopic, topicShard, SHARD_COUNT } from '../../src/discovery/shards.js'
import { GossipQuota, quotaTicket } from '../../src/discovery/gossip-quota.js'
import { simulate, SIM_POPULARITIES } from '../bench/discovery-sim.js'
import { SyncRequest } from '../../src/protocol/generated/sync.js'

const PEER = '12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7'

describe('model shards', () => {
  it('match the vectors in protocols/README.md', () => {
    // sha256("krill/model/v1/llama3.2:1b") = ebf23c4f…: the first 12 bits, 0xebf
    expect(modelShard('llama3.2:1b')).toBe(0xebf)
    expect(shardTopic(modelShard('llama3.2:1b'))).toBe('krill/models/2/ebf')
    // normalized first: untagged gets :latest, case folds
    expect(modelShard('Llama3')).toBe(modelShard('llama3:latest'))
    expect(shardTopic(modelShard('Llama3'))).toBe('krill/models/2/ebb')
    expect(shardTopic(0)).toBe('krill/models/2/000')
  })

  it('the sync request that asks for shard entries matches protocols/README.md', () => {
    expect(Buffer.from(SyncRequest.encode({ maxEntries: 1024, shards: true })).toString('hex')).toBe('0880081001')
  })

  it('parse only well-formed shard topics', () => {
    expect(topicShard('krill/models/2/ebf')).toBe(0xebf)
    expect(topicShard('krill/models/2/fff')).toBe(SHARD_COUNT - 1)
    for (const t of ['krill/models/1', 'krill/models/2/EBF', 'krill/models/2/eb', 'krill/models/2/1000', 'krill/models/2/xyz']) expect(topicShard(t)).toBeUndefined()
  })
})

describe('gossip quota', () => {
  // quotaTicket needs real peer ids
  const ids = ['12D3KooWNiaxdRdNTAuBrjVPFRckqayXmJJcumXeEXrrzDqadCax', PEER]

  it('tickets are fixed fractions per peer and model', () => {
    expect(quotaTicket(PEER, 'llama3.2:1b')).toBeCloseTo(0.71300936, 6)
    expect(quotaTicket(PEER, 'Llama3.2:1B')).toBe(quotaTicket(PEER, 'llama3.2:1b'))
    expect(quotaTicket(PEER, 'qwen3:8b')).not.toBe(quotaTicket(PEER, 'llama3.2:1b'))
  })

  it('announces while fewer than the quota do, and a first provider at once', () => {
    const q = new GossipQuota({ selfId: PEER, quota: 2, fillWindowMs: 60_000 })
    expect(q.decide('m:1', [], false, 0)).toEqual({ announce: true })
    expect(q.decide('m:1', [ids[0]], true, 0)).toEqual({ announce: true })
  })

  it('an announcer with quota lower tickets stops; a quiet one fills a vacancy only after its share of the window', () => {
    const self = PEER
    const mine = quotaTicket(self, 'm:1')
    const q = new GossipQuota({ selfId: self, quota: 1, fillWindowMs: 60_000 })
    const lower = ids.find(id => id !== self && quotaTicket(id, 'm:1') < mine)
    const higher = ids.find(id => id !== self && quotaTicket(id, 'm:1') > mine)
    if (lower != null) {
      expect(q.decide('m:1', [lower], true, 0).announce).toBe(false)
      expect(q.decide('m:1', [lower], false, 0).announce).toBe(false)
    }
    if (higher != null) {
      // among the lowest tickets: takes its place at once, and keeps it
      expect(q.decide('m:1', [higher], false, 0).announce).toBe(true)
      expect(q.decide('m:1', [higher], true, 0).announce).toBe(true)
    }
    // a vacancy (quota 2, one announcer left): wait ticket × window × 1/2
    const q2 = new GossipQuota({ selfId: self, quota: 2, fillWindowMs: 60_000 })
    const first = q2.decide('m:1', [ids[0]], false, 1_000)
    expect(first.announce).toBe(false)
    expect(first.recheckAt).toBe(1_000 + Math.floor(mine * 60_000 / 2))
    expect(q2.decide('m:1', [ids[0]], false, first.recheckAt as number).announce).toBe(true)
  })
})

describe('discovery simulator', () => {
  it('keeps a node\'s discovery traffic (gossip + sync + DHT) under 1 KB/s at 100k nodes, whatever the popularity; the one-topic design is far above', () => {
    for (const popularity of SIM_POPULARITIES) {
      const sharded = simulate({ nodes: 100_000, design: 'sharded', popularity })
      const one = simulate({ nodes: 100_000, design: 'one-topic', popularity })
      console.log(`100k nodes, ${popularity}: one topic ${(one.totalBytes / 1024).toFixed(0)} KB/s, sharded ${sharded.totalBytes.toFixed(0)} B/s (gossip + sync ${(sharded.gossipBytes + sharded.syncBytes).toFixed(0)}, DHT ${sharded.dhtBytes.toFixed(0)}) per node`)
      expect(sharded.totalBytes).toBeLessThanOrEqual(1024)
      expect(one.totalBytes).toBeGreaterThan(1024 * 1024)
    }
  })

  it('an uncapped DHT (every provider record in every answer) would break it for one very popular model', () => {
    const capped = simulate({ nodes: 100_000, design: 'sharded', popularity: 'same' })
    const uncapped = simulate({ nodes: 100_000, design: 'sharded', popularity: 'same', dhtShape: {} })
    expect(uncapped.dht.lookups).toBeGreaterThan(10 * capped.dht.lookups)
    expect(uncapped.totalBytes).toBeGreaterThan(1024)
  })

  it('counts the DHT in the total; lookups ask more peers in a larger network, and a running table refresh would cost more there', () => {
    const small = simulate({ nodes: 1_000, design: 'sharded' })
    const large = simulate({ nodes: 100_000, design: 'sharded' })
    expect(large.totalBytes).toBeCloseTo(large.gossipBytes + large.syncBytes + large.dhtBytes, 6)
    expect(large.dhtBytes).toBeCloseTo(large.dht.maintenance + large.dht.provide + large.dht.lookups, 6)
    expect(large.dht.askedPerLookup).toBeGreaterThan(small.dht.askedPerLookup)
    const refresh = (nodes: number): number => simulate({ nodes, design: 'sharded', dhtTableRefresh: true }).dht.maintenance
    expect(refresh(100_000)).toBeGreaterThan(refresh(1_000))
    expect(refresh(100_000)).toBeGreaterThan(large.dht.maintenance)
  })

  it('grows the one-topic cost with the swarm, linearly in the providers', () => {
    const a = simulate({ nodes: 10_000, design: 'one-topic' }).gossipBytes
    const b = simulate({ nodes: 100_000, design: 'one-topic' }).gossipBytes
    expect(b / a).toBeGreaterThan(8)
    expect(b / a).toBeLessThan(12)
  })
})
