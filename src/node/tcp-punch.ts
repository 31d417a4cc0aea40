/**
 * TCP hole punching between two peers that reach each other only through a relay
 * (protocol /krill/punch/1.0.0, spec in protocols/README.md).
 *
 * Why krill does this itself: libp2p's DCUtR dials only *confirmed* public
 * addresses, and behind a plain masquerading NAT nothing is ever confirmed —
 * js-libp2p's TCP transport dials from random ports (its observed addresses are
 * ignored), and @chainsafe/libp2p-quic dials from a client-only UDP socket of its
 * own, separate from the listener, which accepts no incoming handshake. So two
 * home NATs would stay on the relay forever.
 *
 * A NAT that keeps source ports (Linux masquerade and most home routers do when
 * the port is free) maps a local port P to public-ip:P. Over the relayed
 * connection each side sends the public IPv4 address another peer observed it at
 * and a free local port it will connect from (CONNECT, initiator first); the
 * initiator measures the round trip, sends SYNC, waits half of it and connects;
 * the responder connects when SYNC arrives. Both connect() calls target the
 * other's predicted public address from the announced local port, so each NAT
 * sees an outgoing SYN first and lets the other's SYN in: a TCP simultaneous
 * open, one connection. krill then runs the ordinary upgrade on it (pnet, noise,
 * yamux), with noise's initiator chosen by peer id order, and the remote peer
 * must prove the expected identity. The relayed connection is closed afterwards,
 * as DCUtR does; chats in flight continue on the direct connection.
 *
 * The side that accepted the relayed connection starts (as in DCUtR). One punch
 * per peer at a time, only towards public IPv4 addresses, a bounded number of
 * attempts: a stranger cannot turn a node into a port scanner.
 */
