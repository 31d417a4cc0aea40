/**
 * The router: picks where each chat runs and keeps the answer going when a provider
 * fails. Candidates come from the local engine, the provider table and, when
 * nothing fresh is known, the DHT. Before the first token a failure moves on to the
 * next candidate unseen; after tokens flowed the next candidate continues the same
 * answer, so the caller sees one unbroken stream. Only when nobody is left does the
 * caller get an error. A provider whose chat died only because the connection
 * under it was replaced (a relayed connection closed once DCUtR opened a direct
 * one) did not fail: it is asked once more, the same way, before anyone else.
 */
import { KrillError, type ErrorCodeName } from '../errors.js'
import { logger } from '../log.js'
import type { ChatEvent, ChatRequest, EmbedEngine, EmbedRequest, EmbedResult, Engine, ModelInfo, Usage } from '../engine/types.js'
import type { Capacity, ProviderDirectory, ProviderEntry } from '../discovery/types.js'
import { sameModel } from '../models/index.js'
import { EMBED_NEEDS, chatNeeds, missingCapability } from '../models/capabilities.js'
import { splitEmbedBatch } from './embed-batch.js'
import { AttemptTimer } from './attempt-timer.js'
import { Backoff, type BackoffOptions } from './backoff.js'
import { PartialAnswer, continuationRequest, mergeUsage } from './continuation.js'
import { localProvider, remoteProvider, type Provider, type RemoteChat } from './provider.js'
import { candidateFromEntry, rankCandidates, type Candidate } from './rank.js'
import { RouterStats } from './stats.js'

const log = logger('router')

export interface LocalSide {
  engine: Engine & Partial<EmbedEngine>
  /** models the local engine shares right now */
  models: ModelInfo[]
  /** the local engine's load, when the daemon tracks it */
  capacity?: Capacity
}

export interface ServedInfo {
  model: string
  /** who finished the answer */
  peerId: string
  tokens: number
  durationMs: number
  outcome: 'done' | 'failed' | 'cancelled'
  failovers: number
  /** from the request to its first token; undefined when no token came */
  firstTokenMs?: number
}

export interface RouterDeps {
  /** this node's peer id */
  selfId: string
  /** the local engine when this node serves models; undefined otherwise */
  local?: () => LocalSide | undefined
  providers: ProviderDirectory
  /** DHT lookup of a model's providers (entries with source 'dht') */
  findProviders?: (model: string, signal: AbortSignal) => Promise<ProviderEntry[]>
  remoteChat: RemoteChat
  /** runs an embedding on a remote peer (/krill/embed/1.0.0) */
  remoteEmbed?: RemoteEmbed
  /** true when `peerId` is a peer this node knows (connected, or in its provider table) */
  knowsPeer?: (peerId: string) => boolean
  /** a chat could not reach `peerId` at all (its dial failed): discovery stops listing it until it announces again */
  unreachable?: (peerId: string) => void
  /** measured round-trip time to a peer in ms */
  latencyMs?: (peerId: string) => number | undefined
  /** called once per chat when it ends */
  onServed?: (info: ServedInfo) => void
  /** consumer-side budget for chats served by peers (the local engine never counts) */
  budget?: RouterBudget
}

export interface RouterBudget {
  /** the error for a chat that may not go to peers now (daily cap reached), or undefined */
  refusal: () => KrillError | undefined
  /** num_predict for chats to peers that set none */
  defaultMaxTokens?: number
}

/** An embedding answered by a peer, and the digest that answered it. */
export type RemoteEmbed = (peerId: string, request: EmbedRequest, signal: AbortSignal) => Promise<EmbedResult & { digest: string }>

/** How a request may be routed. */
export interface RouteOptions {
  signal?: AbortSignal
  /**
   * Only this peer may answer (a peer id, or "local" / this node's id for the local
   * engine): no failover to anyone else. UNKNOWN_MODEL when it is known not to serve
   * the model, NO_PROVIDER when it cannot be reached.
   */
  peer?: string
  /** told each time a provider starts delivering (its first token, or its whole embedding) */
  onProvider?: (peerId: string, local: boolean) => void
}

