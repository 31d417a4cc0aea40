/**
 * Provider side of /krill/embed/1.0.0, a libp2p service: reads one EmbedRequest
 * per stream, admits it like a chat (peer policy, per-peer limits, the same slot
 * queue as chats: an embedding occupies the engine as a chat does), runs it on the
 * engine and answers Accepted -> Vectors+ -> Done, or one Error. A consumer that
 * resets or half-closes cancels the engine request at once.
 */
import type { ComponentLogger, Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import { KrillError, type ErrorCodeName } from '../errors.js'
import { logger, type Logger } from '../log.js'
import type { EmbedEngine, EmbedRequest, EmbedResult } from '../engine/types.js'
import { writeFrame } from './frame-io.js'
import { decodeEmbedRequest, embedAcceptedFrame, embedDoneFrame, embedErrorFrame, encodeEmbedFrame, vectorFrames } from './embed-wire.js'
import { EMBED_PROTOCOL } from './ids.js'
import { DEFAULT_EMBED_LIMITS, resolveEmbedLimits, resolveLimits, type EmbedLimits, type Limits } from '../limits/index.js'
import { PeerAdmission, endWith, isWritable, readRequestFrame, type Authorize } from './one-shot.js'
import type { Release, SlotQueue } from './slot-queue.js'
import { AckReader, type ProviderReceiptPort } from './receipt-exchange.js'

export type EmbedServerEvent =
  | { type: 'done', peer: string, model: string, inputs: number, promptTokens: number, durationMs: number }
  | { type: 'error', peer: string, model?: string, code: ErrorCodeName, message: string }
  | { type: 'cancelled', peer: string, model?: string }

/** What the embed server needs; the composition root hands it over. */
export interface EmbedServerInit {
  engine: EmbedEngine
  /** the provider's engine slots, shared with the chat server (a function: resolved when first used) */
  queue: SlotQueue | (() => SlotQueue)
  limits?: Partial<Limits>
  embedLimits?: Partial<EmbedLimits>
  /** false: no protocol handler, only this node's own requests (a public node without --serve); default true */
  acceptPeers?: boolean
  isServedModel: (name: string, digest?: string) => boolean | Promise<boolean>
  resolveDigest?: (name: string) => string | undefined | Promise<string | undefined>
  authorize?: Authorize
  onEvent?: (event: EmbedServerEvent) => void
  /** signs a receipt (kind "embed") for every completed embedding, as the chat server does; none without it */
  receipts?: ProviderReceiptPort
}

export interface EmbedServerComponents {
  registrar: Pick<Libp2p, 'handle' | 'unhandle'>
  logger?: ComponentLogger
}

export interface EmbedServerCounters {
  streams: number
  completed: number
  cancelled: number
  inputs: number
  errors: Partial<Record<ErrorCodeName, number>>
}

const CONSUMER_GONE = 'consumer closed the stream'

export class EmbedServer implements Startable {
  readonly counters: EmbedServerCounters = { streams: 0, completed: 0, cancelled: 0, inputs: 0, errors: {} }
  private readonly components: EmbedServerComponents
  private readonly init: EmbedServerInit
  private readonly limits: Limits
  private readonly embedLimits: EmbedLimits
  private readonly admission: PeerAdmission
  private readonly log: Logger
  private readonly inFlight = new Map<AbortController, Promise<void>>()
  private started = false
  private handling = false
  private stopping = false

  private get queue (): SlotQueue {
    return typeof this.init.queue === 'function' ? this.init.queue() : this.init.queue
  }

  constructor (components: EmbedServerComponents, init: EmbedServerInit) {
    this.components = components
    this.init = init
    this.limits = resolveLimits(init.limits)
    this.embedLimits = resolveEmbedLimits({ ...DEFAULT_EMBED_LIMITS, ...init.embedLimits })
    this.log = logger('embed', components.logger != null ? { logger: components.logger } : undefined)
    this.admission = new PeerAdmission('embedding', this.limits, this.log, init.authorize)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.stopping = false
    this.started = true
    if (this.init.acceptPeers === false) return
    this.handling = true
    await this.components.registrar.handle(EMBED_PROTOCOL, (stream, connection) => { this.onStream(stream, connection) }, {
      maxInboundStreams: this.limits.maxStreamsPerPeer * 2 + 16,
      runOnLimitedConnection: true
    })
  }

  /** Shutdown, first step: new streams get SHUTTING_DOWN; running embeddings get up to 5 s to finish. */
  async beforeStop (): Promise<void> {
    this.stopping = true
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), new Promise(resolve => setTimeout(resolve, 5_000).unref())])
  }

  /** What still runs is cancelled (SHUTTING_DOWN); resolves when all is over and the handler is gone. */
  async stop (): Promise<void> {
    if (!this.started) return
    this.stopping = true
    const reason = new KrillError('SHUTTING_DOWN', 'provider is shutting down')
    for (const ac of this.inFlight.keys()) ac.abort(reason)
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), new Promise(resolve => setTimeout(resolve, 5_000).unref())])
    if (this.handling) await this.components.registrar.unhandle(EMBED_PROTOCOL)
    this.handling = false
    this.started = false
  }

  /**
   * An embedding for this node's own API, run on the engine through the same slots
   * and queue as the peers' (BUSY when both are full).
   */
  async embedLocal (request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult> {
    if (this.stopping) throw new KrillError('SHUTTING_DOWN', 'provider is shutting down')
    const ticket = this.queue.enter(signal, 'local')
    if (ticket == null) throw new KrillError('BUSY', `all ${this.queue.slots} slots are busy and ${this.queue.queued} requests are queued`)
    const release = await ticket.ready
    try {
      return await this.init.engine.embed(request, signal)
    } finally {
      release()
    }
  }

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    const abort = new AbortController()
    this.counters.streams++
    const done = this.serve(stream, connection, peer, abort)
      .catch(err => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
      .finally(() => {
        this.inFlight.delete(abort)
        this.admission.leave(peer)
      })
    this.inFlight.set(abort, done)
  }

  private async serve (stream: Stream, connection: Connection, peer: string, abort: AbortController): Promise<void> {
    const refused = this.stopping ? { code: 'SHUTTING_DOWN' as const, message: 'provider is shutting down' } : this.admission.enter(peer, connection)
    if (refused != null) {
      if (refused.code !== 'SHUTTING_DOWN') this.admission.breaches.note(peer, refused.code, `${refused.code} for peer ${peer} (embed): ${refused.message}`)
      await this.fail(stream, peer, undefined, refused.code, refused.message)
      return
    }
    let request: EmbedRequest
    try {
      const payload = await readRequestFrame(stream, this.embedLimits.maxRequestBytes, this.limits.requestTimeoutMs, abort.signal, 'EmbedRequest')
      request = decodeEmbedRequest(payload, { ...this.limits, ...this.embedLimits })
    } catch (err) {
      if (err instanceof KrillError) {
        if (err.code !== 'SHUTTING_DOWN') this.admission.breaches.note(peer, err.code, `${err.code} for peer ${peer} (embed): ${err.message}`)
        await this.fail(stream, peer, undefined, err.code, err.message)
      } else {
        this.cancelled(peer, undefined)
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      }
      return
    }

    const onGone = (): void => { abort.abort(new KrillError('CANCELLED', CONSUMER_GONE)) }
    stream.addEventListener('close', onGone)
    stream.addEventListener('remoteCloseWrite', onGone)
    if (stream.remoteWriteStatus === 'closed' || stream.status !== 'open') onGone()
    let release: Release | undefined
    const started = Date.now()
    try {
      if (!await this.ask(() => this.init.isServedModel(request.model, request.digest))) {
        const what = request.digest == null ? `model ${request.model}` : `model ${request.model} with digest ${request.digest}`
        await this.fail(stream, peer, request.model, 'UNKNOWN_MODEL', `${what} is not served by this peer`)
        return
      }
      const digest = request.digest ?? (await this.ask(() => this.init.resolveDigest?.(request.model))) ?? ''
      abort.signal.throwIfAborted()
      const ticket = this.queue.enter(abort.signal, peer)
      if (ticket == null) {
        await this.fail(stream, peer, request.model, 'BUSY', `all ${this.queue.slots} slots are busy and ${this.queue.queued} requests are queued`)
        return
      }
      const ready = ticket.ready.then(r => { release = r })
      ready.catch(() => {})
      await writeFrame(stream, encodeEmbedFrame(embedAcceptedFrame(ticket.position, digest)), abort.signal)
      await ready
      const result = await this.init.engine.embed(request, abort.signal)
      release?.()
      release = undefined
      if (result.embeddings.length !== request.input.length) throw new KrillError('ENGINE_FAILED', `engine returned ${result.embeddings.length} vectors for ${request.input.length} inputs`)
      for (const frame of vectorFrames(result.embeddings, this.embedLimits.maxFrameBytes)) {
        await writeFrame(stream, encodeEmbedFrame(frame), abort.signal)
      }
      this.counters.completed++
      this.counters.inputs += request.input.length
      this.emit({ type: 'done', peer, model: request.model, inputs: request.input.length, promptTokens: result.promptTokens, durationMs: Date.now() - started })
      // the ack reader listens before Done goes out; a receipt failure costs the receipt only
      const acks = this.init.receipts != null ? new AckReader(stream) : undefined
      let issued: Awaited<ReturnType<ProviderReceiptPort['issue']>>
      try {
        issued = await this.init.receipts?.issue({
          kind: 'embed',
          consumer: peer,
          model: request.model,
          modelDigest: digest,
          promptTokens: result.promptTokens,
          completionTokens: 0,
          startedAtMs: started,
          finishedAtMs: Date.now()
        })
      } catch (err) {
        this.log.warn(`could not sign an embedding receipt for peer ${peer}: ${err instanceof Error ? err.message : String(err)}`)
      }
      if (issued == null) acks?.release()
      await endWith(stream, encodeEmbedFrame(embedDoneFrame(result.embeddings.length, result.promptTokens, result.totalDurationNs, result.loadDurationNs, issued?.signedReceipt)), this.limits.requestTimeoutMs)
      if (issued != null && acks != null) issued.settle(await acks.read(this.limits.requestTimeoutMs))
    } catch (err) {
      release?.()
      const cause = abort.signal.aborted ? abort.signal.reason : err
      if (cause instanceof KrillError && cause.code === 'CANCELLED' && cause.message === CONSUMER_GONE) {
        this.cancelled(peer, request.model)
        if (isWritable(stream)) await endWith(stream, encodeEmbedFrame(embedErrorFrame('CANCELLED', 'request cancelled by the consumer')), this.limits.requestTimeoutMs)
        else stream.abort(new Error(CONSUMER_GONE))
        return
      }
      const k = cause instanceof KrillError ? cause : new KrillError('ENGINE_FAILED', `engine failed: ${cause instanceof Error ? cause.message : String(cause)}`)
      await this.fail(stream, peer, request.model, k.code, k.message)
    } finally {
      stream.removeEventListener('close', onGone)
      stream.removeEventListener('remoteCloseWrite', onGone)
      if (!abort.signal.aborted) abort.abort(new KrillError('CANCELLED', 'request ended'))
    }
  }

  private async ask<T> (fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw new KrillError('INTERNAL', `provider failed checking the model: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }

  private async fail (stream: Stream, peer: string, model: string | undefined, code: ErrorCodeName, message: string): Promise<void> {
    this.counters.errors[code] = (this.counters.errors[code] ?? 0) + 1
    this.emit({ type: 'error', peer, model, code, message })
    await endWith(stream, encodeEmbedFrame(embedErrorFrame(code, message)), this.limits.requestTimeoutMs)
  }

  private cancelled (peer: string, model: string | undefined): void {
    this.counters.cancelled++
    this.emit({ type: 'cancelled', peer, model })
  }

  private emit (event: EmbedServerEvent): void {
    try {
      this.init.onEvent?.(event)
    } catch {
      // an observer must never break serving
    }
  }
}

/** The embed server as a libp2p service: `services: { embed: embedServer(init) }`. */
export function embedServer (init: EmbedServerInit): (components: EmbedServerComponents) => EmbedServer {
  return (components) => new EmbedServer(components, init)
}
