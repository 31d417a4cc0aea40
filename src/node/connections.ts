/**
 * Which connection a long-lived stream (a chat) goes on.
 *
 * libp2p's `dialProtocol(peerId)` ignores limited (relayed) connections when it
 * looks for an existing one, so with only a relayed connection every chat would
 * open yet another circuit through the relay. And right after a relayed
 * connection opens, DCUtR may be about to replace it by a direct one and close it,
 * taking any stream on it down. This picks deliberately:
 *
 * 1. an open direct connection;
 * 2. otherwise an open relayed one with enough of its relay's data and time
 *    budget left for a long answer — but when we are publicly reachable, the
 *    remote's DCUtR is about to dial us back and close that relayed connection
 *    (on a new relayed connection, or when our identify push tells it we became
 *    reachable), and a stream on it would die with it: so the first time a
 *    relayed connection is used while we are reachable, wait a few seconds for
 *    the direct one;
 * 3. otherwise dial (libp2p tries direct addresses before relayed ones), and
 *    when that gives a relayed connection, the same wait as in 2.
 *
 * When a connection is replaced anyway while a chat runs on it (DCUtR closes
 * the relayed connection a few seconds after its direct one opened, an AutoNAT
 * dial-back connection is closed after its check), the chat's stream dies with
 * it; replacementFor() tells the chat client that the peer is still there on
 * another connection, so the router asks the same provider again.
 */
import type { AbortOptions, Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { isPublicAddr, isRelayedAddr } from '../peers/index.js'

/** A relayed connection with less budget left than this is not used for a new chat. */
export const MIN_RELAY_BYTES_LEFT = 16n * 1024n * 1024n
export const MIN_RELAY_SECONDS_LEFT = 5 * 60
/** How long we wait for DCUtR to replace a relayed connection (its dial-back plus retries). */
export const UPGRADE_GRACE_MS = 4_000
/**
 * After a stream failed, how long we wait to see whether its connection was
 * replaced: the stream learns first and the connection reports its close a moment
 * later (a graceful close ends the streams, then the muxer, then the transport);
 * and when a relayed connection is replaced, the side that closes it has its
 * direct connection already, but our end of it may still be finishing its
 * handshake.
 */
export const REPLACEMENT_GRACE_MS = 1_000

/** relayed connections we already waited on once: if no upgrade came then, none is coming */
const waitedOn = new WeakSet<Connection>()

/** what openPreferDirect needs of a libp2p node */
export type Node = Pick<Libp2p, 'getConnections' | 'getMultiaddrs' | 'dial' | 'addEventListener' | 'removeEventListener'>

function isRelayed (conn: Connection): boolean {
  return isRelayedAddr(conn.remoteAddr)
}

/** Enough relay budget left for a long answer (unlimited connections always have). */
function hasBudget (conn: Connection): boolean {
  const limits = conn.limits
  if (limits == null) return true
  if (limits.bytes != null && limits.bytes < MIN_RELAY_BYTES_LEFT) return false
  if (limits.seconds != null && limits.seconds < MIN_RELAY_SECONDS_LEFT) return false
  return true
}

/** The best open connection to `peer` for a long stream, or undefined when there is none worth using. */
export function pickConnection (conns: Connection[]): Connection | undefined {
  const open = conns.filter(c => c.status === 'open')
  return open.find(c => !isRelayed(c) && c.limits == null) ??
    open.find(c => !isRelayed(c)) ??
    open.find(c => isRelayed(c) && hasBudget(c))
}

/** Resolves with a direct connection to `peer` once one opens, or undefined after `ms`. */
async function directWithin (node: Node, peer: PeerId, ms: number, signal?: AbortSignal): Promise<Connection | undefined> {
  const now = pickConnection(node.getConnections(peer))
  if (now != null && !isRelayed(now)) return now
  return await new Promise(resolve => {
    const done = (conn?: Connection): void => {
      clearTimeout(timer)
      node.removeEventListener('connection:open', onOpen)
      signal?.removeEventListener('abort', onAbort)
      resolve(conn)
    }
    const onOpen = (evt: CustomEvent<Connection>): void => {
      const conn = evt.detail
      if (conn.remotePeer.equals(peer) && !isRelayed(conn)) done(conn)
    }
    const onAbort = (): void => { done(undefined) }
    const timer = setTimeout(done, ms)
    node.addEventListener('connection:open', onOpen)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Opens a stream for `protocols` to `peer` on the best connection (see the top of
 * this file), dialing when there is none (libp2p tries direct addresses before
 * relayed ones). Relayed connections are allowed: a NATed provider may be
 * reachable no other way. Returns the connection too, for replacementFor().
 */
export async function openPreferDirect (node: Node, peer: PeerId, protocols: string | string[], options: AbortOptions = {}): Promise<{ stream: Stream, connection: Connection }> {
  let conn = pickConnection(node.getConnections(peer)) ?? await node.dial(peer, options)
  // only worth waiting when the remote can dial us back, i.e. we have a public address
  if (isRelayed(conn) && !waitedOn.has(conn) && node.getMultiaddrs().some(isPublicAddr)) {
    waitedOn.add(conn)
    conn = await directWithin(node, peer, UPGRADE_GRACE_MS, options.signal) ?? pickConnection(node.getConnections(peer)) ?? conn
  }
  try {
    return { stream: await conn.newStream(protocols, { ...options, runOnLimitedConnection: true }), connection: conn }
  } catch (err: any) {
    // a connection still listed as open whose muxer has closed: it was being closed
    // (trimmed by either side, or lost) as we picked it. Let it go and dial afresh, once.
    if (err?.name !== 'ConnectionClosedError' || options.signal?.aborted === true) throw err
    conn.abort(err)
    const fresh = await node.dial(peer, options)
    return { stream: await fresh.newStream(protocols, { ...options, runOnLimitedConnection: true }), connection: fresh }
  }
}

/**
 * Called after a stream on `conn` failed: the open connection to the same peer
 * that took `conn`'s place, or undefined when the stream's failure was not
 * `conn` going away (it is still open after a moment) or nothing replaced it.
 * A relayed connection's successor may still be opening: it gets a moment too.
 */
export async function replacementFor (node: Node, conn: Connection, signal?: AbortSignal): Promise<Connection | undefined> {
  const others = (): Connection | undefined => pickConnection(node.getConnections(conn.remotePeer).filter(c => c !== conn))
  // a direct connection alone: nothing is about to take its place, no need to wait
  if (!isRelayed(conn) && others() == null) return undefined
  // while `conn` is open, the stream failed on a live connection: the provider's doing
  const successor = (): Connection | undefined => conn.status === 'open' ? undefined : others()
  if (successor() != null || signal?.aborted === true) return successor()
  return await new Promise(resolve => {
    const check = (): void => {
      const found = successor()
      if (found != null) done(found)
    }
    const done = (found?: Connection): void => {
      clearTimeout(timer)
      conn.removeEventListener('close', check)
      node.removeEventListener('connection:open', check)
      signal?.removeEventListener('abort', onAbort)
      resolve(found)
    }
    const onAbort = (): void => { done(undefined) }
    const timer = setTimeout(() => { done(successor()) }, REPLACEMENT_GRACE_MS)
    conn.addEventListener('close', check)
    node.addEventListener('connection:open', check)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
