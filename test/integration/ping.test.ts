/**
 * /ipfs/ping/1.0.0 as other libp2p peers see it. A default js-libp2p peer allows one
 * outbound ping stream per peer and its connection monitor aborts the connection when
 * a ping cannot be sent: a responder that leaves ping streams half-open costs that
 * peer its connection to us, and every chat on it (src/node/ping.ts says why ours did).
 */
import { readFile, rm } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { requestChat } from '../../src/protocol/chat-client.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { testSwarmKey } from '../helpers/test-swarm-key.js'
import { waitFor } from '../helpers/wait.js'
import type { ChatEvent } from '../../src/engine/types.js'
import type { Ping } from '@libp2p/ping'

const MODEL = 'llama3.2:1b'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
})

async function daemon (flags: Parameters<typeof startTestDaemon>[0] = {}): Promise<TestDaemon> {
  const node = await startTestDaemon(flags)
  cleanups.push(async () => {
    await node.daemon.stop()
    await rm(node.config.dataDir, { recursive: true, force: true })
  })
  return node
}

/**
 * js-libp2p as anyone would set it up: default ping service, default connection
 * monitor — a member of the test's swarm (krill is private by default: the swarm key
 * is the only thing it has that a stranger would not).
 */
async function plainPeer (): Promise<Libp2p<{ identify: unknown, ping: Ping }>> {
  const node = await createLibp2p({
    connectionProtector: preSharedKey({ psk: await readFile(testSwarmKey()) }),
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping() }
  })
  cleanups.push(async () => { await node.stop() })
  return node
}

describe('ping responder', () => {
  it('a default js-libp2p peer pings a krill node every second for 60 s: every ping answers, no stream is left open, and a chat on the same connection runs through untouched', async () => {
    // one token a second: the answer streams for the whole minute of pings
    const tokens = Array.from({ length: 64 }, (_, i) => ` t${i}`)
    const standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokens, tokensPerSecond: 1 } })
    cleanups.push(async () => { await standin.stop() })
    const krill = await daemon({ ollama: standin.url, modelRefreshMs: 200 })
    await waitFor(() => krill.daemon.localModels().length > 0, 'the provider to list its model')

    const peer = await plainPeer()
    const conn = await peer.dial(multiaddr(krill.daemon.addrs()[0]))
    const target = krill.daemon.peerId

    const events: ChatEvent[] = []
    const chat = (async () => {
      for await (const event of requestChat(peer, target, { model: MODEL, messages: [{ role: 'user', content: 'count slowly' }] })) events.push(event)
    })()
    await waitFor(() => events.some(e => e.type === 'delta'), 'the first token of the chat')

    const failures: string[] = []
    const lingering: number[] = []
    let overlaps = 0
    const pingStreams = (): Array<{ ageMs: number }> => conn.streams
      .filter(s => s.protocol === PING_PROTOCOL && s.direction === 'outbound')
      .map(s => ({ ageMs: Date.now() - s.timeline.open }))
    for (let i = 0; i < 60; i++) {
      const tick = Date.now()
      for (let attempt = 0; ; attempt++) {
        try {
          await peer.services.ping.ping(target, { signal: AbortSignal.timeout(10_000) })
          break
        } catch (err: any) {
          // the peer's own connection monitor pings this connection every 10 s on the
          // same protocol; on a loaded machine its ping and ours can overlap. That is a
          // ping in flight, not a stuck one: only a stream older than 3 s is ours to blame.
          const open = pingStreams()
          if (err?.name === 'TooManyOutboundProtocolStreamsError' && attempt === 0 && open.every(s => s.ageMs < 3_000)) {
            overlaps++
            await waitFor(() => pingStreams().length === 0, 'the overlapping ping to end', 10_000).catch(() => {})
            continue
          }
          failures.push(`ping ${i}: ${String(err?.name)} ${String(err?.message)} (ping streams open: ${JSON.stringify(open)})`)
          break
        }
      }
      // the pinger's own stream ends once both sides have closed; a responder that
      // keeps its half open leaves it in the connection's stream list
      await waitFor(() => !conn.streams.some(s => s.protocol === PING_PROTOCOL && s.direction === 'outbound' && Date.now() - s.timeline.open > 3_000) || undefined, 'no ping stream older than 3 s', 20_000)
        .catch(() => { lingering.push(i) })
      await new Promise(resolve => setTimeout(resolve, Math.max(0, 1_000 - (Date.now() - tick))))
    }

    await chat
    expect(failures).toEqual([])
    // overlapping with the monitor now and then is fine; every time is not
    expect(overlaps).toBeLessThan(10)
    expect(lingering).toEqual([])
    expect(conn.status).toBe('open')
    expect(peer.getConnections(target)).toEqual([conn])
    // the chat streamed every token and ended with Done, on the connection the pings used
    expect(events.filter(e => e.type === 'delta').map(e => e.content).join('')).toBe(tokens.join(''))
    expect(events.at(-1)?.type).toBe('done')
  }, 180_000)

  it('krill → krill: POST /krill/v1/ping/<peer> answers 20 times out of 20', async () => {
    const a = await daemon()
    const b = await daemon({ bootstrap: [a.daemon.addrs()[0]] })
    await waitFor(() => b.daemon.libp2p.getConnections(a.daemon.peerId).length > 0, 'b to connect to a')
    const answers: number[] = []
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${b.daemon.apiUrl}/krill/v1/ping/${a.daemon.peerId.toString()}`, { method: 'POST' })
      answers.push(res.status)
      const body = await res.json() as { rttMs?: number }
      if (res.status === 200) expect(body.rttMs).toBeTypeOf('number')
    }
    expect(answers).toEqual(Array(20).fill(200))
  }, 120_000)
})
