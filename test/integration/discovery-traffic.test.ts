/**
 * The scale bench at 10 nodes, inside `npm test`: real in-process daemons on
 * loopback, every one a provider of 3 models (test/bench/traffic-swarm.ts), their
 * received gossipsub bytes counted at the pubsub layer. Checks the simulator
 * (test/bench/discovery-sim.ts) against what the real swarm does, in both designs,
 * and the sharded design against its bound. The window is one refresh period (20 s),
 * so it holds about one publish per provider and shard: the cost per message
 * (copies, duplicates, control — what the simulator models) is checked within a
 * factor of 2, the message rate (a count of a few dozen) within 2.5. Bounds are
 * generous (a loaded 2-core machine delays messages, it does not add bytes); the
 * figures are printed.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { DEFAULT_LARGE_TTL_MS } from '../../src/discovery/announcer.js'
import { Cleanup } from '../bench/cleanup.js'
import { simulate, type SimResult } from '../bench/discovery-sim.js'
import { LOOPBACK_ADDRS } from '../bench/dht-sim.js'
import { COMPRESSED_TTL_MS, measureTraffic, type TrafficResult } from '../bench/traffic-swarm.js'

const cleanup = new Cleanup()
afterAll(async () => { await cleanup.closeAll() }, 60_000)

// one full refresh period (TTL/3 of 60 s): every provider publishes about once in it
const WINDOW_MS = 20_000
const log = (msg: string): void => { console.log(msg) }

function compare (what: string, r: TrafficResult, sim: SimResult): number {
  // announcements only: a 20 s window holds no DHT table refresh (every 5 min); the DHT is printed
  const real = r.idle.gossipBytesPerNode + r.idle.syncBytesPerNode
  const perMessage = real / r.idle.newMessagesPerNode
  const simPerMessage = (sim.gossipBytes + sim.syncBytes) / sim.messagesPerSecond
  console.log(`10 nodes, ${what}: measured ${real.toFixed(0)} B/s per node (${r.idle.newMessagesPerNode.toFixed(2)} new + ${r.idle.duplicatesPerNode.toFixed(2)} duplicate messages/s, ${perMessage.toFixed(0)} B per new message), simulated ${(sim.gossipBytes + sim.syncBytes).toFixed(0)} B/s (${sim.messagesPerSecond.toFixed(2)} messages/s, ${simPerMessage.toFixed(0)} B each); DHT measured ${r.idle.dhtBytesPerNode.toFixed(0)} B/s over ${r.idle.seconds.toFixed(0)} s, simulated ${sim.dhtBytes.toFixed(0)} B/s in steady state (its 5-min self-query; a 20 s window after start-up may hold provides and shard lookups); newcomer ${r.newcomer.map(ms => ms.toFixed(0)).join(', ')} ms`)
  // the stream meter and the gossip meter count the same bytes
  expect(Math.abs(r.idle.gossipStreamBytesPerNode - r.idle.gossipBytesPerNode)).toBeLessThanOrEqual(r.idle.gossipBytesPerNode * 0.05 + 1)
  expect(perMessage).toBeGreaterThan(simPerMessage / 2)
  expect(perMessage).toBeLessThan(simPerMessage * 2)
  expect(r.idle.newMessagesPerNode).toBeGreaterThan(sim.messagesPerSecond / 2.5)
  expect(r.idle.newMessagesPerNode).toBeLessThan(sim.messagesPerSecond * 2.5)
  expect(r.newcomerMisses).toBe(0)
  return real
}

describe('discovery traffic in a real 10-node swarm', () => {
  it('one topic (a small swarm): the simulator agrees with the measurement within a factor of 2', async () => {
    const r = await measureTraffic(cleanup, 10, 2, WINDOW_MS, log, false, false)
    await cleanup.closeAll()
    compare('one topic', r, simulate({ nodes: 10, design: 'one-topic', providerShare: 1, connections: 9, sessionHours: 1e6, modelChangesPerDay: 0, dhtAddrs: LOOPBACK_ADDRS }))
  }, 120_000)

  it('sharded: within a factor of 2 of the simulator, and ≤ 1 KB/s per node at the real TTL', async () => {
    const r = await measureTraffic(cleanup, 10, 2, WINDOW_MS, log, true, false)
    await cleanup.closeAll()
    const real = compare(`sharded (TTL ${COMPRESSED_TTL_MS / 1000} s)`, r, simulate({ nodes: 10, design: 'sharded', providerShare: 1, ttlMs: COMPRESSED_TTL_MS, sessionHours: 1e6, modelChangesPerDay: 0, popularity: 'same', usedModels: 0, dhtAddrs: LOOPBACK_ADDRS }))
    const atRealTtl = real * COMPRESSED_TTL_MS / DEFAULT_LARGE_TTL_MS
    console.log(`10 nodes, sharded: ${atRealTtl.toFixed(0)} B/s per node of announcements at the real 1 h TTL`)
    expect(atRealTtl).toBeLessThanOrEqual(1024)
  }, 120_000)
})
