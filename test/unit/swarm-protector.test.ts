/**
 * krill's swarm-key protector speaks libp2p pnet (PSK v1): the same keystream as the
 * `xsalsa20` package @libp2p/pnet uses, whatever the chunking, and a plain js-libp2p
 * peer with @libp2p/pnet connects to a node using it (and one without the key does not).
 */
import { randomBytes } from 'node:crypto'
import { Socket } from 'node:net'
import { createRequire } from 'node:module'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { generateKey, preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { afterAll, describe, expect, it } from 'vitest'
import { swarmKeyBytes } from '../../src/network/swarm-key.js'
import { KeystreamXor, swarmKeyProtector } from '../../src/network/swarm-protector.js'

// the cipher @libp2p/pnet uses (a dependency of it), as the reference
const xsalsa20 = createRequire(import.meta.url)(createRequire(import.meta.url).resolve('xsalsa20', { paths: [createRequire(import.meta.url).resolve('@libp2p/pnet')] })) as (nonce: Uint8Array, key: Uint8Array) => { update: (d: Uint8Array) => Uint8Array, finalize: () => void }

describe('swarm-key protector', () => {
  it('produces the XSalsa20 keystream of pnet for any chunking', () => {
    const key = randomBytes(32)
    const nonce = randomBytes(24)
    const data = randomBytes(70_000)
    const reference = xsalsa20(nonce, key)
    const expected = reference.update(data)
    reference.finalize()
    for (const sizes of [[1], [63, 1, 64, 65], [7, 200, 3], [4096], [70_000]]) {
      const ours = new KeystreamXor(key, nonce)
      const out: Uint8Array[] = []
      let at = 0
      let i = 0
      while (at < data.length) {
        const n = Math.min(sizes[i++ % sizes.length], data.length - at)
        out.push(ours.update(data.subarray(at, at + n)))
        at += n
      }
      expect(Buffer.concat(out).equals(Buffer.from(expected)), `chunks of ${sizes.join(', ')}`).toBe(true)
    }
  })

  const nodes: Array<{ stop: () => Promise<void> }> = []
  afterAll(async () => { await Promise.allSettled(nodes.map(async n => { await n.stop() })) })

  it('interoperates with @libp2p/pnet, and shuts out a peer with another key', async () => {
    const file = new Uint8Array(95)
    generateKey(file)
    const other = new Uint8Array(95)
    generateKey(other)
    const node = (protector: any): any => createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: protector,
      services: { identify: identify(), ping: ping() }
    })
    const ours = await node(swarmKeyProtector(swarmKeyBytes(file)))
    const theirs = await node(preSharedKey({ psk: file }))
    const stranger = await node(preSharedKey({ psk: other }))
    nodes.push(ours, theirs, stranger)
    const conn = await theirs.dial(ours.getMultiaddrs()[0])
    expect(conn.remotePeer.equals(ours.peerId)).toBe(true)
    // streams flow both ways through the two implementations
    // bytes flow both ways through the two implementations: pings in each direction
    expect(await theirs.services.ping.ping(ours.peerId)).toBeGreaterThanOrEqual(0)
    expect(await ours.services.ping.ping(theirs.peerId)).toBeGreaterThanOrEqual(0)
    await expect(stranger.dial(ours.getMultiaddrs()[0], { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
    await expect(ours.dial(stranger.getMultiaddrs()[0], { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
  })

  it('what one turn sends goes out in one socket write; a large transfer still flows (back-pressure)', async () => {
    const file = new Uint8Array(95)
    generateKey(file)
    const key = swarmKeyBytes(file)
    const node = (): any => createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: swarmKeyProtector(key),
      services: { identify: identify(), ping: ping() }
    })
    const [a, b] = await Promise.all([node(), node()])
    nodes.push(a, b)
    let received = 0
    let want = 0
    let arrived: () => void = () => {}
    await b.handle('/krill-test/burst/1.0.0', (stream: any) => {
      stream.addEventListener('message', (evt: any) => {
        received += evt.data.byteLength
        if (received >= want) arrived()
      })
    })
    await a.dial(b.getMultiaddrs()[0])
    const stream = await a.dialProtocol(b.peerId, '/krill-test/burst/1.0.0')
    const deliver = async (n: number, send: () => void): Promise<void> => {
      want = received + n
      const done = new Promise<void>(resolve => { arrived = resolve })
      send()
      await done
    }
    // warm: the stream's opening frames are out of the way
    await deliver(10, () => { stream.send(new Uint8Array(10)) })
    const write = Socket.prototype.write
    let writes = 0
    Socket.prototype.write = function (this: Socket, ...args: any[]) { writes++; return (write as any).apply(this, args) } as any
    try {
      await deliver(20 * 100, () => { for (let i = 0; i < 20; i++) stream.send(new Uint8Array(100)) })
    } finally {
      Socket.prototype.write = write
    }
    // 20 yamux frames, 20 noise messages: a write or two (and the other end's window updates, in this process too); 20+ before
    expect(writes).toBeLessThanOrEqual(4)
    // 8 MiB: far past the socket's buffer and the yamux window, so writes wait for drains
    const big = new Uint8Array(64 * 1024)
    await deliver(128 * big.byteLength, () => {
      void (async () => {
        for (let i = 0; i < 128; i++) {
          if (!stream.send(big)) await new Promise(resolve => stream.addEventListener('drain', resolve, { once: true }))
        }
      })()
    })
    expect(received).toBeGreaterThanOrEqual(10 + 2000 + 128 * big.byteLength)
  }, 30_000)
  it('a transport that throws on a deferred write aborts the connection instead of throwing where nobody catches it', async () => {
    const file = new Uint8Array(95)
    generateKey(file)
    const key = swarmKeyBytes(file)
    const [rawOut, rawIn] = multiaddrConnectionPair()
    const [out] = await Promise.all([swarmKeyProtector(key)().protect(rawOut), swarmKeyProtector(key)().protect(rawIn)])
    // what a relayed connection does when its stream closed under it: its send throws while it still says 'open'
    ;(rawOut as any).send = () => { throw new Error('Cannot write to a stream that is closed') }
    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => { uncaught.push(err) }
    process.on('uncaughtException', onUncaught)
    try {
      out.send(new Uint8Array(10))
      await new Promise(resolve => setTimeout(resolve, 50))
    } finally {
      process.off('uncaughtException', onUncaught)
    }
    expect(uncaught).toEqual([])
    expect(out.status).not.toBe('open')
  })
})
