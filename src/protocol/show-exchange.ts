/**
 * /krill/show/1.0.0, a libp2p service and its client: a consumer asks a provider
 * for its Ollama's /api/show answer about a model it serves, so that the
 * consumer's /api/show tells the truth (capabilities, template, license, context
 * length) instead of guessing. One ShowRequest, one ShowAnswer per stream.
 */
import type { ComponentLogger, Connection, Libp2p, PeerId, Startable, Stream } from '@libp2p/interface'
import { ErrorCode, KrillError } from '../errors.js'
import { logger } from '../log.js'
import type { ShowEngine } from '../engine/types.js'
import { openPreferDirect } from '../node/connections.js'
import { FrameReader, writeFrame } from './frame-io.js'
import { MAX_ERROR_MESSAGE_CHARS, errorFromPb } from './frames.js'
import { ShowAnswer, ShowRequest } from './generated/show.js'
import { resolveLimits, type Limits } from '../limits/index.js'
import { PeerAdmission, endWith, readRequestFrame, type Authorize } from './one-shot.js'
import { validateDigest, validateModelName } from './validate.js'

export const SHOW_PROTOCOL = '/krill/show/1.0.0'
/** largest ShowAnswer: templates and licenses are long, tensors are never sent */
export const MAX_SHOW_ANSWER_BYTES = 1024 * 1024
const MAX_SHOW_REQUEST_BYTES = 1024

export interface ShowServerInit {
  engine: ShowEngine
  /** false: no protocol handler (a public node without --serve); default true */
  acceptPeers?: boolean
  limits?: Partial<Limits>
  isServedModel: (name: string, digest?: string) => boolean | Promise<boolean>
  authorize?: Authorize
}

export interface ShowServerComponents {
  registrar: Pick<Libp2p, 'handle' | 'unhandle'>
  logger?: ComponentLogger
}

export class ShowServer implements Startable {
  private readonly components: ShowServerComponents
  private readonly init: ShowServerInit
  private readonly limits: Limits
  private readonly admission: PeerAdmission
  private readonly inFlight = new Set<AbortController>()
  private started = false
  private handling = false

  constructor (components: ShowServerComponents, init: ShowServerInit) {
    this.components = components
    this.init = init
    this.limits = resolveLimits(init.limits)
    this.admission = new PeerAdmission('show', this.limits, logger('show', components.logger != null ? { logger: components.logger } : undefined), init.authorize)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.init.acceptPeers === false) return
    this.handling = true
    await this.components.registrar.handle(SHOW_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, {
      maxInboundStreams: this.limits.maxStreamsPerPeer * 2 + 16,
      runOnLimitedConnection: true
    })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    for (const ac of this.inFlight) ac.abort(new KrillError('SHUTTING_DOWN', 'provider is shutting down'))
    if (this.handling) await this.components.registrar.unhandle(SHOW_PROTOCOL)
    this.handling = false
    this.started = false
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const ac = new AbortController()
    this.inFlight.add(ac)
    const answer = async (a: ShowAnswer): Promise<void> => { await endWith(stream, ShowAnswer.encode(a), this.limits.requestTimeoutMs) }
    const error = async (code: keyof typeof ErrorCode, message: string): Promise<void> => {
      await answer({ error: { code: ErrorCode[code], message: message.slice(0, MAX_ERROR_MESSAGE_CHARS) } })
    }
    try {
      const refused = this.admission.enter(peer, connection)
      if (refused != null) {
        this.admission.breaches.note(peer, refused.code, `${refused.code} for peer ${peer} (show): ${refused.message}`)
        await error(refused.code, refused.message)
        return
      }
      const payload = await readRequestFrame(stream, MAX_SHOW_REQUEST_BYTES, this.limits.requestTimeoutMs, ac.signal, 'ShowRequest')
      let model: string
      let digest: string | undefined
      try {
        const req = ShowRequest.decode(payload)
        model = validateModelName(req.model, this.limits)
        digest = validateDigest(req.digest)
      } catch (err) {
        throw err instanceof KrillError ? err : new KrillError('BAD_REQUEST', 'request is not a valid ShowRequest protobuf')
      }
      if (!await this.init.isServedModel(model, digest)) {
        await error('UNKNOWN_MODEL', `model ${model}${digest != null ? ` with digest ${digest}` : ''} is not served by this peer`)
        return
      }
      const shown = await this.init.engine.show(model, AbortSignal.any([ac.signal, AbortSignal.timeout(this.limits.requestTimeoutMs)]))
      const json = JSON.stringify(shown)
      if (Buffer.byteLength(json) > MAX_SHOW_ANSWER_BYTES - 16) {
        await error('TOO_LARGE', `the description of ${model} is larger than ${MAX_SHOW_ANSWER_BYTES} bytes`)
        return
      }
      await answer({ showJson: json })
    } catch (err) {
      const k = err instanceof KrillError ? err : new KrillError('ENGINE_FAILED', `engine failed: ${err instanceof Error ? err.message : String(err)}`)
      if (stream.status === 'open') await error(k.code, k.message)
      else stream.abort(k)
    } finally {
      this.inFlight.delete(ac)
      this.admission.leave(peer)
    }
  }
}

export function showServer (init: ShowServerInit): (components: ShowServerComponents) => ShowServer {
  return (components) => new ShowServer(components, init)
}

type DialingNode = Pick<Libp2p, 'getConnections' | 'getMultiaddrs' | 'dial' | 'addEventListener' | 'removeEventListener'>

/** Asks `peerId` for its Ollama's /api/show answer about `model`. Throws KrillError. */
export async function requestShow (node: DialingNode, peerId: PeerId, model: string, opts: { digest?: string, signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
  const peer = peerId.toString()
  const signal = AbortSignal.any([opts.signal ?? new AbortController().signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)])
  let stream: Stream | undefined
  try {
    ({ stream } = await openPreferDirect(node, peerId, SHOW_PROTOCOL, { signal }))
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_SHOW_ANSWER_BYTES })
    await writeFrame(stream, ShowRequest.encode({ model, digest: opts.digest }), signal)
    const bytes = await reader.read(signal)
    if (bytes == null) throw new KrillError('ENGINE_FAILED', `peer ${peer} closed the show stream without an answer`, { peer })
    const answer = ShowAnswer.decode(bytes)
    if (answer.error != null) throw errorFromPb(answer.error, peer)
    if (answer.showJson == null) throw new KrillError('ENGINE_FAILED', `peer ${peer} sent an empty ShowAnswer`, { peer })
    const parsed: unknown = JSON.parse(answer.showJson)
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new KrillError('ENGINE_FAILED', `peer ${peer} sent a ShowAnswer that is not a JSON object`, { peer })
    await stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => { stream?.abort(new Error('close timed out')) })
    stream = undefined
    return parsed as Record<string, unknown>
  } catch (err) {
    if (err instanceof KrillError) throw err
    if (opts.signal?.aborted === true) throw new KrillError('CANCELLED', `show request to peer ${peer} was cancelled`, { peer })
    throw new KrillError(signal.aborted ? 'TIMEOUT' : 'ENGINE_FAILED', `show request to peer ${peer} failed: ${err instanceof Error ? err.message : String(err)}`, { peer, cause: err })
  } finally {
    stream?.abort(new Error('show request abandoned'))
  }
}
