/**
 * Provider side of /krill/chat/1.0.0: reads one ChatRequest per stream, validates
 * it, queues it for one of `slots` engine runs, and streams the answer back as
 * Accepted → Delta* → Done|Error. Every way a stream can end produces exactly one
 * terminal frame when the consumer can still read it, and the engine request is
 * aborted the moment the consumer resets or closes the stream.
 */
import { KrillError } from '../errors.js'
import { logger, type Logger } from '../log.js'
import { StallTimer } from '../stall-timer.js'
import { BreachLog } from './breach-log.js'
import { FrameFormatError, FrameReader, FrameTooLargeError, FrameWriter, TruncatedFrameError } from './frame-io.js'
import { acceptedFrame, deltaFrame, doneFrame, encodeFrame, errorFrame, splitDelta, type DeltaEvent } from './frames.js'
import { MAX_OUTBOUND_CHAT_STREAMS, PeerRateLimiter, resolveLimits } from '../limits/index.js'
import { CHAT_PROTOCOL } from './ids.js'
import { SlotQueue } from './slot-queue.js'
import { AckReader } from './receipt-exchange.js'
import { decodeChatRequest } from './validate.js'
import type { ChatEvent, ChatRequest, Engine, Usage } from '../engine/types.js'
import type { ErrorCodeName } from '../errors.js'
import type { ChatFrame } from './generated/chat.js'
import type { Limits } from '../limits/index.js'
import type { IssuedReceipt, ProviderReceiptPort } from './receipt-exchange.js'
import type { Release } from './slot-queue.js'
import type { ComponentLogger, Connection, Libp2p, Startable, Stream } from '@libp2p/interface'

export type ChatServerEvent =
  | { type: 'request', peer: string, model: string, queuePosition: number }
  | { type: 'done', peer: string, model: string, usage: Usage, durationMs: number, firstTokenMs?: number }
  | { type: 'error', peer: string, model?: string, code: ErrorCodeName, message: string }
  | { type: 'cancelled', peer: string, model?: string }

export interface ChatServerOptions {
  engine: Engine
  /** engine requests run at the same time */
  slots: number
  /** requests that may wait for a slot; more get BUSY at once */
  maxQueue: number
  limits?: Partial<Limits>
  isServedModel: (name: string, digest?: string) => boolean | Promise<boolean>
  /** digest announced in Accepted when the request named none; '' when absent or unknown */
  resolveDigest?: (name: string) => string | undefined | Promise<string | undefined>
  onEvent?: (event: ChatServerEvent) => void
  /**
   * Peer policy: returns why `peer` may not use this provider (answered with
   * FORBIDDEN before its request is read), or undefined to serve it. Asked for every
   * stream, and again when its request arrives (a ready stream opened before a
   * policy change), so a change applies to the next request at once.
   */
  authorize?: (peer: string, connection: Connection) => string | undefined
  /**
   * Signs a receipt for every completed answer (sent in Done) and keeps it once the
   * consumer countersigned or did not; no receipts without it.
   */
  receipts?: ProviderReceiptPort
  /**
   * Fair share: a requester's standing with us in (-1, 1) (what it served us against
   * what it took); orders the waiting line. FIFO without it.
   */
  standing?: (peer: string) => number
  /** waiting this long outweighs one point of standing (default 5 s; slot-queue.ts) */
  agingMs?: number
  /**
   * false: serve only this node's own API (chatLocal) — no protocol handler, so no
   * peer can use the engine (a public node without --serve). Default true.
   */
  acceptPeers?: boolean
}

export interface ChatServerInit extends ChatServerOptions {
  /** on shutdown (beforeStop), how long running chats may take to finish before they get SHUTTING_DOWN (default 0) */
  drainGraceMs?: number
}

/** What the chat server takes from libp2p when it runs as a service. */
export interface ChatServerComponents {
  registrar: Libp2pNode
  logger: ComponentLogger
}

/**
 * The chat server as a libp2p service: libp2p registers its handler on start,
 * drains in-flight chats in beforeStop and removes the handler on stop.
 */