import { createServer, connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, StreamHandler, StreamHandlerOptions, Startable, Stream, Topology, TypedEventTarget, Upgrader } from '@libp2p/interface'
import { ipPortToMultiaddr, isPrivate, pbStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { Punch } from '../protocol/generated/punch.js'
import { SocketConnection } from './socket-connection.js'

export const PUNCH_PROTOCOL = '/krill/punch/1.0.0'
const MAX_MESSAGE_BYTES = 256

export interface TcpPunchInit {
  /** the whole exchange, punch included (default 15 s) */
  timeoutMs?: number
  /** connect attempts per punch (default 4) */
  attempts?: number
  /** how long one connect attempt may wait for the other side's SYN (default 3 s) */
  attemptTimeoutMs?: number
  /**
   * wait this long after a relayed connection opens before punching (default 2 s):
   * DCUtR goes first, and where it can (a peer with a public or forwarded
   * address) its direct connection makes the punch unnecessary
   */
  delayMs?: number
}

/** the part of libp2p's registrar we use */
export interface PunchRegistrar {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  register: (protocol: string, topology: Topology) => Promise<string>
  unregister: (id: string) => void
}

export interface TcpPunchComponents {
  peerId: PeerId
  registrar: PunchRegistrar
  connectionManager: { getConnections: (peer?: PeerId) => Connection[] }
  upgrader: Upgrader
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface TcpPunchStats {
  attempts: number
  succeeded: number
  failed: number
}

export class TcpPunch implements Startable {
  readonly stats: TcpPunchStats = { attempts: 0, succeeded: 0, failed: 0 }
  private readonly components: TcpPunchComponents
  private readonly log: Logger
  private readonly timeoutMs: number
  private readonly attempts: number
  private readonly attemptTimeoutMs: number
  private readonly delayMs: number
  private readonly busy = new Set<string>()
  private topologyId?: string
  private shutdown = new AbortController()
  /** our public IPv4 address, as the last peer that told identify saw it */
  private publicIp?: string

  constructor (components: TcpPunchComponents, init: TcpPunchInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('krill:punch')
    this.timeoutMs = init.timeoutMs ?? 15_000
    this.attempts = init.attempts ?? 4
    this.attemptTimeoutMs = init.attemptTimeoutMs ?? 3_000
    this.delayMs = init.delayMs ?? 2_000
  }

  readonly [Symbol.toStringTag] = 'krill/tcp-punch'

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    await this.components.registrar.handle(PUNCH_PROTOCOL, (stream: Stream, connection: Connection) => {
      void this.respond(stream, connection).catch(err => { this.fail(connection.remotePeer, err) })
    }, { runOnLimitedConnection: true, maxInboundStreams: 2, maxOutboundStreams: 2 })
    this.topologyId = await this.components.registrar.register(PUNCH_PROTOCOL, {
      notifyOnLimitedConnection: true,
      onConnect: (peer: PeerId, connection: Connection) => {
        if (!isRelayed(connection) || connection.direction !== 'inbound') return
        void this.initiate(connection).catch(err => { this.fail(peer, err) })
      }
    })
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    await this.components.registrar.unhandle(PUNCH_PROTOCOL)
    if (this.topologyId != null) this.components.registrar.unregister(this.topologyId)
    this.topologyId = undefined
  }

  private readonly onIdentify = (evt: CustomEvent<{ observedAddr?: import('@multiformats/multiaddr').Multiaddr, connection: Connection }>): void => {
    const observed = evt.detail.observedAddr
    if (observed == null || isRelayed(evt.detail.connection)) return
    const ip = publicIpv4(observed.toString())
    if (ip != null) this.publicIp = ip
  }

  /** We accepted a relayed connection: ask the other side to punch with us. */
  private async initiate (relayed: Connection): Promise<void> {
    const peer = relayed.remotePeer
    await sleep(this.delayMs, undefined, { signal: this.shutdown.signal }).catch(() => {})
    if (this.publicIp == null || relayed.status !== 'open' || this.hasDirect(peer) || !this.claim(peer)) return
    try {
      const signal = this.signal()
      const port = await freePort()
      const stream = await relayed.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal })
      const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE_BYTES }).pb(Punch)
      const sentAt = performance.now()
      await pb.write({ type: Punch.Type.CONNECT, ip: this.publicIp, port }, { signal })
      const theirs = checkConnect(await pb.read({ signal }))
      const rtt = performance.now() - sentAt
      await pb.write({ type: Punch.Type.SYNC, ip: '', port: 0 }, { signal })
      await stream.close({ signal })
      // the SYNC needs half a round trip to arrive: connect when the other side does
      await sleep(rtt / 2, undefined, { signal })
      await this.punch(relayed, port, theirs, signal)
    } finally {
      this.busy.delete(peer.toString())
    }
  }

  private async respond (stream: Stream, relayed: Connection): Promise<void> {
    const peer = relayed.remotePeer
    const signal = this.signal()
    const pb = pbStream(stream, { maxDataLength: MAX_MESSAGE_BYTES }).pb(Punch)
    const theirs = checkConnect(await pb.read({ signal }))
    if (!isRelayed(relayed) || this.publicIp == null || this.hasDirect(peer) || !this.claim(peer)) {
      await pb.write({ type: Punch.Type.REFUSE, ip: '', port: 0 }, { signal })
      await stream.close({ signal })
      return
    }
    try {
      const port = await freePort()
      await pb.write({ type: Punch.Type.CONNECT, ip: this.publicIp, port }, { signal })
      const sync = await pb.read({ signal })
      if (sync.type !== Punch.Type.SYNC) throw new Error(`expected SYNC, got ${sync.type}`)
      await stream.close({ signal })
      await this.punch(relayed, port, theirs, signal)
    } finally {
      this.busy.delete(peer.toString())
    }
  }

  /** Simultaneous open, then the ordinary upgrade; closes the relayed connection on success. */
  private async punch (relayed: Connection, localPort: number, remote: { ip: string, port: number }, signal: AbortSignal): Promise<void> {
    const peer = relayed.remotePeer
    this.stats.attempts++
    this.log('punching to %p at %s:%d from local port %d', peer, remote.ip, remote.port, localPort)
    const socket = await this.connectSimultaneously(localPort, remote, signal)
    const initiator = this.components.peerId.toString() < peer.toString()
    const maConn = new SocketConnection({
      socket,
      // the peer id in the address makes noise check who answered, on both sides
      remoteAddr: ipPortToMultiaddr(remote.ip, remote.port).encapsulate(`/p2p/${peer.toString()}`),
      direction: initiator ? 'outbound' : 'inbound',
      log: this.log.newScope(`${remote.ip}:${remote.port}`)
    })
    try {
      if (initiator) {
        await this.components.upgrader.upgradeOutbound(maConn, { signal })
      } else {
        await this.components.upgrader.upgradeInbound(maConn, { signal })
      }
    } catch (err) {
      maConn.abort(err as Error)
      throw err
    }
    this.stats.succeeded++
    this.log('direct connection to %p by TCP hole punch', peer)
    // like DCUtR: the direct connection replaces the relayed one
    await relayed.close({ signal: AbortSignal.timeout(5_000) }).catch(() => { relayed.abort(new Error('replaced by a direct connection')) })
  }

  private async connectSimultaneously (localPort: number, remote: { ip: string, port: number }, signal: AbortSignal): Promise<Socket> {
    let lastError: unknown
    for (let i = 0; i < this.attempts; i++) {
      signal.throwIfAborted()
      try {
        return await connectOnce(localPort, remote, AbortSignal.any([signal, AbortSignal.timeout(this.attemptTimeoutMs)]))
      } catch (err) {
        lastError = err
        // refused: the other side's SYN is not out yet (no NAT between us); try again shortly
        await sleep(100 + i * 200, undefined, { signal })
      }
    }
    throw new Error(`no TCP simultaneous open after ${this.attempts} attempts: ${String((lastError as Error)?.message ?? lastError)}`)
  }

  private hasDirect (peer: PeerId): boolean {
    return this.components.connectionManager.getConnections(peer).some(c => c.status === 'open' && !isRelayed(c))
  }

  private claim (peer: PeerId): boolean {
    const key = peer.toString()
    if (this.busy.has(key)) return false
    this.busy.add(key)
    return true
  }

  private signal (): AbortSignal {
    return AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.timeoutMs)])
  }

  private fail (peer: PeerId, err: any): void {
    if (this.shutdown.signal.aborted) return
    this.stats.failed++
    this.log('hole punch with %p failed: %s', peer, err?.message ?? err)
  }
}

