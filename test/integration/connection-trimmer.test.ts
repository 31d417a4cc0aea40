/**
 * The connection trimmer (src/node/connection-trimmer.ts) on a real libp2p node
 * over its cap: a connection carrying a chat is kept, while one whose only chat
 * stream still waits for its request (a consumer's ready stream) is as closable as
 * an idle one — otherwise every consumer of the last minute pins its connection to
 * a popular provider, and the provider refuses newcomers at its cap.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { connectionTrimmer, type ConnectionTrimmer } from '../../src/node/connection-trimmer.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { waitFor } from '../helpers/wait.js'

const nodes: Libp2p[] = []
afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async n => { await n.stop() }))
})

async function node (services: Record<string, any> = {}): Promise<Libp2p<any>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    services
  })
  nodes.push(n)
  return n
}

describe('connection trimmer', () => {
  it('keeps a connection with a chat, and closes one whose chat stream only waits for its request', async () => {
    // the provider's streams that have sent a request (the chat server knows)
    const requested = new WeakSet<Stream>()
    const provider = await node({
      trimmer: connectionTrimmer({
        maxConnections: 1,
        keepProtocols: [CHAT_PROTOCOL],
        idleStream: s => !requested.has(s),
        graceMs: 0,
        silenceMs: 0,
        intervalMs: 60_000
      })
    })
    await provider.handle(CHAT_PROTOCOL, (stream: Stream) => {
      // the first byte is the request
      stream.addEventListener('message', () => { requested.add(stream) }, { once: true })
    })
    const [ready, chatting, idle] = [await node(), await node(), await node()]
    const addr = provider.getMultiaddrs()[0]

    // alone it is under the cap; once the second peer connects, the ready stream's
    // connection is the one to go (the old rule kept it, and closed the newcomer)
    const readyConn = await ready.dial(addr)
    await readyConn.newStream(CHAT_PROTOCOL)
    await waitFor(() => provider.getConnections()[0]?.streams.some(s => s.protocol === CHAT_PROTOCOL) === true, 'the ready stream at the provider')
    const chattingConn = await chatting.dial(addr)
    const chat = await chattingConn.newStream(CHAT_PROTOCOL)
    chat.send(new Uint8Array([1, 2, 3]))
    await waitFor(() => provider.getConnections().flatMap(c => c.streams).some(s => requested.has(s)), 'the provider to read the request')
    await waitFor(() => readyConn.status !== 'open', 'the ready stream\'s connection to be trimmed', 10_000)
    // a connection with nothing on it goes as well; the chat stays
    await idle.dial(addr)
    await waitFor(() => provider.getConnections().length === 1 && idle.getConnections().length === 0, 'the provider to trim the idle newcomer', 10_000)
    expect(provider.getConnections()[0].remotePeer.toString()).toBe(chatting.peerId.toString())
    expect(chattingConn.status).toBe('open')
    expect((provider.services.trimmer as ConnectionTrimmer).trimmed).toBe(2)
  }, 30_000)
})
