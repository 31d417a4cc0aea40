/**
 * QUIC next to TCP: two open-network nodes (network 'public': no swarm key) connect over QUIC (@chainsafe/libp2p-quic)
 * and chat on that connection; a TCP-only peer still reaches a QUIC node; a node of
 * a private swarm never listens on QUIC, because QUIC connections skip libp2p's
 * pnet protector and a peer without the key would get in.
 */
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'quicllama:1b'

describe('QUIC transport', () => {
  let standin: OllamaStandin
  let dir: string
  const nodes: TestDaemon[] = []
  let provider: TestDaemon

  beforeAll(async () => {
    dir = await tempDir('krill-quic-')
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    provider = await startTestDaemon({ network: 'public', listen: ['/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0'], ollama: standin.url, modelRefreshMs: 200 })
    nodes.push(provider)
  })

  afterAll(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    await standin?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('connects over QUIC and chats on that connection', async () => {
    const quicAddr = provider.daemon.addrs().find(a => a.includes('/quic-v1/'))
    expect(quicAddr, provider.daemon.addrs().join(', ')).toBeDefined()
    const consumer = await startTestDaemon({ network: 'public', listen: ['/ip4/127.0.0.1/udp/0/quic-v1'], bootstrap: [String(quicAddr)], serve: false })
    nodes.push(consumer)
    await waitFor(() => consumer.daemon.providers.providersFor(MODEL).length === 1, 'the consumer to learn the provider over QUIC')
    const conns = consumer.daemon.libp2p.getConnections(provider.daemon.peerId)
    expect(conns.map(c => c.remoteAddr.toString().includes('/quic-v1'))).toEqual([true])

    const res = await fetch(`${consumer.daemon.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
    })
    expect(res.status).toBe(200)
    const body = await res.json() as any
    expect(body.choices[0].message.content).toBe(DEFAULT_TOKENS.join(''))
    // still the one QUIC connection: the chat ran on it
    expect(consumer.daemon.libp2p.getConnections(provider.daemon.peerId).map(c => c.remoteAddr.toString().includes('/quic-v1'))).toEqual([true])
  })

  it('still lets a TCP-only peer in', async () => {
    const tcpAddr = provider.daemon.addrs().find(a => a.includes('/tcp/') && !a.includes('/ws'))
    const tcpOnly = await startTestDaemon({ network: 'public', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [String(tcpAddr)], serve: false })
    nodes.push(tcpOnly)
    await waitFor(() => tcpOnly.daemon.providers.providersFor(MODEL).length === 1, 'the TCP-only peer to learn the provider')
    expect(tcpOnly.daemon.libp2p.getConnections(provider.daemon.peerId).every(c => c.remoteAddr.toString().includes('/tcp/'))).toBe(true)
  })

  it('never listens on QUIC in a private swarm (QUIC would bypass the swarm key)', async () => {
    const key = new Uint8Array(95)
    generateKey(key)
    await writeFile(join(dir, 'swarm.key'), key)
    const member = await startTestDaemon({ swarmKey: join(dir, 'swarm.key'), listen: ['/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0'] })
    nodes.push(member)
    expect(member.daemon.addrs().length).toBeGreaterThan(0)
    expect(member.daemon.addrs().filter(a => a.includes('/quic'))).toEqual([])
    // and a keyless QUIC dial to it has nothing to reach
    const quicAddrOfProvider = multiaddr(String(provider.daemon.addrs().find(a => a.includes('/quic-v1/'))))
    await expect(member.daemon.libp2p.dial(quicAddrOfProvider, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
  })
})
