/**
 * /ipfs/ping/1.0.0: @libp2p/ping's client (libp2p's connection monitor, `krill ping`,
 * `krill peers`) with a responder that closes its half of the stream as soon as the
 * pinger has closed its own.
 *
 * Why not @libp2p/ping's responder: it echoes with `for await (const buf of stream)`,
 * and a libp2p v3 stream's async iterator (@libp2p/utils 7.4) ends on the
 * `remoteCloseWrite` event only. libp2p runs the handler after protocol negotiation
 * *and* a peer store write (`peerStore.merge` of the protocol), which with a LevelDB
 * datastore (ours) takes long enough that the pinger's 32 bytes and its close arrive
 * first: the event has fired before anyone listens, the iterator never ends, and the
 * stream stays half-open until the responder's 10 s timeout. A default js-libp2p peer
 * allows one outbound ping stream per peer, so its next ping failed with
 * TooManyOutboundProtocolStreamsError and its connection monitor aborted the whole
 * connection (and every chat on it). A plain js-libp2p node given a LevelDB datastore
 * shows the same; with the default in-memory one the window is just narrower.
 *
 * This responder reads through `byteStream`, which looks at the stream's state
 * (remote write end closed, nothing buffered) rather than waiting for the event, so a
 * close that came before the handler still ends the exchange at once.
 */
import { ping as libp2pPing, PING_PROTOCOL, type Ping, type PingComponents, type PingInit } from '@libp2p/ping'
import { serviceCapabilities, type Connection, type DialProtocolOptions, type DialTarget, type Startable, type Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'

/** @libp2p/ping's defaults (constants.ts there) */
const TIMEOUT_MS = 10_000
const MAX_INBOUND_STREAMS = 2
const MAX_OUTBOUND_STREAMS = 1

/** Echoes what the pinger sends until it closes its side, then closes ours. */
export async function echoPing (stream: Stream, timeoutMs: number = TIMEOUT_MS): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs)
  const bytes = byteStream(stream)
  try {
    for (let chunk = await bytes.read({ signal }); chunk != null; chunk = await bytes.read({ signal })) {
      await bytes.write(chunk, { signal })
    }
    await stream.close({ signal })
  } catch (err: any) {
    stream.abort(err)
  }
}

class KrillPing implements Ping, Startable {
  readonly [Symbol.toStringTag] = '@libp2p/ping'
  readonly [serviceCapabilities] = ['@libp2p/ping']
  private readonly client: Ping & Partial<Startable>
  private readonly protocol: string

  constructor (private readonly components: PingComponents, private readonly init: PingInit) {
    this.client = libp2pPing(init)(components) as Ping & Partial<Startable>
    this.protocol = init.protocolPrefix != null ? `/${init.protocolPrefix}/ping/1.0.0` : PING_PROTOCOL
  }

  async start (): Promise<void> {
    await this.client.start?.()
    // replaces the handler the client registered for the same protocol
    await this.components.registrar.handle(this.protocol, async (stream: Stream, _connection: Connection) => {
      await echoPing(stream, this.init.timeout ?? TIMEOUT_MS)
    }, {
      force: true,
      maxInboundStreams: this.init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
      maxOutboundStreams: this.init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: this.init.runOnLimitedConnection ?? true
    })
  }

  async stop (): Promise<void> {
    await this.client.stop?.()
  }

  async ping (peer: DialTarget, options?: DialProtocolOptions): Promise<number> {
    return await this.client.ping(peer, options)
  }
}

/** Drop-in for @libp2p/ping's `ping()` service with the responder above. */
export function ping (init: PingInit = {}): (components: PingComponents) => Ping {
  return (components) => new KrillPing(components, init)
}