/** An embedding as the router delivers it. */
export interface EmbedOutcome extends EmbedResult {
  /** who computed the vectors, in batch order, without repeats ("local" for this node) */
  providers: string[]
  /** digest of the model copy that answered ('' when unknown) */
  digest: string
}

export interface RouterOptions {
  /** time an attempt may take to its first token, queueing and model loading included (default 120 s) */
  firstTokenTimeoutMs?: number
  /** silence tolerated between tokens (default 60 s) */
  stallTimeoutMs?: number
  /** providers tried per chat at most (default 6) */
  maxAttempts?: number
  /** how long a DHT lookup may take (default 10 s) */
  dhtTimeoutMs?: number
  /**
   * a provider that has not accepted a chat within this long (or `hedgeRtts` round
   * trips to it, if that is longer) gets the next candidate asked too (default 1.5 s)
   */
  hedgeMs?: number
  /** round trips a provider gets before it is hedged (default 4) */
  hedgeRtts?: number
  /** slots assumed for the local engine when the daemon reports no capacity (default 1) */
  localSlots?: number
  backoff?: BackoffOptions
  random?: () => number
  now?: () => number
}

/** A chat in progress, for /api/ps and the status command. */
export interface RunningChat {
  id: number
  model: string
  digest: string
  peerId: string
  local: boolean
  startedAt: number
  tokens: number
}

/** Errors that another provider would give too: passing them on beats retrying. */
const FINAL_CODES = new Set<ErrorCodeName>(['BAD_REQUEST', 'TOO_LARGE'])

/**
 * The reason an attempt's controller is aborted with once it is over (won, lost or
 * failed). abort() without a reason builds a DOMException, stack and all: about
 * 90 µs of every chat in the provider's profile.
 */
const ATTEMPT_OVER = new Error('the attempt is over')

