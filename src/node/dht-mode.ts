/**
 * DHT mode `auto`: whether this node answers DHT queries (server) or only asks
 * them (client), decided from what it knows about its own reachability.
 *
 * Why not libp2p's own automatic mode (kad-dht with `clientMode` unset): it turns
 * server only once the node has a public address. In a LAN or loopback swarm every
 * address is private, so no node would ever be a server and nothing could be
 * provided or found. And why not "always server": a DHT server lands in other
 * peers' routing tables and is handed out in their answers; a NATed server there
 * makes everyone's lookups wait on dials that cannot succeed.
 *
 * The rule, re-applied whenever our addresses or connections change:
 *
 * 1. we have a confirmed public address (AutoNAT v2 confirmed it, a UPnP mapping,
 *    or --announce): anyone can dial us → server;
 * 2. otherwise, we hold a relay reservation: peers beyond our network reach us only
 *    through the relay → client;
 * 3. otherwise, judge by our direct (non-relayed) connections:
 *    - all of them are to private or loopback addresses: a LAN or loopback swarm,
 *      where our peers reach our private address the way we reach theirs → server;
 *    - one is to a public address: the swarm reaches beyond our network, and out
 *      there nobody has confirmed that we can be dialed → client;
 * 4. no direct connection at all: nothing to judge by; keep the mode (a node starts
 *    as a client).
 */
import type { Connection, Libp2p } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import { logger } from '../log.js'
import { isPrivateAddr, isRelayedAddr } from '../peers/index.js'
import { publicAddrs, relayedAddrs } from './nat.js'

const log = logger('dht')

export type DhtServerMode = 'server' | 'client'

export interface DhtModeInput {
  /** confirmed public addresses of ours */
  publicAddrs: number
  /** addresses of ours through relays (reservations we hold) */
  relayedAddrs: number
  /** open direct connections: is the remote address private (or loopback)? */
  directRemotesPrivate: boolean[]
}

/** Rule 1–4 above: the mode to be in, and why; undefined keeps the current one. */
export function decideDhtMode (input: DhtModeInput): { mode: DhtServerMode, reason: string } | undefined {
  if (input.publicAddrs > 0) return { mode: 'server', reason: 'publicly reachable' }
  if (input.relayedAddrs > 0) return { mode: 'client', reason: 'reachable only through a relay' }
  if (input.directRemotesPrivate.length === 0) return undefined
  if (input.directRemotesPrivate.every(p => p)) return { mode: 'server', reason: 'peers reach us directly on a private network (LAN or loopback)' }
  return { mode: 'client', reason: 'connected beyond our private network, and no public address of ours is confirmed' }
}

function isPrivateRemote (conn: Connection): boolean {
  // not an IP address (e.g. a DNS name): not evidence of a private network
  return isPrivateAddr(conn.remoteAddr)
}

/** Switches the DHT between server and client by the rule above. */
export class AutoDhtMode {
  private node?: Libp2p
  /** setMode calls run one at a time; each applies the rule as it is then */
  private chain: Promise<void> = Promise.resolve()

  constructor (private readonly dht: Pick<KadDHT, 'getMode' | 'setMode'>) {}

  /** Starts following `node`; the DHT must have been created in client mode. */
  attach (node: Libp2p): void {
    this.node = node
    const update = (): void => { this.update() }
    node.addEventListener('start', update)
    node.addEventListener('self:peer:update', update)
    node.addEventListener('connection:open', update)
    node.addEventListener('connection:close', update)
  }

  private input (node: Libp2p): DhtModeInput {
    const direct = node.getConnections().filter(c => c.status === 'open' && !isRelayedAddr(c.remoteAddr))
    return {
      publicAddrs: publicAddrs(node).length,
      relayedAddrs: relayedAddrs(node).length,
      directRemotesPrivate: direct.map(isPrivateRemote)
    }
  }

  private update (): void {
    const node = this.node
    if (node == null || node.status !== 'started') return
    this.chain = this.chain.then(async () => {
      if (node.status !== 'started') return
      const decision = decideDhtMode(this.input(node))
      if (decision == null || decision.mode === this.dht.getMode()) return
      await this.dht.setMode(decision.mode)
      log.info(`DHT ${decision.mode} mode: ${decision.reason}`)
    }).catch((err: Error) => {
      log.warn(`could not switch the DHT mode: ${err.message}`)
    })
  }
}
