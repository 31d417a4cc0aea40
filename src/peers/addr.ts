/**
 * Addresses: what kind of multiaddr or host name is this? One answer for the whole
 * node (NAT, DHT mode, connection choice, UPnP, the API's bind and Host checks).
 *
 * Loopback means 127.0.0.0/8, ::1 (and ::ffff:127.x) and the name `localhost`.
 * The unspecified address 0.0.0.0 / :: is not loopback: bound to it, a server
 * listens on every interface, loopback included.
 */
import { BlockList, isIP } from 'node:net'
import { getNetConfig, isLoopback as isLoopbackMultiaddr, isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

function bare (host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

/** `localhost`, 127.0.0.0/8 or ::1 (brackets allowed: `[::1]`). */
export function isLoopbackHost (host: string): boolean {
  const h = bare(host.trim()).toLowerCase()
  if (h === 'localhost') return true
  const family = isIP(h)
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6')
}

/** 0.0.0.0 or :: — "every interface" when listening, "this host" when dialing. */
export function isUnspecifiedHost (host: string): boolean {
  const h = bare(host.trim())
  return h === '0.0.0.0' || (isIP(h) === 6 && /^[0:]+$/.test(h))
}

/**
 * The host of an HTTP `Host` header (`name[:port]`, `[v6][:port]`) when it is a
 * loopback name; anything else (other names, user info, paths) is not.
 */
export function isLoopbackHostHeader (value: string): boolean {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]/@?#\s]+)(?::\d{1,5})?$/i.exec(value)
  return m != null && isLoopbackHost(m[1])
}

/** A loopback IP multiaddr (`/ip4/127.0.0.1/…`, `/ip6/::1/…`). */
export function isLoopbackAddr (ma: Multiaddr): boolean {
  return isLoopbackMultiaddr(ma)
}

/** Where a relayed address goes through: `/…/p2p/<relay>/p2p-circuit/…`. */
export function relayOf (ma: Multiaddr): { relayed: boolean, relay?: string } {
  const parts = ma.getComponents()
  const circuit = parts.findIndex(c => c.name === 'p2p-circuit')
  if (circuit < 0) return { relayed: false }
  const relay = parts.slice(0, circuit).reverse().find(c => c.name === 'p2p')
  return { relayed: true, relay: relay?.value }
}

/** true for `/…/p2p/<relay>/p2p-circuit/…` addresses */
export function isRelayedAddr (ma: Multiaddr): boolean {
  return ma.getComponents().some(c => c.name === 'p2p-circuit')
}

/** A private, loopback or link-local IP address (not relayed). */
export function isPrivateAddr (ma: Multiaddr): boolean {
  if (isRelayedAddr(ma)) return false
  try {
    return isPrivate(ma) === true
  } catch {
    return false
  }
}

/** An IP address others on the internet can dial: not relayed, not private, loopback or link-local. */
export function isPublicAddr (ma: Multiaddr): boolean {
  if (isRelayedAddr(ma)) return false
  try {
    const { type } = getNetConfig(ma)
    if (type !== 'ip4' && type !== 'ip6') return false
  } catch {
    return false
  }
  return !isPrivate(ma)
}
