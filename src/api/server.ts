import { timingSafeEqual } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { AddressInUseError, AddressUnavailableError, ConfigError } from '../errors.js'
import { isLoopbackHost } from '../peers/index.js'
import { VERSION } from '../version.js'
import type { PolicyStore } from '../policy/policy-store.js'
import type { ApiBackend } from './backend.js'
import { registerControlRoutes, type ControlPort } from './control.js'
import { registerEventsRoute, snapshotFromRoutes, type EventsPort } from './events-route.js'
import { registerRequestRoutes, type RequestRoutesDeps } from './request-log.js'
import { isUiAsset, registerUiRoutes } from './ui-routes.js'
import { registerLimitMetrics } from './limit-metrics.js'
import { registerMetricsRoute, type MetricsPort } from './metrics.js'
import { registerOriginGuard } from './origin-guard.js'
import { registerLedgerRoutes, type LedgerPort } from './ledger-routes.js'
import { registerDialectNotFound } from './not-found.js'
import { registerProviderDefault } from './routing-headers.js'
import { registerPolicyRoutes } from './policy-routes.js'
import { registerInviteRoutes, type InvitePort } from './invite-routes.js'
import { ollamaRoutes } from './ollama.js'
import { openAiRoutes } from './openai.js'

/** What the HTTP API is built from; the composition root (src/daemon/) binds each port. */
export interface ApiDeps {
  /** where it will listen: a loopback API needs no token, any other one does */
  host: string
  /** bearer token required on every request when set */
  apiToken?: string
  /** chat, catalog and /api/show for the OpenAI and Ollama routes */
  backend: ApiBackend
  /** /krill/v1/* */
  control: ControlPort
  /** /metrics */
  metrics: MetricsPort
  /** GET/PUT /krill/v1/policy */
  policy: PolicyStore
  /** GET /krill/v1/events: the daemon's events, live */
  events: EventsPort
  /** GET /krill/v1/requests: chats in flight and the last finished ones */
  requests: RequestRoutesDeps
  /** GET /ui/: the web console's files (src/ui/assets) */
  uiAssetsDir: string
  /** GET /krill/v1/ledger and /krill/v1/balance */
  ledger?: LedgerPort
  /** POST /krill/v1/invite; absent when there is no swarm to invite to */
  invite?: InvitePort
}

export interface ApiServer {
  url: string
  app: FastifyInstance
  /** every route, "GET /krill/v1/status" (fastify's automatic HEAD routes left out): docs/http-api.md is checked against it */
  routes: string[]
  listen: (at: { host: string, port: number }) => Promise<void>
  close: () => Promise<void>
}

function tokenMatches (header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.replace(/^Bearer\s+/i, '') ?? '')
  const want = Buffer.from(token)
  return given.length === want.length && timingSafeEqual(given, want)
}

/** The daemon's HTTP surface: OpenAI- and Ollama-compatible APIs, control API, /metrics. */
export async function createApiServer (deps: ApiDeps): Promise<ApiServer> {
  const app = Fastify({
    logger: false,
    bodyLimit: 8 * 1024 * 1024,
    // A slow client (slowloris) must not hold a connection: the whole request, headers
    // and body, must arrive within 60 s (Node answers 408). This bounds the request
    // only, never the answer: an SSE stream runs as long as the model talks.
    requestTimeout: 60_000,
    // No socket inactivity limit: a non-streamed answer, or a model that is loading,
    // keeps a socket silent for minutes. Silence is bounded elsewhere: by the router's
    // first-token and stall timeouts, and for a client that stops reading by the
    // stream writer's stall timeout.
    connectionTimeout: 0,
    keepAliveTimeout: 5_000
  })
  const routes: string[] = []
  app.addHook('onRoute', route => {
    for (const method of [route.method].flat()) if (method !== 'HEAD' || route.exposeHeadRoute === false) routes.push(`${method} ${route.url}`)
  })
  // on every answer, refusals included: how `krill` tells this API from Ollama's or
  // anything else (on the raw response: streamed answers write their head themselves)
  app.addHook('onRequest', async (_request, reply) => { reply.raw.setHeader('x-krill-version', VERSION) })
  const token = deps.apiToken
  registerOriginGuard(app, { loopbackOnly: token == null && isLoopbackHost(deps.host), sameOrigin: token != null })

  app.addHook('onRequest', async (request, reply) => {
    if (token == null) return
    // the console's static files hold no data; the page sends the token with every call
    if (request.method === 'GET' && isUiAsset(request.url)) return
    if (!tokenMatches(request.headers.authorization, token)) {
      await reply.code(401).send({ error: { message: 'missing or wrong bearer token: send "Authorization: Bearer <KRILL_API_TOKEN>"', type: 'authentication_error', code: 'unauthorized' } })
    }
  })

  registerDialectNotFound(app)
  registerProviderDefault(app)
  registerControlRoutes(app, deps.control)
  registerMetricsRoute(app, deps.metrics)
  registerLimitMetrics(app, deps.metrics)
  registerPolicyRoutes(app, deps.policy)
  registerRequestRoutes(app, deps.requests)
  registerEventsRoute(app, { subscribe: deps.events.subscribe, snapshot: snapshotFromRoutes(app) })
  registerUiRoutes(app, { assetsDir: deps.uiAssetsDir })
  if (deps.ledger != null) registerLedgerRoutes(app, deps.ledger)
  if (deps.invite != null) registerInviteRoutes(app, deps.invite)
  const backend = deps.backend
  await app.register(openAiRoutes, { prefix: '/v1', backend })
  await app.register(ollamaRoutes, { backend })

  const server: ApiServer = {
    url: '',
    app,
    routes,
    listen: async ({ host, port }) => {
      if (!isLoopbackHost(host) && token == null) {
        throw new ConfigError(`--api ${host}:${port} is not a loopback address: set an API token (KRILL_API_TOKEN or "apiToken" in krill.json, at least 16 characters) so strangers cannot use your node`)
      }
      try {
        await app.listen({ host, port })
      } catch (err: any) {
        if (err.code === 'EADDRINUSE') throw new AddressInUseError(`API address ${host}:${port} is already in use: is another krill daemon running? Use --api with another port (0 picks a free one)`, { cause: err })
        if (err.code === 'EADDRNOTAVAIL') throw new AddressUnavailableError(`API address ${host} is not an address of this machine; use --api 127.0.0.1:11435`, { cause: err })
        throw err
      }
      const address = app.server.address()
      const bound = typeof address === 'object' && address != null ? address.port : port
      server.url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`
    },
    close: async () => {
      // An answer that ends while we close (a drained stream's error, say) leaves its
      // keep-alive socket idle, and fastify only closes the sockets that were idle when
      // the close began: without this sweep such a socket held the close for the
      // keep-alive timeout (5 s).
      const sweep = setInterval(() => { app.server.closeIdleConnections() }, 50)
      try {
        await app.close()
      } finally {
        clearInterval(sweep)
      }
    }
  }
  return server
}
