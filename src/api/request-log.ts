/**
 * Requests this node's API routed: the ones running now (from the router) and the
 * last finished ones (recorded from the router's request:routed reports), with who
 * served them, time to first token and tokens per second. For the web console and
 * GET /krill/v1/requests.
 */
import type { FastifyInstance } from 'fastify'

/** What the router reports when one of our API's chats ends (the request:routed event). */
export interface RoutedReport {
  model: string
  /** who finished the answer: a peer id, or this node's own id for the local Ollama */
  peerId: string
  tokens: number
  durationMs: number
  outcome: string
  /** from the request to the first token; absent or null when no token came */
  ttftMs?: number | null
}

export interface RecentRequest {
  /** when it ended (ms since the epoch) */
  at: number
  model: string
  peerId: string
  /** answered by this node's own Ollama */
  local: boolean
  tokens: number
  durationMs: number
  ttftMs: number | null
  /** tokens after the first one, per second of generating them; null when it cannot be told */
  tokensPerSecond: number | null
  outcome: string
}

/** A chat in flight, as the router describes it. */
export interface InFlightRequest {
  model: string
  /** the provider asked right now ('' while none is chosen yet) */
  peerId: string
  local: boolean
  startedAt: number
  tokens: number
}

export interface RequestsAnswer {
  running: Array<InFlightRequest & { elapsedMs: number }>
  recent: RecentRequest[]
}

/** Generation speed: the tokens after the first over the time after the first. */
export function tokensPerSecond (tokens: number, durationMs: number, ttftMs: number | null): number | null {
  if (tokens <= 0) return null
  if (ttftMs != null && tokens > 1 && durationMs > ttftMs) return (tokens - 1) / ((durationMs - ttftMs) / 1000)
  return durationMs > 0 ? tokens / (durationMs / 1000) : null
}

/** A ring of the last `capacity` finished requests, newest first when read. */
export class RequestLog {
  private readonly capacity: number
  private readonly selfId: string
  private readonly now: () => number
  private readonly ring: RecentRequest[] = []

  constructor (opts: { selfId: string, capacity?: number, now?: () => number }) {
    this.selfId = opts.selfId
    this.capacity = opts.capacity ?? 100
    this.now = opts.now ?? Date.now
  }

  record (report: RoutedReport): RecentRequest {
    const ttftMs = report.ttftMs ?? null
    const entry: RecentRequest = {
      at: this.now(),
      model: report.model,
      peerId: report.peerId,
      local: report.peerId !== '' && report.peerId === this.selfId,
      tokens: report.tokens,
      durationMs: report.durationMs,
      ttftMs,
      tokensPerSecond: tokensPerSecond(report.tokens, report.durationMs, ttftMs),
      outcome: report.outcome
    }
    this.ring.push(entry)
    if (this.ring.length > this.capacity) this.ring.shift()
    return entry
  }

  recent (): RecentRequest[] {
    return [...this.ring].reverse()
  }
}

export interface RequestRoutesDeps {
  running: () => InFlightRequest[]
  recent: () => RecentRequest[]
  now?: () => number
}

export function requestsAnswer (deps: RequestRoutesDeps): RequestsAnswer {
  const now = deps.now?.() ?? Date.now()
  return {
    running: deps.running().map(r => ({ model: r.model, peerId: r.peerId, local: r.local, startedAt: r.startedAt, tokens: r.tokens, elapsedMs: Math.max(0, now - r.startedAt) })),
    recent: deps.recent()
  }
}

export function registerRequestRoutes (app: FastifyInstance, deps: RequestRoutesDeps): void {
  app.get('/krill/v1/requests', async (): Promise<RequestsAnswer> => requestsAnswer(deps))
}