export function chatServer (init: ChatServerInit): (components: ChatServerComponents) => ChatServer {
  return (components) => new ChatServer(init, components)
}

/** Why a stream was turned away before its request ran. */
export type RefusalReason = 'forbidden' | 'requests-per-minute' | 'streams-per-peer' | 'queue-full'

export interface ChatServerCounters {
  /** streams opened to us */
  streams: number
  /** requests accepted (Accepted frame sent) */
  requests: number
  completed: number
  /** consumer went away before the end */
  cancelled: number
  deltas: number
  promptTokens: number
  completionTokens: number
  /** Error frames sent (or due when the consumer was gone), by code */
  errors: Partial<Record<ErrorCodeName, number>>
  /** streams turned away by policy or a per-peer / queue limit, by reason */
  refused: Record<RefusalReason, number>
}

export interface ChatServerStats {
  slots: number
  active: number
  queued: number
  /** streams being handled now, in any phase */
  open: number
  counters: ChatServerCounters
}

type Libp2pNode = Pick<Libp2p, 'handle' | 'unhandle'>
type Phase = 'reading' | 'queued' | 'running' | 'closing'

interface InFlight {
  peer: string
  phase: Phase
  abort: AbortController
  done: Promise<void>
}

/** codes that mean "the peer broke a limit or a rule": worth a (throttled) log line */
const BREACH_CODES = new Set<ErrorCodeName>(['FORBIDDEN', 'RATE_LIMITED', 'BUSY', 'TOO_LARGE', 'BAD_REQUEST', 'TIMEOUT'])

/** streams one peer may hold open beyond maxStreamsPerPeer: its ready stream (ready-streams.ts) */
const READY_STREAM_ALLOWANCE = 1

/** the queue key of this node's own chats (chatLocal); never a peer id */
const LOCAL_PEER = 'local'

/** The consumer reset or closed the stream. */
const CONSUMER_GONE = 'consumer closed the stream'
/**
 * Abort reason used only to let go of the engine and the queue once a request is
 * over; it never explains a failure (the error that ended the request does).
 */
const ENDED = new KrillError('CANCELLED', 'request ended')

export class ChatServer implements Startable {
  readonly [Symbol.toStringTag] = '@krill/chat-server'
  private readonly engine: Engine
  private readonly log: Logger
  private readonly limits: Limits
  private readonly queue: SlotQueue
  private readonly opts: ChatServerInit
  private readonly inFlight = new Set<InFlight>()
  /** streams negotiated and still waiting for their request (a consumer's ready stream, until it is used) */
  private readonly waitingForRequest = new WeakSet<Stream>()
  /** streams per peer, in any phase (a ready stream waiting for its request included) */
  private readonly perPeer = new Map<string, number>()
  /** requests per peer: streams whose ChatRequest arrived and is not done */
  private readonly requestsPerPeer = new Map<string, number>()
  /** requests per minute per peer; a bucket costs memory only while it is not full */
  private readonly rate: PeerRateLimiter
  private readonly breaches: BreachLog
  /** one per stream: deltas that follow each other closely go out together */
  private readonly writers = new WeakMap<Stream, FrameWriter>()
  private readonly counters: ChatServerCounters = {
    streams: 0,
    requests: 0,
    completed: 0,
    cancelled: 0,
    deltas: 0,
    promptTokens: 0,
    completionTokens: 0,
    errors: {},
    refused: { forbidden: 0, 'requests-per-minute': 0, 'streams-per-peer': 0, 'queue-full': 0 }
  }

  private node: Libp2pNode | undefined
  private readonly components?: ChatServerComponents
  private stopping = false
  private drained?: Promise<void>

  constructor (opts: ChatServerInit, components?: ChatServerComponents) {
    this.opts = opts
    this.components = components
    this.log = logger('chat', components)
    this.breaches = new BreachLog(this.log)
    this.engine = opts.engine
    this.limits = resolveLimits(opts.limits)
    const standing = opts.standing
    // this node's own requests go first on its own engine
    this.queue = new SlotQueue(opts.slots, opts.maxQueue, { standing: standing != null ? peer => peer === LOCAL_PEER ? 1 : standing(peer) : undefined, agingMs: opts.agingMs })
    this.rate = new PeerRateLimiter({ burst: this.limits.requestBurst, perMinute: this.limits.requestsPerMinute })
  }

