/**
 * The liveness service (src/node/liveness.ts) between two real libp2p nodes on
 * loopback: a peer that stops answering pings loses its connection after two failed
 * pings in a row, while a node whose own event loop is starved (blocked for longer
 * than a ping may take, again and again) keeps its connection and blames nobody.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { byteStream } from '@libp2p/utils'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { liveness, type Liveness } from '../../src/node/liveness.js'
import { waitFor } from '../helpers/wait.js'

const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const TIMEOUT_MS = 1_000

const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async n => { await n.stop() }))
})

async function pinger (): Promise<Libp2p<{ liveness: Liveness }>> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    services: { liveness: liveness({ intervalMs: 1_000, timeoutMs: TIMEOUT_MS, failuresToAbort: 2 }) }
  })
  nodes.push(node)
  return node
}

/** A peer that echoes pings after `echoAfterMs`, or (undefined) takes ping streams and never answers: hung, not gone. */
async function answerer (echoAfterMs?: number): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false }
  })
  await node.handle(PING_PROTOCOL, async (stream) => {
    if (echoAfterMs == null) return
    const bytes = byteStream(stream)
    const data = await bytes.read({ bytes: 32 })
    await new Promise(resolve => setTimeout(resolve, echoAfterMs))
    await bytes.write(data)
    await stream.close()
  })
  nodes.push(node)
  return node
}

function blockEventLoop (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* starve every timer and socket of this process */ }
}

describe('liveness', () => {
  it('aborts the connection to a peer that stops answering pings, after two failures in a row', async () => {
    const a = await pinger()
    const b = await answerer()
    await a.dial(b.getMultiaddrs()[0])
    await waitFor(() => a.services.liveness.aborted === 1, 'the connection to the hung peer to be aborted', 30_000)
    expect(a.getConnections(b.peerId)).toHaveLength(0)
    expect(a.services.liveness.excused).toBe(0)
  }, 40_000)

  it('keeps a connection through stalls of its own event loop longer than a ping may take', async () => {
    const a = await pinger()
    // every ping takes 300 ms (so its timeout is max(1 s, 4 × 300 ms) = 1.2 s): one is
    // always in flight when the loop stalls, and both its echo and its timeout fall due
    // inside the stall
    const b = await answerer(300)
    const conn = await a.dial(b.getMultiaddrs()[0])
    conn.rtt = undefined
    // the loop stalls for 3 s, again and again, with a breath in between
    const until = Date.now() + 10_000
    while (Date.now() < until) {
      blockEventLoop(3 * TIMEOUT_MS)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    await new Promise(resolve => setTimeout(resolve, 2_000))
    expect(a.services.liveness.aborted).toBe(0)
    expect(conn.status).toBe('open')
    // the pings went on meanwhile (each one takes the answerer's 300 ms), and were
    // answered: read once the loop got to the socket, or excused as our own lateness
    expect(conn.rtt).toBeGreaterThanOrEqual(300)
    console.log(`pings excused while the loop was starved: ${a.services.liveness.excused}; last round trip ${String(conn.rtt)} ms`)
  }, 40_000)
})