export function tcpPunch (init: TcpPunchInit = {}): (components: TcpPunchComponents) => TcpPunch {
  return (components) => new TcpPunch(components, init)
}

function isRelayed (connection: Connection): boolean {
  return connection.remoteAddr.toString().includes('/p2p-circuit')
}

/** "/ip4/a.b.c.d/…" → "a.b.c.d" when that is a public address */
function publicIpv4 (addr: string): string | undefined {
  const m = /^\/ip4\/(\d{1,3}(?:\.\d{1,3}){3})\//.exec(addr)
  if (m == null) return undefined
  try {
    return isPrivate(multiaddr(`/ip4/${m[1]}/tcp/1`)) === true ? undefined : m[1]
  } catch {
    return undefined
  }
}

function checkConnect (msg: Punch): { ip: string, port: number } {
  if (msg.type !== Punch.Type.CONNECT) throw new Error(`expected CONNECT, got ${msg.type}`)
  const ip = publicIpv4(`/ip4/${msg.ip}/`)
  if (ip == null) throw new Error(`refusing to punch towards ${JSON.stringify(msg.ip)}: not a public IPv4 address`)
  if (!Number.isInteger(msg.port) || msg.port < 1024 || msg.port > 65535) throw new Error(`refusing to punch towards port ${msg.port}`)
  return { ip, port: msg.port }
}

/** A local port that is free now (the kernel picks it; released at once for our connect to bind). */
async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '0.0.0.0', () => {
      const address = server.address()
      server.close(() => { typeof address === 'object' && address != null ? resolve(address.port) : reject(new Error('no port')) })
    })
  })
}

async function connectOnce (localPort: number, remote: { ip: string, port: number }, signal: AbortSignal): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: remote.ip, port: remote.port, localPort, localAddress: '0.0.0.0', noDelay: true })
    const onAbort = (): void => { socket.destroy(); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort)
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', err => {
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      reject(err)
    })
  })
}