  /** the engine's slots and waiting line: the embed server shares them (one engine, one queue) */
  get slotQueue (): SlotQueue {
    return this.queue
  }

  get stats (): ChatServerStats {
    return {
      slots: this.queue.slots,
      active: this.queue.active,
      queued: this.queue.queued,
      open: this.inFlight.size,
      counters: { ...this.counters, errors: { ...this.counters.errors }, refused: { ...this.counters.refused } }
    }
  }

  /** Registers the chat protocol handler, on `node` or (as a service) on libp2p's registrar. */
  async start (node: Libp2pNode | undefined = this.components?.registrar): Promise<void> {
    if (this.node != null) throw new Error('ChatServer already started')
    if (node == null) throw new Error('ChatServer needs a libp2p node to start on')
    this.stopping = false
    this.drained = undefined
    if (this.opts.acceptPeers === false) {
      this.node = node
      return
    }
    await node.handle(CHAT_PROTOCOL, (stream, connection) => { this.onStream(stream, connection) }, {
      // headroom over our own per-peer limit so that excess streams reach us and
      // get a RATE_LIMITED frame instead of a bare reset from libp2p
      maxInboundStreams: this.limits.maxStreamsPerPeer * 2 + 16,
      // libp2p applies a handler's limits to our own outbound chats too (default 64)
      maxOutboundStreams: MAX_OUTBOUND_CHAT_STREAMS,
      runOnLimitedConnection: true
    })
    this.node = node
  }

  /** libp2p's shutdown, first phase: drain (see drain()) while the connections still carry our last frames. */
  async beforeStop (): Promise<void> {
    await this.drain(this.opts.drainGraceMs ?? 0)
  }

  /**
   * Stops serving: drains (unless beforeStop did) with `graceMs` (default 0),
   * then removes the handler. Resolves when every stream is done and the handler is gone.
   */
  async stop (options: { graceMs?: number } = {}): Promise<void> {
    const node = this.node
    if (node == null) return
    await this.drain(options.graceMs ?? 0)
    if (this.opts.acceptPeers !== false) await node.unhandle(CHAT_PROTOCOL)
    this.node = undefined
  }

  /**
   * New streams and local chats get SHUTTING_DOWN; queued requests get SHUTTING_DOWN
   * at once; running ones may finish within `graceMs`, then get SHUTTING_DOWN too.
   */
  private async drain (graceMs: number): Promise<void> {
    this.drained ??= this.drainNow(graceMs)
    await this.drained
  }

  private async drainNow (graceMs: number): Promise<void> {
    this.stopping = true
    const reason = new KrillError('SHUTTING_DOWN', 'provider is shutting down')
    for (const job of this.inFlight) {
      if (job.phase !== 'running') job.abort.abort(reason)
    }
    const grace = graceMs
    const all = Promise.allSettled([...this.inFlight].map(async job => job.done))
    if (grace > 0) await Promise.race([all, sleep(grace)])
    for (const job of this.inFlight) job.abort.abort(reason)
    // bounded: a job that ignores its abort must not hold shutdown hostage
    await Promise.race([Promise.allSettled([...this.inFlight].map(async job => job.done)), sleep(5_000)])
  }

