/**
 * The relay's own rules, on loopback and in-process (no namespaces needed): what a
 * relayed connection may carry, and that one peer cannot take every circuit.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_RELAY_LIMITS } from '../../src/node/config.js'
import { waitFor } from '../helpers/wait.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { rm } from 'node:fs/promises'

describe('a relay node: limits sized for token streams, fair to every peer', () => {
  const nodes: TestDaemon[] = []
  let relay: TestDaemon
  let provider: TestDaemon
  let consumer: TestDaemon
  let circuitAddr: string
  const limits = { ...DEFAULT_RELAY_LIMITS, maxCircuitsPerPeer: 2, dataBytes: 64 * 1024 * 1024, durationMs: 30 * 60_000 }

  beforeAll(async () => {
    relay = await startTestDaemon({ relay: true, relayLimits: limits })
    nodes.push(relay)
    // a provider told to listen through this relay (as `--listen …/p2p-circuit` does)
    provider = await startTestDaemon({ listen: ['/ip4/127.0.0.1/tcp/0', `${relay.daemon.addrs()[0]}/p2p-circuit`] })
    nodes.push(provider)
    consumer = await startTestDaemon({})
    nodes.push(consumer)
    const found = provider.daemon.addrs().find(a => a.includes('/p2p-circuit/'))
    if (found == null) throw new Error(`provider has no relayed address: ${provider.daemon.addrs().join(', ')}`)
    circuitAddr = found
  })

  afterAll(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
  })

  it('grants each relayed connection the configured data and time budget, not libp2p\'s 128 KiB / 2 min', async () => {
    const conn = await consumer.daemon.libp2p.dial(multiaddr(circuitAddr), { force: true })
    try {
      expect(conn.limits, 'a relayed connection is limited').toBeDefined()
      // the full budget, less what identify and friends used already
      expect(conn.limits?.bytes).toBeLessThanOrEqual(BigInt(limits.dataBytes))
      expect(conn.limits?.bytes).toBeGreaterThan(BigInt(limits.dataBytes - 1024 * 1024))
      // libp2p reports whole seconds left of the relay's duration limit
      expect(conn.limits?.seconds).toBeGreaterThan(29 * 60)
    } finally {
      await conn.close()
    }
  })

  it('refuses a peer more than maxCircuitsPerPeer relayed connections at once, and lets it back in when one closes', async () => {
    const libp2p = consumer.daemon.libp2p
    const first = await libp2p.dial(multiaddr(circuitAddr), { force: true })
    const second = await libp2p.dial(multiaddr(circuitAddr), { force: true })
    // the relay answers the third with PERMISSION_DENIED (libp2p shows the status as text or number)
    await expect(libp2p.dial(multiaddr(circuitAddr), { force: true, signal: AbortSignal.timeout(10_000) })).rejects.toThrow(/status (PERMISSION_DENIED|201)/)
    // the refusal was the relay's and about this peer only: the relay still relays it
    expect(first.status).toBe('open')
    expect(second.status).toBe('open')
    await first.close()
    // the relay learns of the closed circuit a moment after our end closed it
    const again = await waitFor(async () => await libp2p.dial(multiaddr(circuitAddr), { force: true }), 'the relay to let the peer back in', 10_000)
    expect(again.status).toBe('open')
    await Promise.all([second.close(), again.close()])
  })
})
