import { describe, expect, it } from 'vitest'
import { decideDhtMode } from '../../src/node/dht-mode.js'

const mode = (publicAddrs: number, relayedAddrs: number, directRemotesPrivate: boolean[]): string | undefined =>
  decideDhtMode({ publicAddrs, relayedAddrs, directRemotesPrivate })?.mode

describe('dhtMode auto', () => {
  it('serves once a public address of ours is confirmed, whatever else holds', () => {
    expect(mode(1, 0, [])).toBe('server')
    expect(mode(1, 1, [false])).toBe('server')
  })

  it('only asks while peers reach us through a relay, even with LAN peers connected directly', () => {
    expect(mode(0, 1, [])).toBe('client')
    expect(mode(0, 1, [true, true])).toBe('client')
  })

  it('serves on a LAN or loopback swarm: every direct connection is to a private address', () => {
    expect(mode(0, 0, [true])).toBe('server')
    expect(mode(0, 0, [true, true, true])).toBe('server')
  })

  it('only asks when connected beyond its private network without a confirmed public address', () => {
    expect(mode(0, 0, [true, false])).toBe('client')
    expect(mode(0, 0, [false])).toBe('client')
  })

  it('keeps its mode while it has no direct connection to judge by', () => {
    expect(mode(0, 0, [])).toBeUndefined()
  })
})