  /**
   * A chat of this node's own API on the local engine, through the same slots and
   * queue as the chats peers send: it waits its turn when they are busy, and gets
   * BUSY when the queue is full (the router then tries another provider). Counts
   * in active/queued (so the load we announce and rank by includes it), not in the
   * counters, which are about peers.
   */
  async * chatLocal (request: ChatRequest, signal: AbortSignal): AsyncGenerator<Exclude<ChatEvent, { type: 'accepted' }>, void, undefined> {
    if (this.stopping) throw new KrillError('SHUTTING_DOWN', 'provider is shutting down')
    const abort = new AbortController()
    const onAbort = (): void => { abort.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    if (signal.aborted) onAbort()
    const job: InFlight = { peer: 'local', phase: 'queued', abort, done: Promise.resolve() }
    let finished!: () => void
    job.done = new Promise<void>(resolve => { finished = resolve })
    this.inFlight.add(job)
    let release: Release | undefined
    try {
      const ticket = this.queue.enter(abort.signal, LOCAL_PEER)
      if (ticket == null) throw new KrillError('BUSY', `all ${this.queue.slots} slots are busy and ${this.queue.queued} requests are queued`)
      release = await ticket.ready
      job.phase = 'running'
      yield * this.engine.chat(request, abort.signal)
    } catch (err) {
      throw abort.signal.aborted && abort.signal.reason instanceof KrillError ? abort.signal.reason : err
    } finally {
      release?.()
      signal.removeEventListener('abort', onAbort)
      if (!abort.signal.aborted) abort.abort(ENDED)
      this.inFlight.delete(job)
      finished()
    }
  }

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    const abort = new AbortController()
    const job: InFlight = { peer, phase: 'reading', abort, done: Promise.resolve() }
    this.counters.streams++
    this.inFlight.add(job)
    const count = (this.perPeer.get(peer) ?? 0) + 1
    this.perPeer.set(peer, count)
    job.done = this.serve(stream, job, count, connection)
      .catch(err => {
        // serve() handles its own failures; this is the last line of defence
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      })
      .finally(() => {
        this.inFlight.delete(job)
        const left = (this.perPeer.get(peer) ?? 1) - 1
        if (left <= 0) this.perPeer.delete(peer)
        else this.perPeer.set(peer, left)
      })
  }

  /** Answers FORBIDDEN when the serve policy refuses the stream's peer; true if it did. */
  private async refusedByPolicy (stream: Stream, job: InFlight, connection: Connection, model?: string): Promise<boolean> {
    const refusal = this.opts.authorize?.(job.peer, connection)
    if (refusal == null) return false
    this.counters.refused.forbidden++
    await this.fail(stream, job, model, 'FORBIDDEN', `this provider does not serve your peer: ${refusal}`)
    return true
  }

  /** true while `stream` has not sent its request: it carries no chat yet */
  waitsForRequest (stream: Stream): boolean {
    return this.waitingForRequest.has(stream)
  }

  private async serve (stream: Stream, job: InFlight, peerStreams: number, connection: Connection): Promise<void> {
    const { peer } = job
    if (this.stopping) {
      await this.fail(stream, job, undefined, 'SHUTTING_DOWN', 'provider is shutting down')
      return
    }
    // policy first: a refused peer costs no rate tokens and learns nothing about load
    if (await this.refusedByPolicy(stream, job, connection)) return
    // An abuse limit, not a quota: while a slot is free nobody is refused for asking
    // often (an idle provider serves every honest peer). Once requests must wait,
    // every stream costs a token, even one refused below: opening streams is the
    // flood. (A consumer's ready stream let go unused costs one too: at most one
    // per 8 s, and only when it made no request in that time.)
    if (!this.queue.hasFreeSlot && !this.rate.take(peer)) {
      this.counters.refused['requests-per-minute']++
      await this.fail(stream, job, undefined, 'RATE_LIMITED', `too many chat requests from your peer (limit ${this.limits.requestsPerMinute} a minute, bursts of ${this.limits.requestBurst}); slow down`)
      return
    }
    // One stream more than the request limit may be open: the consumer's ready
    // stream (ready-streams.ts), negotiated ahead of its next request. A stream
    // that never sends one is still cut off by the arrival timeout.
    if (peerStreams > this.limits.maxStreamsPerPeer + READY_STREAM_ALLOWANCE) {
      this.counters.refused['streams-per-peer']++
      await this.fail(stream, job, undefined, 'RATE_LIMITED', `too many concurrent chat streams from your peer (limit ${this.limits.maxStreamsPerPeer})`)
      return
    }

    this.waitingForRequest.add(stream)
    const request = await this.readRequest(stream, job).finally(() => { this.waitingForRequest.delete(stream) })
    if (request == null) return
    // again now: a ready stream may have waited through a policy change
    if (await this.refusedByPolicy(stream, job, connection, request.model)) return
    const requests = (this.requestsPerPeer.get(peer) ?? 0) + 1
    this.requestsPerPeer.set(peer, requests)
    try {
      await this.serveRequest(stream, job, request, requests)
    } finally {
      const left = (this.requestsPerPeer.get(peer) ?? 1) - 1
      if (left <= 0) this.requestsPerPeer.delete(peer)
      else this.requestsPerPeer.set(peer, left)
    }
  }

