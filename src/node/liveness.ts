/**
 * Liveness of connections, in place of libp2p's connection monitor.
 *
 * libp2p's monitor pings every connection every 10 s with a 5 s (adaptive) timeout
 * and aborts the connection at the first late answer. On a saturated machine a late
 * answer means a busy event loop, not a dead peer: in a 50-node swarm on 2 cores the
 * aborts and the reconnections they caused (each one more handshake, more gossip,
 * more load) reached 1,785 new connections a minute. Here:
 *
 * - a connection is pinged every `intervalMs`, but one that carries a chat (or other
 *   busy protocol) only every `busyIntervalMs`: its streams show it is alive;
 * - a ping may take `timeoutMs` (at least; 4 × the last round trip if that is longer);
 * - only `failuresToAbort` failed pings in a row abort the connection;
 * - a ping that failed while our own event loop was starved says nothing about the
 *   peer and is not counted: its timeout fires only after the I/O that waited through
 *   the stall was read (libuv runs expired timers before polling sockets, so an echo
 *   sitting in the socket lost to its own timer), and a ping that took far longer than
 *   its timeout (the loop did not get to it) is let go. A node starved of CPU thus
 *   keeps its connections instead of dropping them all at once and reconnecting.
 *
 * Round-trip times go to `connection.rtt`, as libp2p's monitor does.
 */
import { performance } from 'node:perf_hooks'
import type { ComponentLogger, Connection, Logger, Startable } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'

const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_LENGTH = 32
/** a failed ping that took this many times its timeout was late on our side */
const STARVED_FACTOR = 1.5

/**
 * Aborts `ms` from now, but only after the sockets were polled: a timer that expired
 * during a stall of the event loop runs before the I/O that waited through it, and
 * setImmediate runs after that I/O has been read.
 */
function timeoutAfterIo (ms: number): AbortSignal {
  const ac = new AbortController()
  const timer = setTimeout(() => { setImmediate(() => { ac.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError')) }) }, ms)
  timer.unref?.()
  return ac.signal
}

export interface LivenessInit {
  /** between two pings of an idle connection (default 15 s) */
  intervalMs?: number
  /** between two pings of a connection carrying one of `busyProtocols` (default 60 s) */
  busyIntervalMs?: number
  busyProtocols?: string[]
  /** least time a ping may take (default 10 s) */
  timeoutMs?: number
  /** failed pings in a row that abort the connection (default 2) */
  failuresToAbort?: number
}

export interface LivenessComponents {
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

export interface Liveness {
  /** connections aborted because they stopped answering */
  readonly aborted: number
  /** failed pings not counted against their peer: our own event loop was starved */
  readonly excused: number
}

interface State { lastPingAt: number, failures: number, inFlight: boolean }

class ConnectionLiveness implements Liveness, Startable {
  readonly [Symbol.toStringTag] = 'krill:liveness'
  aborted = 0
  excused = 0
  private readonly components: LivenessComponents
  private readonly log: Logger
  private readonly intervalMs: number
  private readonly busyIntervalMs: number
  private readonly busyProtocols: Set<string>
  private readonly timeoutMs: number
  private readonly failuresToAbort: number
  private readonly state = new WeakMap<Connection, State>()
  private timer: ReturnType<typeof setInterval> | undefined
  private abort = new AbortController()

  constructor (components: LivenessComponents, init: LivenessInit) {
    this.components = components
    this.log = components.logger.forComponent('krill:liveness')
    this.intervalMs = init.intervalMs ?? 15_000
    this.busyIntervalMs = init.busyIntervalMs ?? 60_000
    this.busyProtocols = new Set(init.busyProtocols ?? [])
    this.timeoutMs = init.timeoutMs ?? 10_000
    this.failuresToAbort = init.failuresToAbort ?? 2
  }

  start (): void {
    this.abort = new AbortController()
    // look a few times per interval, so each connection is pinged about `intervalMs` after its last ping
    this.timer = setInterval(() => { this.tick() }, Math.max(1_000, Math.floor(this.intervalMs / 3)))
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.abort.abort()
  }

  private tick (): void {
    const now = Date.now()
    for (const conn of this.components.connectionManager.getConnections()) {
      if (conn.status !== 'open') continue
      let state = this.state.get(conn)
      if (state == null) {
        // a new connection just proved itself by its handshake
        state = { lastPingAt: now, failures: 0, inFlight: false }
        this.state.set(conn, state)
        continue
      }
      if (state.inFlight) continue
      const busy = conn.streams.some(s => this.busyProtocols.has(s.protocol ?? ''))
      if (now - state.lastPingAt < (busy ? this.busyIntervalMs : this.intervalMs)) continue
      state.inFlight = true
      state.lastPingAt = now
      const startedAt = performance.now()
      const timeoutMs = this.pingTimeout(conn)
      void this.ping(conn, timeoutMs).then(rtt => {
        conn.rtt = rtt
        state.failures = 0
      }, err => {
        if (this.abort.signal.aborted || conn.status !== 'open') return
        if (err?.name === 'UnsupportedProtocolError') {
          state.failures = 0
          return
        }
        const tookMs = performance.now() - startedAt
        if (tookMs > STARVED_FACTOR * timeoutMs) {
          this.excused++
          this.log('ping to %p failed after %d ms (timeout %d ms): our event loop was starved, not counted', conn.remotePeer, Math.round(tookMs), timeoutMs)
          return
        }
        state.failures++
        this.log('ping %d of %d to %p failed - %e', state.failures, this.failuresToAbort, conn.remotePeer, err)
        if (state.failures >= this.failuresToAbort) {
          this.aborted++
          this.log.error('aborting the connection to %p: %d pings in a row failed', conn.remotePeer, state.failures)
          conn.abort(err)
        }
      }).finally(() => { state.inFlight = false })
    }
  }

  private pingTimeout (conn: Connection): number {
    const rtt = Number.isFinite(conn.rtt) ? conn.rtt ?? 0 : 0
    return Math.max(this.timeoutMs, 4 * rtt)
  }

  private async ping (conn: Connection, timeoutMs: number): Promise<number> {
    const signal = AbortSignal.any([this.abort.signal, timeoutAfterIo(timeoutMs)])
    const stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
    try {
      const bytes = byteStream(stream)
      const start = Date.now()
      const data = crypto.getRandomValues(new Uint8Array(PING_LENGTH))
      await bytes.write(data, { signal })
      const echo = await bytes.read({ bytes: PING_LENGTH, signal })
      const ms = Date.now() - start
      if (!echo.subarray().every((b, i) => b === data[i])) throw new Error('wrong ping echo')
      await stream.close({ signal })
      return ms
    } catch (err: any) {
      stream.abort(err)
      throw err
    }
  }
}

export function liveness (init: LivenessInit = {}): (components: LivenessComponents) => Liveness {
  return (components) => new ConnectionLiveness(components, init)
}
