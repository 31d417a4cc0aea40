/**
 * The libp2p service that writes invite tokens (`krill invite`, POST
 * /krill/v1/invite): the swarm key plus this node's dialable addresses, sealed
 * with the node's identity key (the libp2p component), so the token names exactly
 * the node that is running.
 */
import type { PrivateKey } from '@libp2p/interface'
import { isLoopbackAddr, isPrivateAddr, isRelayedAddr } from '../peers/index.js'
import type { Multiaddr } from '@multiformats/multiaddr'
import { encodeInvite, MAX_INVITE_ADDRS } from './invite-token.js'

export interface InviteServiceInit {
  /** the swarm's 32-byte key */
  swarmKey: Uint8Array
  now?: () => number
}

export interface InviteComponents {
  privateKey: PrivateKey
  /** libp2p's address manager: our addresses, each ending in /p2p/<our id> */
  addressManager: { getAddresses: () => Multiaddr[] }
}

export interface CreatedInvite {
  token: string
  /** ms since the epoch; null: never */
  expires: number | null
  /** the addresses in the token */
  addrs: string[]
}

/** Public, then relayed (reachable from anywhere), then LAN, then loopback addresses. */
export function inviteAddressOrder (addr: Multiaddr): number {
  if (isRelayedAddr(addr)) return 1
  if (isLoopbackAddr(addr)) return 3
  if (isPrivateAddr(addr)) return 2
  return 0
}

export class InviteService {
  private readonly components: InviteComponents
  private readonly init: InviteServiceInit

  constructor (components: InviteComponents, init: InviteServiceInit) {
    this.components = components
    this.init = init
  }

  readonly [Symbol.toStringTag] = 'krill:invite'

  /** The addresses an invite would carry now, best first. */
  addresses (): Multiaddr[] {
    return this.components.addressManager.getAddresses()
      .map((addr, i) => ({ addr, i, order: inviteAddressOrder(addr) }))
      .sort((a, b) => a.order - b.order || a.i - b.i)
      .map(a => a.addr)
      .slice(0, MAX_INVITE_ADDRS)
  }

  /** A token valid for `expiresInMs` from now (never expiring when omitted). */
  async create (opts: { expiresInMs?: number } = {}): Promise<CreatedInvite> {
    const now = (this.init.now ?? Date.now)()
    const addrs = this.addresses()
    if (addrs.length === 0) throw new Error('this node has no address anyone could dial yet; start it with --listen, or wait for a relay reservation')
    const expires = opts.expiresInMs != null ? now + opts.expiresInMs : undefined
    const token = await encodeInvite({ swarmKey: this.init.swarmKey, addrs, createdMs: now, expiresMs: expires }, this.components.privateKey)
    return { token, expires: expires ?? null, addrs: addrs.map(String) }
  }
}

export function inviteService (init: InviteServiceInit): (components: InviteComponents) => InviteService {
  return (components) => new InviteService(components, init)
}