  private async serveRequest (stream: Stream, job: InFlight, request: ChatRequest, peerRequests: number): Promise<void> {
    const { peer } = job
    if (peerRequests > this.limits.maxStreamsPerPeer) {
      this.counters.refused['streams-per-peer']++
      await this.fail(stream, job, undefined, 'RATE_LIMITED', `too many concurrent chat streams from your peer (limit ${this.limits.maxStreamsPerPeer})`)
      return
    }
    const model = request.model

    // From here on a reset or a half-close by the consumer cancels the request.
    const onGone = (): void => { job.abort.abort(new KrillError('CANCELLED', CONSUMER_GONE)) }
    stream.addEventListener('close', onGone)
    stream.addEventListener('remoteCloseWrite', onGone)
    if (stream.remoteWriteStatus === 'closed' || stream.status !== 'open') onGone()

    let release: Release | undefined
    let ended = false
    // the slot is free once the engine is done; telling the consumer may take longer
    const freeSlot = (): void => {
      ended = true
      release?.()
      release = undefined
    }
    try {
      if (!await this.ask(() => this.opts.isServedModel(model, request.digest), 'checking the model')) {
        const what = request.digest == null ? `model ${model}` : `model ${model} with digest ${request.digest}`
        await this.fail(stream, job, model, 'UNKNOWN_MODEL', `${what} is not served by this peer`)
        return
      }
      const digest = request.digest ?? (await this.ask(() => this.opts.resolveDigest?.(model), 'resolving the digest')) ?? ''
      job.abort.signal.throwIfAborted()

      const ticket = this.queue.enter(job.abort.signal, peer)
      if (ticket == null) {
        this.counters.refused['queue-full']++
        await this.fail(stream, job, model, 'BUSY', `all ${this.queue.slots} slots are busy and ${this.queue.queued} requests are queued`)
        return
      }
      job.phase = ticket.position === 0 ? 'running' : 'queued'
      const acceptedAtMs = Date.now()
      // hold the slot from the moment it is ours; give it straight back if we are gone by then
      const ready = ticket.ready.then(r => { if (ended) r(); else release = r })
      ready.catch(() => {})
      this.counters.requests++
      this.emit({ type: 'request', peer, model, queuePosition: ticket.position })
      // flushed: the first token then goes out at once, not held back after Accepted
      await this.send(stream, acceptedFrame(ticket.position, digest), job.abort.signal, true)
      await ready
      job.phase = 'running'
      await this.run(stream, job, request, freeSlot, { digest, acceptedAtMs })
    } catch (err) {
      freeSlot()
      await this.failFromError(stream, job, model, err)
    } finally {
      freeSlot()
      stream.removeEventListener('close', onGone)
      stream.removeEventListener('remoteCloseWrite', onGone)
      // leaves the queue if still waiting there; lets go of the engine otherwise
      if (!job.abort.signal.aborted) job.abort.abort(ENDED)
    }
  }

