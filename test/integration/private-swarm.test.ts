/**
 * Private swarms (libp2p pnet): nodes holding the same swarm key form a swarm and
 * chat; a node with another key, or with none, cannot connect in either direction.
 * A malformed key file stops `krill daemon` with a clear message and exit code 1.
 */
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { runKrill } from '../helpers/cli.js'
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'

describe('private swarms', () => {
  let dir: string
  let standin: OllamaStandin
  const nodes: TestDaemon[] = []
  let a1: TestDaemon, a2: TestDaemon, b: TestDaemon, open: TestDaemon

  beforeAll(async () => {
    dir = await tempDir('krill-pnet-')
    // key A comes from the CLI command people use; key B from the library
    const made = await runKrill(['swarm-key', 'new'])
    expect(made.code).toBe(0)
    await writeFile(join(dir, 'a.key'), made.stdout)
    const keyB = new Uint8Array(95)
    generateKey(keyB)
    await writeFile(join(dir, 'b.key'), keyB)

    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    a1 = await startTestDaemon({ swarmKey: join(dir, 'a.key'), ollama: standin.url, modelRefreshMs: 200 })
    nodes.push(a1)
    a2 = await startTestDaemon({ swarmKey: join(dir, 'a.key'), bootstrap: [a1.daemon.addrs()[0]] })
    nodes.push(a2)
    b = await startTestDaemon({ swarmKey: join(dir, 'b.key') })
    nodes.push(b)
    open = await startTestDaemon({ ownSwarm: true })
    nodes.push(open)
  })

  afterAll(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    await standin?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('`krill swarm-key new` writes a key file in the pnet format', async () => {
    const made = await runKrill(['swarm-key', 'new'])
    expect(made.stdout).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
  })

  it('connects nodes that share a key, and they chat', async () => {
    await waitFor(() => a2.daemon.libp2p.getPeers().map(String).includes(a1.daemon.peerId.toString()), 'the same-key nodes to connect')
    await waitFor(() => a2.daemon.providers.providersFor(MODEL).length === 1, 'the same-key consumer to learn the provider')
    const res = await fetch(`${a2.daemon.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
    })
    expect(res.status).toBe(200)
    const body = await res.json() as { choices: Array<{ message: { content: string } }> }
    expect(body.choices[0].message.content).toBe(DEFAULT_TOKENS.join(''))
    expect(a1.daemon.chatServer?.stats.counters.completed).toBe(1)
  })

  it('refuses connections between different keys, and between a keyed and an unkeyed node, both ways', async () => {
    const pairs: Array<[TestDaemon, TestDaemon, string]> = [
      [b, a1, 'key B → key A'],
      [a1, b, 'key A → key B'],
      [open, a1, 'no key → key A'],
      [a1, open, 'key A → no key']
    ]
    for (const [from, to, what] of pairs) {
      const started = Date.now()
      const dialed = await from.daemon.libp2p.dial(multiaddr(to.daemon.addrs()[0]), { signal: AbortSignal.timeout(10_000) })
        .then(() => 'connected', (err: Error) => err.name)
      expect(dialed, what).not.toBe('connected')
      // the handshake fails fast; it does not hang until the timeout
      expect(Date.now() - started, what).toBeLessThan(9_000)
    }
    // nothing slipped through in the meantime, not even from their dialers
    const a1Peers = a1.daemon.libp2p.getPeers().map(String)
    expect(a1Peers).not.toContain(b.daemon.peerId.toString())
    expect(a1Peers).not.toContain(open.daemon.peerId.toString())
    expect(b.daemon.libp2p.getPeers()).toHaveLength(0)
    expect(open.daemon.libp2p.getPeers()).toHaveLength(0)
    // and nobody outside learned the swarm's model
    expect(open.daemon.providers.providersFor(MODEL)).toHaveLength(0)
    expect(b.daemon.providers.providersFor(MODEL)).toHaveLength(0)
  })
})

describe('a malformed swarm key file', () => {
  it('stops `krill daemon` with a clear error and exit code 1', async () => {
    const dir = await tempDir('krill-badkey-')
    try {
      const key = join(dir, 'swarm.key')
      await writeFile(key, '/key/swarm/psk/1.0.0/\n/base16/\ndeadbeef\n')
      const run = await runKrill(['daemon', '--data-dir', join(dir, 'data'), '--swarm-key', key, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--no-mdns', '--no-serve'])
      expect(run.code).toBe(1)
      expect(run.stderr).toMatch(/swarm key .*swarm\.key is not a valid swarm key: the third line must be exactly 64 hex digits \(a 32-byte key\), got 8 characters; create one with `krill swarm-key new > swarm\.key`/)
      expect(run.stderr).not.toMatch(/at .*\.js:\d+/) // one line, no stack

      const missing = await runKrill(['daemon', '--data-dir', join(dir, 'data'), '--swarm-key', join(dir, 'nope.key'), '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--no-mdns', '--no-serve'])
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/cannot read swarm key .*nope\.key: ENOENT/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
