/**
 * The private swarm's connection protector: libp2p's pnet (PSK v1) on the wire, so
 * any libp2p peer holding the swarm key connects, but with a cipher that does not
 * leak.
 *
 * Why not @libp2p/pnet itself: it XORs through the `xsalsa20` package, whose
 * WebAssembly instances take 64 bytes each from one shared, size-capped memory and
 * give them back only on `finalize()`, which pnet never calls. Two per connection,
 * never freed: a daemon runs out after roughly 130 000 connections in its lifetime
 * (every later connection fails with "WebAssembly.Memory.grow(): Maximum memory size
 * exceeded"), and a test process with 40 nodes ran out in minutes.
 *
 * The wire format is pnet's: each side sends a random 24-byte nonce, then every byte
 * in each direction is XORed with the XSalsa20 keystream of (swarm key, the sender's
 * nonce). The keystream comes from @noble/ciphers, plain JavaScript, nothing to free.
 */
import type { AbortOptions, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream, type SendResult } from '@libp2p/utils'
import { xsalsa20 } from '@noble/ciphers/salsa.js'
import type { Uint8ArrayList } from 'uint8arraylist'

export const NONCE_BYTES = 24
const BLOCK_BYTES = 64
/** how long the nonce exchange may take (pnet's default) */
const HANDSHAKE_TIMEOUT_MS = 1_000

/** One direction's keystream, applied to a byte stream in chunks of any size. */
export class KeystreamXor {
  private readonly key: Uint8Array
  private readonly nonce: Uint8Array
  /** keystream of the current block, and how much of it is used */
  private block = new Uint8Array(BLOCK_BYTES)
  private used = BLOCK_BYTES
  /** the next block's number */
  private counter = 0

  constructor (key: Uint8Array, nonce: Uint8Array) {
    this.key = key
    this.nonce = nonce
  }

  update (data: Uint8Array): Uint8Array {
    const out = new Uint8Array(data.byteLength)
    let i = 0
    while (i < data.byteLength && this.used < BLOCK_BYTES) out[i] = data[i++] ^ this.block[this.used++]
    const whole = (data.byteLength - i) - ((data.byteLength - i) % BLOCK_BYTES)
    if (whole > 0) {
      out.set(xsalsa20(this.key, this.nonce, data.slice(i, i + whole), undefined, this.counter), i)
      this.counter += whole / BLOCK_BYTES
      i += whole
    }
    if (i < data.byteLength) {
      this.block = xsalsa20(this.key, this.nonce, new Uint8Array(BLOCK_BYTES), undefined, this.counter++)
      this.used = 0
      while (i < data.byteLength) out[i] = data[i++] ^ this.block[this.used++]
    }
    return out
  }
}

function concat (chunks: Uint8Array[]): Uint8Array {
  let size = 0
  for (const c of chunks) size += c.byteLength
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

interface ProtectedInit {
  maConn: MultiaddrConnection
  key: Uint8Array
  localNonce: Uint8Array
  remoteNonce: Uint8Array
}

/** The connection as the upgrader sees it after the nonce exchange: plain bytes in, XORed bytes out. */
class ProtectedConnection extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly inbound: KeystreamXor
  private readonly outbound: KeystreamXor

  constructor (init: ProtectedInit) {
    super({ remoteAddr: init.maConn.remoteAddr, direction: init.maConn.direction, log: init.maConn.log.newScope('swarm-key') })
    this.maConn = init.maConn
    this.inbound = new KeystreamXor(init.key, init.remoteNonce)
    this.outbound = new KeystreamXor(init.key, init.localNonce)
    this.maConn.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) {
        this.onData(this.inbound.update(data))
      } else {
        for (const buf of data) this.onData(this.inbound.update(buf))
      }
    })
    this.maConn.addEventListener('drain', () => {
      this.full = false
      this.safeDispatchEvent('drain')
    })
    this.maConn.addEventListener('close', (evt) => {
      if (evt.error == null) this.onTransportClosed()
      else if (evt.local === true) this.abort(evt.error)
      else this.onRemoteReset()
    })
  }

  /**
   * What was sent within this event-loop turn, written together at its end: yamux
   * and noise make one message per frame (a chat's Done, its stream's close and the
   * receipt stream's opening come in one turn), and each was a socket write of its
   * own, with the other end woken for each. The bytes on the wire are the same.
   */
  private pending: Uint8Array[] = []
  private flushing = false
  /** the socket said "no more" at the last write, and has not drained since */
  private full = false

  sendData (data: Uint8ArrayList): SendResult {
    this.pending.push(this.outbound.update(data.subarray()))
    if (!this.flushing) {
      this.flushing = true
      queueMicrotask(() => { this.flush() })
    }
    return { sentBytes: data.byteLength, canSendMore: !this.full }
  }

  private flush (): void {
    this.flushing = false
    const chunks = this.pending
    if (chunks.length === 0) return
    this.pending = []
    if (this.maConn.status !== 'open') return
    try {
      const ok = this.maConn.send(chunks.length === 1 ? chunks[0] : concat(chunks))
      if (!ok) this.full = true
    } catch (err: any) {
      // the transport went under us (a relayed connection whose stream just closed):
      // this runs in a microtask of its own, so nobody up the stack would catch it
      this.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    this.flush()
    await this.maConn.close(options)
  }

  sendReset (err: Error): void {
    this.maConn.abort(err)
  }

  sendPause (): void {
    this.maConn.pause()
  }

  sendResume (): void {
    this.maConn.resume()
  }
}

class SwarmKeyProtector {
  readonly [Symbol.toStringTag] = 'krill/swarm-key'
  private readonly key: Uint8Array

  constructor (key: Uint8Array) {
    this.key = key
  }

  async protect (connection: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
    const localNonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
    const opts = options?.signal != null ? options : { signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) }
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([bytes.read({ bytes: NONCE_BYTES, ...opts }), bytes.write(localNonce, opts)])
    return new ProtectedConnection({ maConn: bytes.unwrap(), key: this.key, localNonce, remoteNonce: remote.subarray() })
  }
}

/** libp2p's `connectionProtector` for a swarm key (the 32 key bytes of a PSK v1 file). */
export function swarmKeyProtector (key: Uint8Array): () => SwarmKeyProtector {
  if (key.byteLength !== 32) throw new Error(`a swarm key has 32 bytes, not ${key.byteLength}`)
  return () => new SwarmKeyProtector(key)
}