  /** Runs a caller-supplied callback; its failures are ours (INTERNAL), not the engine's. */
  private async ask<T> (fn: () => T | Promise<T>, what: string): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw new KrillError('INTERNAL', `provider failed ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }

  /** Reads and validates the request; on failure answers with an Error frame and returns undefined. */
  private async readRequest (stream: Stream, job: InFlight): Promise<ChatRequest | undefined> {
    const reader = new FrameReader(stream, { maxFrameBytes: this.limits.maxRequestBytes })
    const arrival = AbortSignal.timeout(this.limits.requestTimeoutMs)
    try {
      const payload = await reader.read(AbortSignal.any([arrival, job.abort.signal]))
      if (payload == null) {
        await this.fail(stream, job, undefined, 'BAD_REQUEST', 'stream ended before a ChatRequest arrived')
        return undefined
      }
      return decodeChatRequest(payload, this.limits)
    } catch (err) {
      if (err instanceof KrillError) {
        // invalid request, or our own abort (e.g. SHUTTING_DOWN)
        await this.failFromError(stream, job, undefined, err)
      } else if (err instanceof FrameTooLargeError) {
        await this.fail(stream, job, undefined, 'TOO_LARGE', `request of ${err.length} bytes exceeds the limit of ${err.max} bytes`)
      } else if (err instanceof FrameFormatError) {
        await this.fail(stream, job, undefined, 'BAD_REQUEST', err.message)
      } else if (err instanceof TruncatedFrameError) {
        await this.fail(stream, job, undefined, 'BAD_REQUEST', `stream ended inside the ChatRequest after ${err.received} bytes`)
      } else if (arrival.aborted) {
        const partial = reader.bufferedBytes > 0 ? ` (got ${reader.bufferedBytes} bytes of it)` : ''
        await this.fail(stream, job, undefined, 'TIMEOUT', `no complete ChatRequest within ${this.limits.requestTimeoutMs} ms${partial}`)
      } else {
        // the stream itself failed (reset, connection lost): nobody to answer. Reset
        // before any byte is a ready stream its consumer let go: no cancellation.
        if (reader.bufferedBytes > 0) this.cancelled(job, undefined)
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      }
      return undefined
    } finally {
      // a conforming client sends nothing after its request; drop anything else
      reader.discardRest()
    }
  }

  private async run (stream: Stream, job: InFlight, request: ChatRequest, freeSlot: () => void, served: { digest: string, acceptedAtMs: number }): Promise<void> {
    const signal = job.abort.signal
    const started = Date.now()
    let firstTokenMs: number | undefined
    const stall = new StallTimer(this.limits.stallTimeoutMs, () => {
      job.abort.abort(new KrillError('TIMEOUT', `no progress for ${this.limits.stallTimeoutMs} ms`))
    })
    const race = new SignalRace(signal)
    const writer = this.writerFor(stream)
    const events = this.engine.chat(request, signal)[Symbol.asyncIterator]()
    let eventsEnded = false
    let usage: Usage | undefined
    let finished = false
    try {
      // One loop per token, no generator or promise of krill's own between the engine
      // and the stream: each layer (pipe, generators, async send) cost a promise and a
      // few microtasks per token (bench: throughput). Every step is raced against the
      // job's abort, so an engine that hangs cannot hold the stream.
      while (true) {
        stall.touch()
        const next = await race.settle(events.next())
        if (next.done === true) {
          eventsEnded = true
          break
        }
        const event = next.value
        if (event.type === 'delta') {
          firstTokenMs ??= Date.now() - started
          const wait = this.sendDelta(writer, event, signal)
          if (wait != null) await wait
        } else if (event.type === 'done') {
          // the engine is done: the next queued request may start while Done goes out
          freeSlot()
          usage = event.usage
          break
        }
      }
      if (usage == null) throw new KrillError('ENGINE_FAILED', 'engine ended the answer without a done event')
      const receipt = await this.issueReceipt(stream, job, request, usage, served)
      try {
        await this.send(stream, doneFrame(usage, receipt?.issued.signedReceipt), signal)
      } catch (err) {
        receipt?.acks.release()
        receipt?.issued.settle(undefined)
        throw err
      }
      finished = true
      this.counters.completed++
      this.counters.promptTokens += usage.promptTokens
      this.counters.completionTokens += usage.completionTokens
      this.emit({ type: 'done', peer: job.peer, model: request.model, usage, durationMs: Date.now() - started, firstTokenMs })
      await this.finish(stream, job)
      // the consumer countersigns (or disputes) on the same stream before it closes
      if (receipt != null) receipt.issued.settle(await receipt.acks.read(this.limits.requestTimeoutMs))
    } finally {
      stall.clear()
      race.dispose()
      // let the engine go without waiting: a step still pending settles only later
      if (!eventsEnded) events.return?.()?.catch(() => {})
      // make sure the engine lets go (its signal is usually aborted already)
      if (!finished && !signal.aborted) job.abort.abort(ENDED)
    }
  }

  /**
   * One engine delta as Delta frames (split to fit a frame). A plain content token,
   * the usual case, is encoded straight into the writer's batch; a promise is only
   * awaited when the stream asks us to wait.
   */
  private sendDelta (writer: FrameWriter, event: DeltaEvent, signal: AbortSignal): Promise<void> | undefined {
    const plain = event.thinking == null && (event.toolCalls == null || event.toolCalls.length === 0)
    // a UTF-16 code unit is at most 3 UTF-8 bytes; tags and lengths take at most 24
    if (plain && (event.content?.length ?? 0) * 3 + 24 <= this.limits.maxFrameBytes) {
      this.counters.deltas++
      return writer.writeContent(event.content ?? '', signal)
    }
    return this.sendPieces(writer, event, signal)
  }

  private async sendPieces (writer: FrameWriter, event: DeltaEvent, signal: AbortSignal): Promise<void> {
    for (const piece of splitDelta(event, this.limits.maxFrameBytes)) {
      const wait = writer.write(encodeFrame(deltaFrame(piece)), signal)
      if (wait != null) await wait
      this.counters.deltas++
    }
  }

  /**
   * Signs the receipt for a completed answer. The ack reader listens before Done
   * goes out, so the consumer's answer cannot arrive unheard. A failure here costs
   * the receipt, never the answer.
   */
  private async issueReceipt (stream: Stream, job: InFlight, request: ChatRequest, usage: Usage, served: { digest: string, acceptedAtMs: number }): Promise<{ issued: IssuedReceipt, acks: AckReader } | undefined> {
    const port = this.opts.receipts
    if (port == null) return undefined
    const acks = new AckReader(stream)
    let issued: IssuedReceipt | undefined
    try {
      issued = await port.issue({
        kind: 'chat',
        consumer: job.peer,
        model: request.model,
        modelDigest: served.digest,
        promptTokens: usage.promptTokens,
        completionTokens: usage.completionTokens,
        startedAtMs: served.acceptedAtMs,
        finishedAtMs: Date.now()
      })
    } catch (err) {
      this.log.warn(`could not sign a receipt for peer ${job.peer}: ${err instanceof Error ? err.message : String(err)}`)
    }
    if (issued == null) {
      acks.release()
      return undefined
    }
    return { issued, acks }
  }

  /** Maps whatever ended a request to an Error frame (or to "cancelled" when nobody listens). */
  private async failFromError (stream: Stream, job: InFlight, model: string | undefined, err: unknown): Promise<void> {
    // the abort reason explains better than whatever the engine threw after it
    const signal = job.abort.signal
    const cause = signal.aborted && signal.reason !== ENDED ? signal.reason : err
    if (cause instanceof KrillError && cause.code === 'CANCELLED' && cause.message === CONSUMER_GONE) {
      this.cancelled(job, model)
      if (isWritable(stream)) await this.fail(stream, job, model, 'CANCELLED', 'request cancelled by the consumer', false)
      else stream.abort(new Error(CONSUMER_GONE))
      return
    }
    if (cause instanceof KrillError) {
      await this.fail(stream, job, model, cause.code, cause.message)
    } else {
      const message = cause instanceof Error ? cause.message : String(cause)
      await this.fail(stream, job, model, 'ENGINE_FAILED', `engine failed: ${message}`)
    }
  }

  /** Sends one Error frame (when still possible) and closes the stream. */
  private async fail (stream: Stream, job: InFlight, model: string | undefined, code: ErrorCodeName, message: string, count = true): Promise<void> {
    if (count) {
      this.counters.errors[code] = (this.counters.errors[code] ?? 0) + 1
      this.emit({ type: 'error', peer: job.peer, model, code, message })
      if (BREACH_CODES.has(code)) this.breaches.note(job.peer, code, `${code} for peer ${job.peer}${model != null ? ` (${model})` : ''}: ${message}`)
    }
    if (!isWritable(stream)) {
      stream.abort(new Error(message))
      return
    }
    try {
      // fresh signal: the job's own may be aborted already, the frame must still go out
      await this.send(stream, errorFrame(code, message), AbortSignal.timeout(this.limits.stallTimeoutMs))
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return
    }
    await this.finish(stream, job)
  }

  private cancelled (job: InFlight, model: string | undefined): void {
    this.counters.cancelled++
    this.emit({ type: 'cancelled', peer: job.peer, model })
  }

  /**
   * Closes our writable end after the terminal frame. The consumer closes its end
   * once it has read that frame; one that never does is reset after a grace period
   * so that it cannot hold the stream open forever.
   */
  private async finish (stream: Stream, job: InFlight): Promise<void> {
    job.phase = 'closing'
    try {
      // frames still batched go out before the end of the stream
      this.writers.get(stream)?.flush()
      await stream.close({ signal: AbortSignal.timeout(this.limits.stallTimeoutMs) })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return
    }
    if (stream.status === 'open' || stream.status === 'closing') {
      const linger = setTimeout(() => { stream.abort(new Error('consumer did not close the stream')) }, this.limits.requestTimeoutMs)
      linger.unref()
      stream.addEventListener('close', () => { clearTimeout(linger) }, { once: true })
    }
  }

  /** Writes a frame; deltas that follow each other closely are batched (FrameWriter), unless `flush`. */
  private async send (stream: Stream, frame: ChatFrame, signal: AbortSignal, flush = false): Promise<void> {
    const writer = this.writerFor(stream)
    const wait = writer.write(encodeFrame(frame), signal)
    if (wait != null) await wait
    if (flush) writer.flush()
  }

  private writerFor (stream: Stream): FrameWriter {
    let writer = this.writers.get(stream)
    if (writer == null) {
      writer = new FrameWriter(stream)
      this.writers.set(stream, writer)
    }
    return writer
  }

  private emit (event: ChatServerEvent): void {
    try {
      this.opts.onEvent?.(event)
    } catch {
      // an observer must never break serving
    }
  }
}

function isWritable (stream: Stream): boolean {
  return stream.status === 'open' && stream.writeStatus === 'writable'
}

async function sleep (ms: number): Promise<void> {
  await new Promise<void>(resolve => { setTimeout(resolve, ms).unref() })
}

/**
 * Settles each promise handed to `settle`, or rejects with the signal's reason as
 * soon as it aborts. One abort listener for all of them: racing every token of an
 * answer against a listener of its own was a sizeable share of the provider's
 * per-token cost (bench: throughput).
 */
class SignalRace {
  private readonly signal: AbortSignal
  private rejectCurrent: ((reason: unknown) => void) | undefined
  private readonly onAbort = (): void => { this.rejectCurrent?.(this.signal.reason) }

  constructor (signal: AbortSignal) {
    this.signal = signal
    signal.addEventListener('abort', this.onAbort, { once: true })
  }

  settle<T> (promise: Promise<T>): Promise<T> {
    if (this.signal.aborted) {
      // the step may still reject later; that must not become an unhandled rejection
      promise.catch(() => {})
      return Promise.reject(this.signal.reason)
    }
    // then(resolve, reject) also handles a step that rejects after the abort won
    return new Promise<T>((resolve, reject) => {
      this.rejectCurrent = reject
      promise.then(resolve, reject)
    })
  }

  dispose (): void {
    this.rejectCurrent = undefined
    this.signal.removeEventListener('abort', this.onAbort)
  }
}
