/**
 * A connected node:net Socket as a libp2p MultiaddrConnection, so the upgrader
 * can run noise and yamux over a TCP connection that krill opened itself (the
 * hole punch's simultaneous open) rather than one a transport dialed.
 */
import type { Socket } from 'node:net'
import type { AbortOptions, Logger, MessageStreamDirection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface SocketConnectionInit {
  socket: Socket
  remoteAddr: Multiaddr
  direction: MessageStreamDirection
  log: Logger
  /** idle time after which the socket is closed (libp2p's TCP default: 2 min) */
  inactivityTimeoutMs?: number
}

export class SocketConnection extends AbstractMultiaddrConnection {
  private readonly socket: Socket

  constructor (init: SocketConnectionInit) {
    super({ remoteAddr: init.remoteAddr, direction: init.direction, log: init.log })
    const socket = this.socket = init.socket
    socket.on('data', buf => { this.onData(buf) })
    socket.on('error', err => { this.abort(err) })
    socket.on('drain', () => { this.safeDispatchEvent('drain') })
    socket.once('end', () => { this.onTransportClosed() })
    socket.once('close', hadError => {
      if (hadError) this.abort(new Error('TCP transmission error'))
      else this.onTransportClosed()
    })
    socket.setTimeout(init.inactivityTimeoutMs ?? 120_000)
    socket.once('timeout', () => { this.abort(new Error('TCP connection idle for too long')) })
  }

  sendData (data: Uint8ArrayList): SendResult {
    let sentBytes = 0
    let canSendMore = true
    for (const buf of data) {
      sentBytes += buf.byteLength
      canSendMore = this.socket.write(buf)
      if (!canSendMore) break
    }
    return { sentBytes, canSendMore }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    if (this.socket.destroyed) return
    const closed = new Promise<void>(resolve => this.socket.once('close', () => { resolve() }))
    this.socket.destroySoon()
    await (options?.signal != null
      ? Promise.race([closed, new Promise<void>((resolve, reject) => options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true }))])
      : closed)
  }

  sendReset (): void {
    if (this.socket.writableEnded) this.socket.destroy()
    else this.socket.resetAndDestroy()
  }

  sendPause (): void {
    this.socket.pause()
  }

  sendResume (): void {
    this.socket.resume()
  }
}
