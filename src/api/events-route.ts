/**
 * GET /krill/v1/events: a live feed for the web console and scripts, as
 * Server-Sent Events. Each message is one JSON object with an "event" field: the
 * daemon's own events (the same objects `krill daemon --json` prints: peer:joined,
 * model:appeared, request:routed, …) and, at once and then every few seconds, a
 * "snapshot" of the whole picture (status, peers, models with their providers,
 * requests, ledger and balance), so a page never needs to poll or reload.
 *
 * A client that stops reading misses events (the next snapshot catches it up);
 * it never makes the daemon buffer without bound.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'

export interface FeedEvent { event: string, [key: string]: unknown }

/** Where the feed's events come from (the composition root binds the daemon's). */
export interface EventsPort {
  /** the daemon's events from now on; returns the function that unsubscribes */
  subscribe: (listener: (event: FeedEvent) => void) => () => void
}

export interface EventsRouteDeps extends EventsPort {
  /** the whole picture, sent first and then every `snapshotMs` */
  snapshot: (request: FastifyRequest) => Promise<Record<string, unknown>>
  /** default 3000 */
  snapshotMs?: number
  /** concurrent feeds at most (default 32); more get 429 */
  maxClients?: number
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
  connection: 'keep-alive'
}

export function registerEventsRoute (app: FastifyInstance, deps: EventsRouteDeps): void {
  const snapshotMs = deps.snapshotMs ?? 3_000
  const maxClients = deps.maxClients ?? 32
  let clients = 0

  app.get('/krill/v1/events', async (request, reply) => {
    if (clients >= maxClients) {
      return await reply.code(429).send({ error: { message: `too many event feeds open (${maxClients}); close a console tab`, code: 'too_many_feeds' } })
    }
    clients++
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, SSE_HEADERS)
    res.flushHeaders()
    let open = true
    /** the client's buffer is full: drop events until it drains */
    let congested = false
    const write = (message: FeedEvent): void => {
      if (!open || congested) return
      congested = !res.write(`data: ${JSON.stringify(message)}\n\n`)
    }
    res.on('drain', () => { congested = false })

    const unsubscribe = deps.subscribe(event => { write(event) })
    let timer: NodeJS.Timeout | undefined
    const tick = async (): Promise<void> => {
      try {
        const snapshot = await deps.snapshot(request)
        write({ event: 'snapshot', at: Date.now(), ...snapshot })
      } catch (err) {
        write({ event: 'error', message: err instanceof Error ? err.message : String(err) })
      }
      if (open) timer = setTimeout(() => { void tick() }, snapshotMs)
    }
    const close = (): void => {
      if (!open) return
      open = false
      clients--
      unsubscribe()
      clearTimeout(timer)
    }
    res.once('close', close)
    request.raw.once('error', close)
    // a comment first: the client sees the feed open before the first snapshot is ready
    res.write(': krill events\n\n')
    void tick()
  })
}

/** Control API routes a snapshot reads (through the app, so it says what they say). */
const SNAPSHOT_ROUTES = {
  status: '/krill/v1/status',
  peers: '/krill/v1/peers',
  models: '/krill/v1/models',
  requests: '/krill/v1/requests',
  ledger: '/krill/v1/ledger?limit=20',
  balance: '/krill/v1/balance'
} as const

/** providers are looked up for this many models per snapshot at most */
const MAX_MODELS_WITH_PROVIDERS = 40

/**
 * A snapshot made of the control API's own answers, asked in-process with the
 * caller's Host and credentials. A route this daemon lacks (404, e.g. the ledger
 * on a build without receipts) comes back as null. Concurrent feeds share one
 * snapshot while it is fresh.
 */
export function snapshotFromRoutes (app: FastifyInstance, opts: { freshMs?: number } = {}): (request: FastifyRequest) => Promise<Record<string, unknown>> {
  const freshMs = opts.freshMs ?? 1_000
  let last: { at: number, auth: string, value: Promise<Record<string, unknown>> } | undefined
  const get = async (url: string, request: FastifyRequest): Promise<unknown> => {
    const headers: Record<string, string> = { host: request.headers.host ?? '127.0.0.1' }
    if (request.headers.authorization != null) headers.authorization = request.headers.authorization
    const answer = await app.inject({ method: 'GET', url, headers })
    if (answer.statusCode === 404) return null
    if (answer.statusCode !== 200) throw new Error(`${url} answered ${answer.statusCode}: ${answer.body.slice(0, 200)}`)
    return answer.json()
  }
  const take = async (request: FastifyRequest): Promise<Record<string, unknown>> => {
    const entries = await Promise.all(Object.entries(SNAPSHOT_ROUTES).map(async ([key, url]) => [key, await get(url, request)] as const))
    const snapshot: Record<string, any> = Object.fromEntries(entries)
    // models peers serve (the ones only this node has need no lookup: status has its load)
    const names: string[] = (snapshot.models?.models ?? [])
      .filter((m: { providers: number }) => m.providers > 0)
      .map((m: { name: string }) => m.name)
      .slice(0, MAX_MODELS_WITH_PROVIDERS)
    const providers = await Promise.all(names.map(async name => [name, await get(`/krill/v1/providers/${name.split('/').map(encodeURIComponent).join('/')}`, request).catch(() => null)] as const))
    snapshot.providers = Object.fromEntries(providers)
    return snapshot
  }
  return async request => {
    const auth = request.headers.authorization ?? ''
    if (last == null || Date.now() - last.at > freshMs || last.auth !== auth) {
      const value = take(request)
      last = { at: Date.now(), auth, value }
      value.catch(() => { if (last?.value === value) last = undefined })
    }
    return await last.value
  }
}
