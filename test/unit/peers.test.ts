/**
 * src/peers: one answer to "what kind of address is this?" and one round-trip-time
 * cache, driven here through the same port libp2p fills in the daemon.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { parsePeerId } from '../../src/peers/parse-peer-id.js'
import {
  isLoopbackAddr,
  isLoopbackHost,
  isLoopbackHostHeader,
  isPrivateAddr,
  isPublicAddr,
  isRelayedAddr,
  isUnspecifiedHost,
  RoundTripTimes,
  shortPeerId,
  type RttSource
} from '../../src/peers/index.js'

const RELAY = '12D3KooWRDJDZUhqwVwdmWgjSBFFGoXfVzHq7LhNQvMfR3hFMrCb'

describe('addresses', () => {
  it('has one loopback rule for hosts, Host headers and multiaddrs; 0.0.0.0 is not loopback', () => {
    for (const h of ['localhost', 'LocalHost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) {
      expect(isLoopbackHost(h), h).toBe(true)
    }
    for (const h of ['0.0.0.0', '::', '[::]', '192.168.1.2', '10.0.0.1', 'example.com', 'localhost.example.com', '128.0.0.1', '']) {
      expect(isLoopbackHost(h), h).toBe(false)
    }
    expect(isUnspecifiedHost('0.0.0.0')).toBe(true)
    expect(isUnspecifiedHost('[::]')).toBe(true)
    expect(isUnspecifiedHost('127.0.0.1')).toBe(false)
    for (const h of ['localhost:11435', '127.0.0.1:80', '[::1]:5173', 'localhost', '[::1]']) expect(isLoopbackHostHeader(h), h).toBe(true)
    for (const h of ['attacker.example:11435', 'localhost@evil.example', 'localhost/x', '0.0.0.0:11435', '127.0.0.1:80:80', '']) expect(isLoopbackHostHeader(h), h).toBe(false)
    expect(isLoopbackAddr(multiaddr('/ip4/127.0.0.1/tcp/4747'))).toBe(true)
    expect(isLoopbackAddr(multiaddr('/ip6/::1/tcp/4747'))).toBe(true)
    expect(isLoopbackAddr(multiaddr('/ip4/0.0.0.0/tcp/4747'))).toBe(false)
  })

  it('tells relayed, private and public addresses apart', () => {
    const relayed = multiaddr(`/ip4/198.51.100.1/tcp/4747/p2p/${RELAY}/p2p-circuit`)
    expect(isRelayedAddr(relayed)).toBe(true)
    expect(isPublicAddr(relayed)).toBe(false)
    expect(isPrivateAddr(relayed)).toBe(false)
    expect(isPublicAddr(multiaddr('/ip4/1.1.1.1/tcp/4747'))).toBe(true)
    expect(isPrivateAddr(multiaddr('/ip4/192.168.1.5/tcp/4747'))).toBe(true)
    expect(isPublicAddr(multiaddr('/ip4/192.168.1.5/tcp/4747'))).toBe(false)
    expect(isPublicAddr(multiaddr('/ip4/127.0.0.1/tcp/4747'))).toBe(false)
    expect(isPublicAddr(multiaddr('/dns4/example.com/tcp/4747'))).toBe(false)
    expect(isPrivateAddr(multiaddr('/dns4/example.com/tcp/4747'))).toBe(false)
  })

  it('shortens peer ids for tables', () => {
    expect(shortPeerId(RELAY)).toBe(`12D3KooW…${RELAY.slice(-6)}`)
    expect(shortPeerId('short')).toBe('short')
  })
})

function conn (rtt: number | undefined, status: Connection['status'] = 'open'): Connection {
  return { rtt, status } as unknown as Connection
}

describe('RoundTripTimes', () => {
  async function setup (opts: { conns?: Connection[], ping?: RttSource['ping'] } = {}) {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let now = 1_000_000
    const pings: PeerId[] = []
    const state = { conns: opts.conns ?? [] }
    const source: RttSource = {
      getConnections: () => state.conns,
      ping: opts.ping ?? (async (p) => { pings.push(p); return 42 }),
      peerIdFromString
    }
    const rtt = new RoundTripTimes(source, { pingEveryMs: 30_000, freshForMs: 30_000, now: () => now })
    return { peer, id: peer.toString(), rtt, pings, state, advance: (ms: number) => { now += ms } }
  }

  it('takes the lowest RTT of open connections, without pinging', async () => {
    const { id, rtt, pings } = await setup({ conns: [conn(30), conn(12), conn(5, 'closed'), conn(undefined)] })
    expect(rtt.get(id)).toBe(12)
    expect(await rtt.current(id, 1_000)).toBe(12)
    expect(pings).toHaveLength(0)
  })

  it('pings in the background at most once per period and remembers the answer', async () => {
    const { id, rtt, pings, advance } = await setup()
    expect(rtt.get(id)).toBeUndefined()
    expect(rtt.get(id)).toBeUndefined()
    await new Promise(resolve => setImmediate(resolve))
    expect(pings).toHaveLength(1)
    expect(rtt.get(id)).toBe(42)
    advance(31_000)
    rtt.get(id)
    expect(pings).toHaveLength(2)
    expect(rtt.get('not a peer id')).toBeUndefined()
  })

  it('shares one ping between concurrent callers, retries "too many outbound streams", and never dials for display', async () => {
    let calls = 0
    let release: (ms: number) => void = () => {}
    const { peer, id, rtt, state, advance } = await setup({
      ping: async () => {
        calls++
        if (calls === 1) throw Object.assign(new Error('too many'), { name: 'TooManyOutboundProtocolStreamsError' })
        return await new Promise<number>(resolve => { release = resolve })
      }
    })
    // not connected: current() answers from the cache only
    expect(await rtt.current(id, 1_000)).toBeNull()
    expect(calls).toBe(0)
    const both = Promise.all([rtt.measure(peer, 5_000), rtt.measure(peer, 5_000)])
    await new Promise(resolve => setTimeout(resolve, 60))
    release(7)
    expect(await both).toEqual([7, 7])
    expect(calls).toBe(2)
    expect(rtt.fresh(id)).toBe(7)
    state.conns = [conn(undefined)]
    expect(await rtt.current(id, 1_000)).toBe(7)
    advance(31_000)
    expect(rtt.fresh(id)).toBeUndefined()
  })
})

describe('parsePeerId', () => {
  it('parses as peerIdFromString does, once per id, and throws on a bad id', async () => {
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const first = parsePeerId(id)
    expect(first.equals(peerIdFromString(id))).toBe(true)
    expect(first.toString()).toBe(id)
    // the same object the next time: no second parse
    expect(parsePeerId(id)).toBe(first)
    expect(() => parsePeerId('not-a-peer-id')).toThrow()
  })
})