function toKrillError (err: unknown, peer: string): KrillError {
  if (err instanceof KrillError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new KrillError('ENGINE_FAILED', `provider ${peer} failed: ${message}`, { peer, cause: err })
}

export class Router {
  readonly stats = new RouterStats()
  readonly backoff: Backoff
  private readonly deps: RouterDeps
  private readonly firstTokenTimeoutMs: number
  private readonly stallTimeoutMs: number
  private readonly maxAttempts: number
  private readonly dhtTimeoutMs: number
  private readonly hedgeMs: number
  private readonly hedgeRtts: number
  private readonly localSlots: number
  private readonly random: () => number
  private readonly now: () => number
  /** start times of the chats running on each peer */
  private readonly inflight = new Map<string, number[]>()
  private readonly active = new Map<number, RunningChat>()
  private nextId = 1
  /** aborted when the daemon stops: running chats end with SHUTTING_DOWN */
  private readonly closing = new AbortController()
  private draining = false

  constructor (deps: RouterDeps, opts: RouterOptions = {}) {
    this.deps = deps
    this.firstTokenTimeoutMs = opts.firstTokenTimeoutMs ?? 120_000
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 60_000
    this.maxAttempts = opts.maxAttempts ?? 6
    this.dhtTimeoutMs = opts.dhtTimeoutMs ?? 10_000
    this.hedgeMs = opts.hedgeMs ?? 1_500
    this.hedgeRtts = opts.hedgeRtts ?? 4
    this.localSlots = opts.localSlots ?? 1
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? Date.now
    this.backoff = new Backoff({ now: this.now, ...opts.backoff })
  }

  /** chats in progress */
  running (): RunningChat[] {
    return [...this.active.values()].map(r => ({ ...r }))
  }

  /**
   * For shutdown: refuses new chats, gives running ones up to `graceMs` to finish,
   * then ends the rest with SHUTTING_DOWN (their providers are told at once).
   */
  async drain (opts: { graceMs: number }): Promise<void> {
    this.draining = true
    const deadline = this.now() + opts.graceMs
    while (this.active.size > 0 && this.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    this.closing.abort()
  }

  /** the error for a chat whose signal fired: the caller left, or we are shutting down */
  private stopped (caller: AbortSignal | undefined, cause?: unknown): KrillError {
    if (this.closing.signal.aborted && caller?.aborted !== true) {
      return new KrillError('SHUTTING_DOWN', 'krill is shutting down; the chat was cut short', { cause })
    }
    return new KrillError('CANCELLED', 'the chat was cancelled', { cause })
  }

  /**
   * Streams one chat: at most one 'accepted', then deltas, then exactly one 'done'.
   * Throws KrillError: UNKNOWN_MODEL when nobody serves the model, BAD_REQUEST /
   * TOO_LARGE as the provider said, CANCELLED when `signal` aborts, SHUTTING_DOWN
   * when drain() ends it, else NO_PROVIDER, BUSY, TIMEOUT or ENGINE_FAILED once
   * every candidate failed.
   */
  async * chat (request: ChatRequest, opts: RouteOptions = {}): AsyncGenerator<ChatEvent, void, undefined> {
    if (this.draining) throw new KrillError('SHUTTING_DOWN', 'krill is shutting down and takes no new chats')
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, this.closing.signal]) : this.closing.signal
    const startedAt = this.now()
    const run: RunningChat = { id: this.nextId++, model: request.model, digest: request.digest ?? '', peerId: '', local: false, startedAt, tokens: 0 }
    this.stats.requests++
    this.active.set(run.id, run)
    let outcome: ServedInfo['outcome'] = 'cancelled'
    let failovers = 0
    let firstTokenMs: number | undefined
    try {
      const partial = new PartialAnswer()
      const tried = new Set<string>()
      /** providers asked again after their connection was replaced (once each) */
      const reasked = new Set<string>()
      /** the provider to ask again next, bypassing the ranking */
      let again: Candidate | undefined
      const failures: KrillError[] = []
      const needs = chatNeeds(request)
      const { candidates: found, dhtAsked: askedAlready } = await this.gather(request.model, request.digest, needs, opts.peer, signal)
      let candidates = found
      let dhtAsked = askedAlready
      // past the daily budget only the local engine may answer
      const overBudget = this.deps.budget?.refusal()
      if (overBudget != null) {
        candidates = candidates.filter(c => c.local)
        dhtAsked = true
        if (candidates.length === 0) throw overBudget
      }
      let anyAccepted = false
      let preferDigest: string | undefined
      let acceptedSent = false
      let attempts = 0

      /** one provider asked: its own abort, timers and event iterator */
      interface Attempt {
        cand: Candidate
        ac: AbortController
        timer: AttemptTimer
        it: AsyncIterator<ChatEvent>
        startedAt: number
        deltasBefore: number
        onAbort: () => void
        /** the first event (or the failure before it), settled once */
        first: Promise<{ attempt: Attempt, result?: IteratorResult<ChatEvent>, err?: unknown }>
      }
      const start = (cand: Candidate): Attempt => {
        attempts++
        tried.add(cand.peerId)
        const ac = new AbortController()
        const timer = new AttemptTimer(ac, this.firstTokenTimeoutMs, this.stallTimeoutMs)
        const onAbort = (): void => { ac.abort(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
        const startedAt = this.now()
        this.inflight.set(cand.peerId, [...(this.inflight.get(cand.peerId) ?? []), startedAt])
        const it = this.provider(cand).chat(this.withBudget(continuationRequest(request, partial, cand.model), cand.local), ac.signal)[Symbol.asyncIterator]()
        const attempt: Attempt = { cand, ac, timer, it, startedAt, deltasBefore: partial.deltas, onAbort, first: undefined as any }
        attempt.first = it.next().then(result => ({ attempt, result }), err => ({ attempt, err }))
        return attempt
      }
      const finish = (a: Attempt): void => {
        a.timer.clear()
        signal.removeEventListener('abort', a.onAbort)
        a.ac.abort(ATTEMPT_OVER)
        // never awaited: a generator stuck in a read (a frozen peer) returns only once the abort lands
        void a.it.return?.().catch(() => {})
        const running = this.inflight.get(a.cand.peerId) ?? []
        running.splice(running.indexOf(a.startedAt), 1)
        if (running.length === 0) this.inflight.delete(a.cand.peerId)
      }
      /** the next candidate to ask, or undefined when nobody is left */
      const pick = async (): Promise<Candidate | undefined> => {
        let next = again ?? this.rank(candidates.filter(c => !tried.has(c.peerId)), request.digest, preferDigest)[0]
        again = undefined
        if (next == null && !dhtAsked) {
          // every known provider failed: the DHT may know others the table does not
          dhtAsked = true
          candidates = [...candidates, ...(await this.lookupDht(request.model, signal)).filter(c => missingCapability(c.capabilities, needs) == null)]
          next = this.rank(candidates.filter(c => !tried.has(c.peerId)), request.digest, preferDigest)[0]
        }
        if (next == null || attempts >= this.maxAttempts) return undefined
        return next
      }
      /**
       * A failed attempt: rethrows what every provider would say; otherwise books the
       * failure (backoff, counters) or, when only the connection under it was
       * replaced, queues the same provider again.
       */
      const failed = (a: Attempt, err: unknown): void => {
        if (signal.aborted) throw this.stopped(opts.signal, err)
        const peer = a.cand.peerId
        const failure = a.timer.error(peer) ?? toKrillError(err, peer)
        if (FINAL_CODES.has(failure.code)) throw failure
        if (failure.connectionReplaced && !reasked.has(peer)) {
          // not the provider's failure: no backoff, not counted as a failover;
          // the same request (or, after tokens, the continuation) goes out on
          // the connection that replaced the old one
          reasked.add(peer)
          again = a.cand
          this.stats.reconnects++
          log.info(`peer ${peer}: the connection under the ${request.model} chat was replaced after ${partial.deltas - a.deltasBefore} token(s) (${failure.message}); asking it again`)
        } else {
          this.backoff.fail(peer)
          if (failure.unreachable && !a.cand.local) this.deps.unreachable?.(peer)
          failures.push(failure)
          failovers++
          this.stats.failovers++
          if (!partial.empty) this.stats.continuations++
          log.warn(`${a.cand.local ? 'local engine' : `peer ${peer}`} failed on ${request.model} after ${partial.deltas - a.deltasBefore} token(s): ${failure.code} ${failure.message}; trying the next provider`)
        }
      }

      while (true) {
        if (signal.aborted) throw this.stopped(opts.signal)
        // Acquire: ask the best candidate; one that has not answered (Accepted)
        // within the hedge delay gets the next candidate asked too. The first to
        // answer wins and the others are cancelled (their engines stop at once).
        const pending: Attempt[] = []
        let won: { attempt: Attempt, first: ChatEvent } | undefined
        let hedgeDue = true
        let exhausted = false
        try {
          while (won == null) {
            if (hedgeDue && !exhausted) {
              hedgeDue = false
              const next = await pick()
              if (next == null) exhausted = true
              else {
                if (pending.length > 0) {
                  this.stats.hedges++
                  log.info(`peer ${pending.at(-1)?.cand.peerId ?? '?'} has not accepted the ${request.model} chat within ${this.hedgeDelay(pending.at(-1) as Attempt)} ms; asking ${next.local ? 'the local engine' : `peer ${next.peerId}`} too`)
                }
                pending.push(start(next))
              }
            }
            if (pending.length === 0) throw this.exhausted(request.model, failures, opts.peer, anyAccepted)
            let hedgeTimer: NodeJS.Timeout | undefined
            const delay = this.hedgeDelay(pending.at(-1) as Attempt)
            const hedge = exhausted || !Number.isFinite(delay)
              ? undefined
              : new Promise<'hedge'>(resolve => { hedgeTimer = setTimeout(() => { resolve('hedge') }, delay) })
            const raced = await Promise.race([...pending.map(async a => await a.first), ...(hedge != null ? [hedge] : [])])
            clearTimeout(hedgeTimer)
            if (raced === 'hedge') {
              hedgeDue = true
              continue
            }
            const { attempt, result, err } = raced
            pending.splice(pending.indexOf(attempt), 1)
            if (err == null && result != null && result.done !== true) {
              won = { attempt, first: result.value }
              break
            }
            finish(attempt)
            failed(attempt, err ?? new KrillError('ENGINE_FAILED', `provider ${attempt.cand.peerId} ended the answer without finishing it`, { peer: attempt.cand.peerId }))
            // a failure moves on at once (no hedge wait)
            hedgeDue = true
          }
        } finally {
          // losers (or everyone, when we leave by an error) are cancelled
          for (const a of pending.splice(0)) finish(a)
        }

        const a = won.attempt
        const next = a.cand
        const { timer, deltasBefore } = a
        run.peerId = next.peerId
        run.local = next.local
        run.digest = next.digest
        try {
          let step: IteratorResult<ChatEvent> = { done: false, value: won.first }
          while (step.done !== true) {
            const event = step.value
            if (event.type === 'accepted') {
              anyAccepted = true
              if (event.digest !== '') run.digest = event.digest
              preferDigest ??= event.digest !== '' ? event.digest : undefined
              if (!acceptedSent) {
                acceptedSent = true
                yield event
              }
              step = await a.it.next()
              continue
            }
            timer.progress()
            if (partial.deltas === deltasBefore) opts.onProvider?.(next.peerId, next.local)
            if (event.type === 'delta') {
              if (partial.empty) {
                firstTokenMs ??= this.now() - startedAt
                this.stats.recordTtft(this.now() - startedAt, request.model, next.local)
              }
              partial.add(event)
              run.tokens++
              this.stats.tokens++
              yield event
              step = await a.it.next()
              continue
            }
            this.backoff.succeed(next.peerId)
            const usage = mergeUsage(event.usage, deltasBefore, (this.now() - startedAt) * 1e6)
            outcome = 'done'
            this.stats.completed++
            if (next.local) this.stats.local++
            else this.stats.remote++
            yield { type: 'done', usage }
            return
          }
          throw new KrillError('ENGINE_FAILED', `provider ${next.peerId} ended the answer without finishing it`, { peer: next.peerId })
        } catch (err) {
          failed(a, err)
          if (partial.toolCalls.length > 0) {
            // tool calls close an answer: what the client has is complete
            outcome = 'done'
            this.stats.completed++
            yield { type: 'done', usage: this.syntheticUsage(partial, startedAt) }
            return
          }
        } finally {
          // the winner is at a yield (or done): let it finish its own cleanup (the
          // chat server's slot, a clean stream close) before we go on, as for-await would
          try {
            await a.it.return?.()
          } catch {}
          finish(a)
        }
      }
    } catch (err) {
      if (err instanceof KrillError && err.code === 'CANCELLED') {
        outcome = 'cancelled'
      } else {
        outcome = 'failed'
        this.stats.failed++
        this.stats.recordError(err instanceof KrillError ? err.code : 'INTERNAL')
      }
      throw err
    } finally {
      if (outcome === 'cancelled') this.stats.cancelled++
      this.active.delete(run.id)
      this.deps.onServed?.({ model: request.model, peerId: run.peerId, tokens: run.tokens, durationMs: this.now() - startedAt, outcome, failovers, firstTokenMs })
    }
  }

  /** How long `attempt` may go without Accepted before the next candidate is asked too. */
  private hedgeDelay (attempt: { cand: Candidate }): number {
    // the local engine is not hedged: it waits for one of our own slots, in a
    // queue we know about (peers' chats and ours share it), and is never frozen
    if (attempt.cand.local) return Infinity
    const rtt = this.deps.latencyMs?.(attempt.cand.peerId)
    return Math.max(this.hedgeMs, rtt != null ? rtt * this.hedgeRtts : 0)
  }

  /** A request to a peer that sets no num_predict gets the budget's default. */
  private withBudget (request: ChatRequest, local: boolean): ChatRequest {
    const max = this.deps.budget?.defaultMaxTokens
    if (local || max == null || request.options?.num_predict != null) return request
    return { ...request, options: { ...request.options, num_predict: max } }
  }

  /** embeddings routed for this node's API clients */
  readonly embedStats = { requests: 0, completed: 0, failed: 0, failovers: 0, inputs: 0 }

  /**
   * Embeds every input on providers that serve the model and can embed, with the
   * chat's ranking, backoff and failover: a batch larger than one request carries
   * is split, each piece goes to the best provider left, and a provider that fails
   * is replaced by the next (embeddings are all or nothing per piece, so the caller
   * never sees a failover). Once a piece is answered, later pieces must come from
   * a copy with the same digest, so that every vector of one answer is comparable.
   */
  async embed (request: EmbedRequest, opts: RouteOptions = {}): Promise<EmbedOutcome> {
    if (this.draining) throw new KrillError('SHUTTING_DOWN', 'krill is shutting down and takes no new requests')
    const signal = opts.signal != null ? AbortSignal.any([opts.signal, this.closing.signal]) : this.closing.signal
    this.embedStats.requests++
    try {
      const pieces = splitEmbedBatch(request)
      const found = await this.gather(request.model, request.digest, EMBED_NEEDS, opts.peer, signal)
      let { candidates, dhtAsked } = found
      // past the daily budget only the local engine may answer, as for chats
      const overBudget = this.deps.budget?.refusal()
      if (overBudget != null) {
        candidates = candidates.filter(c => c.local)
        dhtAsked = true
        if (candidates.length === 0) throw overBudget
      }
      let digest = request.digest
      const out: EmbedOutcome = { embeddings: [], promptTokens: 0, totalDurationNs: 0, loadDurationNs: 0, providers: [], digest: digest ?? '' }
      for (const piece of pieces) {
        const done = await this.embedPiece({ ...piece, digest }, candidates, dhtAsked, opts, signal)
        if (digest == null && done.digest !== '') digest = done.digest
        out.embeddings.push(...done.embeddings)
        out.promptTokens += done.promptTokens
        out.totalDurationNs += done.totalDurationNs
        out.loadDurationNs += done.loadDurationNs
        const who = done.local ? 'local' : done.peerId
        if (!out.providers.includes(who)) out.providers.push(who)
      }
      out.digest = digest ?? ''
      this.embedStats.completed++
      this.embedStats.inputs += request.input.length
      return out
    } catch (err) {
      this.embedStats.failed++
      if (signal.aborted) throw this.stopped(opts.signal, err)
      throw err
    }
  }

  private async embedPiece (request: EmbedRequest, candidates: Candidate[], dhtAsked: boolean, opts: RouteOptions, signal: AbortSignal): Promise<EmbedResult & { digest: string, peerId: string, local: boolean }> {
    const tried = new Set<string>()
    const failures: KrillError[] = []
    let pool = candidates
    let askedDht = dhtAsked
    let attempts = 0
    while (true) {
      if (signal.aborted) throw this.stopped(opts.signal)
      let next = this.rank(pool.filter(c => !tried.has(c.peerId)), request.digest, undefined)[0]
      if (next == null && !askedDht) {
        askedDht = true
        pool = [...pool, ...await this.lookupDht(request.model, signal)]
        next = this.rank(pool.filter(c => !tried.has(c.peerId)), request.digest, undefined)[0]
      }
      if (next == null || attempts >= this.maxAttempts) throw this.exhausted(request.model, failures, opts.peer, false)
      attempts++
      tried.add(next.peerId)
      const ac = new AbortController()
      const onAbort = (): void => { ac.abort(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      const timer = setTimeout(() => { ac.abort(new KrillError('TIMEOUT', `${next.local ? 'the local engine' : `peer ${next.peerId}`} did not answer the embedding within ${this.firstTokenTimeoutMs} ms`, { peer: next.peerId })) }, this.firstTokenTimeoutMs)
      const started = this.now()
      this.inflight.set(next.peerId, [...(this.inflight.get(next.peerId) ?? []), started])
      try {
        const piece = { ...request, model: next.model }
        let result: EmbedResult & { digest: string }
        if (next.local) {
          const engine = this.deps.local?.()?.engine
          if (engine?.embed == null) throw new KrillError('ENGINE_FAILED', 'the local engine is not available')
          result = { ...await engine.embed(piece, ac.signal), digest: next.digest }
        } else {
          if (this.deps.remoteEmbed == null) throw new KrillError('NO_PROVIDER', 'this node cannot reach peers for embeddings')
          result = await this.deps.remoteEmbed(next.peerId, piece, ac.signal)
        }
        this.backoff.succeed(next.peerId)
        opts.onProvider?.(next.peerId, next.local)
        return { ...result, peerId: next.peerId, local: next.local }
      } catch (err) {
        if (signal.aborted) throw this.stopped(opts.signal, err)
        const failure = ac.signal.aborted && ac.signal.reason instanceof KrillError ? ac.signal.reason : toKrillError(err, next.peerId)
        if (FINAL_CODES.has(failure.code)) throw failure
        this.backoff.fail(next.peerId)
        failures.push(failure)
        this.embedStats.failovers++
        log.warn(`${next.local ? 'local engine' : `peer ${next.peerId}`} failed to embed for ${request.model}: ${failure.code} ${failure.message}; trying the next provider`)
      } finally {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        ac.abort(ATTEMPT_OVER)
        const running = this.inflight.get(next.peerId) ?? []
        running.splice(running.indexOf(started), 1)
        if (running.length === 0) this.inflight.delete(next.peerId)
      }
    }
  }

  /** Every copy of the model this node knows of: its own engine's and the provider table's. */
  private known (model: string, digest: string | undefined): Candidate[] {
    const candidates: Candidate[] = []
    const local = this.deps.local?.()
    if (local != null) {
      for (const m of local.models) {
        if (!sameModel(m.name, model)) continue
        if (digest != null && digest !== '' && m.digest !== digest) continue
        candidates.push({
          peerId: this.deps.selfId,
          local: true,
          model: m.name,
          digest: m.digest,
          capacity: local.capacity ?? { slots: this.localSlots, active: 0, queued: 0 },
          // a live figure: it already counts every chat running there
          capacityAt: local.capacity != null ? this.now() : undefined,
          source: 'local',
          capabilities: m.capabilities
        })
      }
    }
    // the directory compares names by model id (src/models): one question finds every spelling
    for (const entry of this.deps.providers.providersFor(model, digest)) {
      if (entry.peerId !== this.deps.selfId) candidates.push(candidateFromEntry(entry))
    }
    return candidates
  }

  /**
   * The candidates for a request: local engine and provider table, the DHT only when
   * neither knows the model; only the pinned peer when there is one; only copies
   * that can do what the request needs, where that is known. Throws UNKNOWN_MODEL
   * (nobody, or the pinned peer does not serve it) or BAD_REQUEST naming the
   * capability no known copy has.
   */
  private async gather (model: string, digest: string | undefined, needs: readonly string[], peer: string | undefined, signal: AbortSignal): Promise<{ candidates: Candidate[], dhtAsked: boolean }> {
    let candidates = this.known(model, digest)
    let dhtAsked = false
    const what = `model "${model}"${digest != null ? ` with digest ${digest}` : ''}`
    if (peer != null) {
      const pinned = peer === 'local' ? this.deps.selfId : peer
      candidates = candidates.filter(c => c.peerId === pinned)
      // a pinned request goes to that peer or nowhere
      dhtAsked = true
      if (candidates.length === 0) {
        if (pinned === this.deps.selfId) throw new KrillError('UNKNOWN_MODEL', `this node does not serve ${what}`)
        if (this.deps.knowsPeer?.(pinned) === true) throw new KrillError('UNKNOWN_MODEL', `peer ${pinned} does not serve ${what}`)
        // a peer we have not heard of: ask it directly, it may well serve the model
        candidates = [{ peerId: pinned, local: false, model, digest: digest ?? '', source: 'dht' }]
      }
    } else if (candidates.length === 0) {
      candidates = await this.lookupDht(model, signal)
      dhtAsked = true
    }
    if (candidates.length === 0) throw new KrillError('UNKNOWN_MODEL', `${what} is not served by this node or any peer it knows`)
    const capable = candidates.filter(c => missingCapability(c.capabilities, needs) == null)
    if (capable.length === 0) {
      const missing = missingCapability(candidates[0].capabilities, needs) as string
      const where = peer != null ? `peer ${peer}'s copy of "${model}"` : `"${model}"`
      throw new KrillError('BAD_REQUEST', `${where} does not support ${missing}: ${candidates.length === 1 ? 'the one copy krill knows of cannot' : `none of the ${candidates.length} copies krill knows of can`} do that`)
    }
    return { candidates: capable, dhtAsked }
  }

  private async lookupDht (model: string, signal: AbortSignal): Promise<Candidate[]> {
    if (this.deps.findProviders == null) return []
    const lookup = AbortSignal.any([signal, AbortSignal.timeout(this.dhtTimeoutMs)])
    try {
      const entries = await this.deps.findProviders(model, lookup)
      return entries
        .filter(e => e.peerId !== this.deps.selfId && sameModel(e.model.name === '' ? model : e.model.name, model))
        .map(e => ({ ...candidateFromEntry(e), model: e.model.name === '' ? model : e.model.name }))
    } catch (err) {
      if (signal.aborted) throw this.stopped(undefined, err)
      log.debug(`DHT lookup for ${model} failed: ${err instanceof Error ? err.message : String(err)}`)
      return []
    }
  }

  private rank (candidates: Candidate[], digest: string | undefined, preferDigest: string | undefined): Candidate[] {
    return rankCandidates(candidates, {
      digest,
      preferDigest,
      latencyMs: peer => this.deps.latencyMs?.(peer),
      inflight: (peer, since) => (this.inflight.get(peer) ?? []).filter(t => since == null || t >= since).length,
      backoffUntil: peer => this.backoff.until(peer),
      now: this.now(),
      random: this.random
    })
  }

  private provider (c: Candidate): Provider {
    if (!c.local) return remoteProvider(c.peerId, this.deps.remoteChat)
    const local = this.deps.local?.()
    if (local == null) {
      return {
        peerId: c.peerId,
        local: true,
        // the engine went away between ranking and now
        chat: () => { throw new KrillError('ENGINE_FAILED', 'the local engine is not available') }
      }
    }
    return localProvider(this.deps.selfId, local.engine, name => local.models.find(m => sameModel(m.name, name))?.digest ?? c.digest)
  }

  /** The error for a chat every candidate failed: the most telling code, every reason. */
  private exhausted (model: string, failures: KrillError[], pinned?: string, reached = true): KrillError {
    const codes = new Set(failures.map(f => f.code))
    const only = (...allowed: ErrorCodeName[]): boolean => codes.size > 0 && [...codes].every(c => allowed.includes(c))
    let code: ErrorCodeName
    if (only('UNKNOWN_MODEL')) code = 'UNKNOWN_MODEL'
    else if (only('BUSY', 'RATE_LIMITED')) code = codes.has('BUSY') ? 'BUSY' : 'RATE_LIMITED'
    else if (only('TIMEOUT')) code = 'TIMEOUT'
    // every provider's policy refuses us: say so (403), don't pretend nobody is there
    else if (only('FORBIDDEN')) code = 'FORBIDDEN'
    else if (codes.has('ENGINE_FAILED')) code = 'ENGINE_FAILED'
    else code = 'NO_PROVIDER'
    const reasons = failures.map(f => f.message).join('; ')
    if (pinned != null && !reached && ['ENGINE_FAILED', 'TIMEOUT', 'NO_PROVIDER'].includes(code)) {
      // never heard from the pinned peer: it is unreachable, and nobody else may answer
      return new KrillError('NO_PROVIDER', `peer ${pinned} could not be reached for model "${model}": ${reasons}`, { cause: failures.at(-1) })
    }
    const message = failures.length === 0
      ? `no provider is left to try for model "${model}"`
      : `no provider could answer for model "${model}" (tried ${failures.length}): ${reasons}`
    return new KrillError(code, message, { cause: failures.at(-1) })
  }

  private syntheticUsage (partial: PartialAnswer, startedAt: number): Usage {
    return {
      doneReason: 'stop',
      promptTokens: 0,
      completionTokens: partial.deltas,
      totalDurationNs: (this.now() - startedAt) * 1e6,
      loadDurationNs: 0,
      promptEvalDurationNs: 0,
      evalDurationNs: 0
    }
  }
}
