import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { z } from 'zod'
import type { Capacity, CatalogEntry, ProviderDirectory, ProviderEntry } from '../discovery/types.js'
import type { ModelInfo } from '../engine/types.js'
import { modelId, modelNameProblem } from '../models/index.js'
import { relayOf } from '../peers/index.js'
import type { DhtMode } from '../node/config.js'
import type { NatStatus } from '../node/nat.js'
import { VERSION } from '../version.js'

/** Round-trip times as the control routes use them (src/peers/rtt.ts RoundTripTimes fits). */
export interface ControlRtt {
  /** best known RTT of a peer, pinging it when connected and nothing is fresh; null when unknown */
  current: (peerId: string, timeoutMs: number) => Promise<number | null>
  /** an explicit ping */
  measure: (peer: PeerId, timeoutMs: number) => Promise<number>
}

/**
 * What the control routes need, declared here and bound by the composition root
 * (src/daemon/): libp2p for connections, peers and dials, the catalog, and a few
 * read-outs of the other parts.
 */
export interface ControlPort {
  libp2p: Pick<Libp2p, 'peerId' | 'getConnections' | 'getPeers' | 'peerStore' | 'dial'>
  rtt: ControlRtt
  startedAt: number
  /** addresses other peers can dial, each ending in /p2p/<peer id> */
  addrs: () => string[]
  ollama: {
    url: string
    serving: boolean
    /** whether Ollama answers; undefined when this node does not serve */
    healthy?: (signal: AbortSignal) => Promise<boolean>
  }
  /** the models this node shares right now */
  localModels: () => ModelInfo[]
  /** who serves which model (never this node) */
  providers: ProviderDirectory
  /** providers of `model`: announced ones, else a DHT lookup */
  findProviders: (model: string, opts: { timeoutMs: number }) => Promise<ProviderEntry[]>
  /** this node's load as a provider (0 slots when it does not serve) */
  serveLoad: () => Capacity
  /** chats this node's API is handling now */
  routing: () => number
  nat: () => NatStatus
  dht: () => { mode: 'server' | 'client', configured: DhtMode }
  /** tokens served to peers and consumed from them, from the ledger; undefined without receipts */
  tokens?: () => StatusAnswer['tokens']
  /** POST /krill/v1/shutdown: stop the daemon as SIGTERM does (after the answer is sent) */
  requestStop: () => void
  /** which network: a private swarm (its own, joined by invite, or a key file) or the public one */
  network: () => NetworkStatus
}

export interface NetworkStatus {
  mode: 'private' | 'public'
  /** 'own': this node's own swarm; 'joined': by invite; 'file': --swarm-key; 'public': no swarm key */
  swarm: 'own' | 'joined' | 'file' | 'public'
}

/** `krill peers` pings peers without a fresh RTT; a slow peer must not stall the list. */
const LIST_PING_TIMEOUT_MS = 1_500
/** `krill ping` waits a little longer: the user asked for exactly this peer. */
const PING_TIMEOUT_MS = 5_000
const DIAL_TIMEOUT_MS = 15_000
/** `krill status` asks Ollama whether it answers; a hung Ollama must not hang status */
const OLLAMA_PROBE_MS = 1_500

export interface PeerView {
  id: string
  /** remote address of the connection shown (the direct one when there are several) */
  addr: string
  type: 'direct' | 'relayed'
  /** the relay's peer id when type is 'relayed' */
  relay?: string
  direction: 'inbound' | 'outbound'
  /** open connections to this peer */
  connections: number
  /** ping round-trip time; null when the peer did not answer in time */
  latencyMs: number | null
  /** what the peer told identify, e.g. "krill/0.1.0" */
  agent: string | null
  protocols: string[]
  /** models the peer announced */
  models: Array<{ name: string, digest: string }>
}

export interface StatusAnswer {
  peerId: string
  version: string
  uptimeMs: number
  addrs: string[]
  /** open libp2p connections */
  connections: number
  /** distinct connected peers */
  peers: number
  ollama: {
    url: string
    /** false with --no-serve: this node only consumes and relays */
    serving: boolean
    /** null when not serving (nothing asks Ollama then) */
    reachable: boolean | null
  }
  /** the models this node shares right now */
  models: Array<{ name: string, digest: string }>
  requests: {
    /** chats this node runs for peers at once (its chat slots) */
    slots: number
    /** of those, running now */
    active: number
    /** waiting for a slot */
    queued: number
    /** chats this node's own API is handling for its clients (local or on peers) */
    routing: number
  }
  /** reachability: confirmed public addresses, relays that forward to us, relaying for others */
  nat: NatStatus
  /** whether this node answers DHT queries now, and the configured mode */
  dht: { mode: 'server' | 'client', configured: DhtMode }
  /** tokens this node served peers and peers served it (krill balance has them per peer) */
  tokens: {
    served: { prompt: number, completion: number, total: number }
    consumed: { prompt: number, completion: number, total: number }
  }
  network: NetworkStatus
}

export interface ModelsAnswer {
  /** the network's catalog plus the models only this node serves */
  models: Array<CatalogEntry & {
    /** this node serves the model too (not counted in `providers`, which counts peers) */
    servedHere: boolean
    /** lowest RTT among the peers serving it; null when none is measured */
    bestLatencyMs: number | null
  }>
  /** the models this node shares */
  local: ModelInfo[]
}

export interface ProvidersAnswer {
  model: string
  /** peers serving the model (never this node) */
  providers: Array<ProviderEntry & { latencyMs: number | null }>
  /** this node's copy when it serves the model */
  local: { peerId: string, model: ModelInfo, capacity?: Capacity } | null
}

function sendError (reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { message, code } })
}

/** libp2p errors often wrap the real reason (AggregateError of per-address failures). */
function reasonOf (err: any): string {
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return 'timed out'
  const inner: unknown[] = Array.isArray(err?.errors) ? err.errors : []
  const details = inner.map(e => (e as Error)?.message).filter(m => m != null && m !== '')
  const message = String(err?.message ?? err)
  return details.length > 0 ? `${message} (${[...new Set(details)].join('; ')})` : message
}

/** A direct, open connection beats a relayed one (after DCUtR both may exist). */
function bestConnection (conns: Connection[]): Connection {
  const score = (c: Connection): number => (c.status === 'open' ? 0 : 2) + (relayOf(c.remoteAddr).relayed ? 1 : 0)
  return [...conns].sort((a, b) => score(a) - score(b))[0]
}

async function describePeer (port: ControlPort, peer: PeerId, conns: Connection[]): Promise<PeerView> {
  const conn = bestConnection(conns)
  const { relayed, relay } = relayOf(conn.remoteAddr)
  let agent: string | null = null
  let protocols: string[] = []
  try {
    const stored = await port.libp2p.peerStore.get(peer)
    const raw = stored.metadata.get('AgentVersion')
    agent = raw != null ? new TextDecoder().decode(raw) : null
    protocols = [...stored.protocols].sort()
  } catch { /* identify has not finished yet: nothing known */ }
  const view = { id: peer.toString() }
  return {
    id: view.id,
    addr: conn.remoteAddr.toString(),
    type: relayed ? 'relayed' : 'direct',
    ...(relay != null ? { relay } : {}),
    direction: conn.direction,
    connections: conns.length,
    latencyMs: await port.rtt.current(peer.toString(), LIST_PING_TIMEOUT_MS),
    agent,
    protocols,
    models: port.providers.all()
      .filter(e => e.peerId === view.id)
      .map(e => ({ name: e.model.name, digest: e.model.digest }))
      .sort((a, b) => a.name.localeCompare(b.name))
  }
}

/** Connected peers, each once, sorted by id so that `--watch` redraws stay stable. */
async function listPeers (port: ControlPort): Promise<PeerView[]> {
  const byPeer = new Map<string, { peer: PeerId, conns: Connection[] }>()
  for (const conn of port.libp2p.getConnections()) {
    const key = conn.remotePeer.toString()
    const entry = byPeer.get(key) ?? { peer: conn.remotePeer, conns: [] }
    entry.conns.push(conn)
    byPeer.set(key, entry)
  }
  const views = await Promise.all([...byPeer.values()].map(async ({ peer, conns }) => await describePeer(port, peer, conns)))
  return views.sort((a, b) => a.id.localeCompare(b.id))
}

const connectBody = z.object({ multiaddr: z.string().min(1).max(1024), force: z.boolean().optional() })

/** /krill/v1/... : what the daemon knows, for `krill status|peers|…` and scripts. */
export function registerControlRoutes (app: FastifyInstance, port: ControlPort): void {

  app.get('/krill/v1/status', async (): Promise<StatusAnswer> => {
    const libp2p = port.libp2p
    return {
      peerId: libp2p.peerId.toString(),
      version: VERSION,
      uptimeMs: Date.now() - port.startedAt,
      addrs: port.addrs(),
      connections: libp2p.getConnections().length,
      peers: libp2p.getPeers().length,
      ollama: {
        url: port.ollama.url,
        serving: port.ollama.serving,
        reachable: port.ollama.healthy != null ? await port.ollama.healthy(AbortSignal.timeout(OLLAMA_PROBE_MS)) : null
      },
      models: port.localModels().map(m => ({ name: m.name, digest: m.digest })),
      requests: { ...port.serveLoad(), routing: port.routing() },
      nat: port.nat(),
      dht: port.dht(),
      tokens: port.tokens?.() ?? { served: { prompt: 0, completion: 0, total: 0 }, consumed: { prompt: 0, completion: 0, total: 0 } },
      network: port.network()
    }
  })

  // the network's catalog (from announcements and earlier DHT lookups) and our own models
  app.get('/krill/v1/models', async (): Promise<ModelsAnswer> => {
    const local = port.localModels()
    const localKeys = new Set(local.map(m => modelId(m.name)))
    const catalog: CatalogEntry[] = port.providers.catalog()
    const known = new Set(catalog.map(e => modelId(e.name)))
    // models only this node has belong in the catalog its user sees, too
    for (const m of local) {
      if (!known.has(modelId(m.name))) catalog.push({ name: m.name, digests: [m.digest], providers: 0, model: m })
    }
    const models = await Promise.all(catalog.map(async entry => {
      const rtts = await Promise.all(port.providers.providersFor(entry.name).map(async p => await port.rtt.current(p.peerId, LIST_PING_TIMEOUT_MS)))
      const measured = rtts.filter((ms): ms is number => ms != null)
      return {
        ...entry,
        servedHere: localKeys.has(modelId(entry.name)),
        bestLatencyMs: measured.length > 0 ? Math.min(...measured) : null
      }
    }))
    models.sort((a, b) => a.name.localeCompare(b.name))
    return { models, local }
  })

  // a wildcard: model names may contain "/" (e.g. hf.co/org/model:tag)
  app.get<{ Params: { '*': string } }>('/krill/v1/providers/*', async (request, reply) => {
    const model = request.params['*']
    const problem = modelNameProblem(model)
    if (problem != null) {
      return await reply.code(400).send({ error: { message: problem, code: 'bad_model_name' } })
    }
    // announced providers at once; otherwise a DHT lookup, bounded so the CLI stays snappy
    const found = await port.findProviders(model, { timeoutMs: 5_000 })
    const providers = await Promise.all(found.map(async p => ({ ...p, latencyMs: await port.rtt.current(p.peerId, LIST_PING_TIMEOUT_MS) })))
    const here = port.localModels().find(m => modelId(m.name) === modelId(model))
    const answer: ProvidersAnswer = {
      model,
      providers,
      local: here != null ? { peerId: port.libp2p.peerId.toString(), model: here, capacity: port.serveLoad() } : null
    }
    return answer
  })

  app.get('/krill/v1/peers', async () => {
    return { peers: await listPeers(port) }
  })

  app.post<{ Params: { peer: string } }>('/krill/v1/ping/:peer', async (request, reply) => {
    let peer: PeerId
    try {
      peer = peerIdFromString(request.params.peer)
    } catch {
      return sendError(reply, 400, 'bad_peer_id', `"${request.params.peer}" is not a peer id (they look like 12D3KooW…; see \`krill peers\`)`)
    }
    if (peer.equals(port.libp2p.peerId)) {
      return sendError(reply, 400, 'self', `${peer.toString()} is this node`)
    }
    const connected = port.libp2p.getConnections(peer).length > 0
    if (!connected && !await hasAddresses(port, peer)) {
      return sendError(reply, 404, 'unknown_peer', `unknown peer ${peer.toString()}: not connected and no known address — see \`krill peers\`, or dial it with \`krill connect <multiaddr>\``)
    }
    try {
      const rttMs = await port.rtt.measure(peer, PING_TIMEOUT_MS)
      return { peerId: peer.toString(), rttMs }
    } catch (err) {
      return sendError(reply, 502, 'unreachable', `peer ${peer.toString()} did not answer the ping: ${reasonOf(err)}`)
    }
  })

  app.post('/krill/v1/connect', async (request, reply) => {
    const body = connectBody.safeParse(request.body)
    if (!body.success) {
      return sendError(reply, 400, 'bad_request', 'send {"multiaddr": "/ip4/…/tcp/…/p2p/12D3KooW…"}')
    }
    let addr: Multiaddr
    try {
      addr = multiaddr(body.data.multiaddr)
    } catch (err: any) {
      return sendError(reply, 400, 'bad_multiaddr', `"${body.data.multiaddr}" is not a valid multiaddr (${err.message})`)
    }
    const target = addr.getComponents().findLast(c => c.name === 'p2p')?.value
    if (target != null && target === port.libp2p.peerId.toString()) {
      return sendError(reply, 400, 'self', `${body.data.multiaddr} is this node`)
    }
    // libp2p hands back an open connection to the same peer without dialing the
    // address: say so rather than "connected" for an address nobody tried
    const existing = target != null && body.data.force !== true ? connectionsTo(port, target) : []
    if (existing.length > 0) return connectAnswer(bestConnection(existing), false, 0)
    let conn: Connection
    const started = Date.now()
    try {
      conn = await port.libp2p.dial(addr, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS), force: body.data.force === true })
    } catch (err) {
      return sendError(reply, 502, 'dial_failed', `dialing ${body.data.multiaddr} failed: ${reasonOf(err)}`)
    }
    return connectAnswer(conn, true, Date.now() - started)
  })

  // `krill stop`: answered first, then the daemon stops as on SIGTERM
  app.post('/krill/v1/shutdown', async (_request, reply) => {
    reply.raw.once('finish', () => { port.requestStop() })
    return await reply.code(202).send({ stopping: true, peerId: port.libp2p.peerId.toString() })
  })
}

function connectionsTo (port: ControlPort, peer: string): Connection[] {
  try {
    return port.libp2p.getConnections(peerIdFromString(peer))
  } catch {
    return []
  }
}

function connectAnswer (conn: Connection, dialed: boolean, dialMs: number): Record<string, unknown> {
  const { relayed, relay } = relayOf(conn.remoteAddr)
  return {
    peerId: conn.remotePeer.toString(),
    addr: conn.remoteAddr.toString(),
    type: relayed ? 'relayed' : 'direct',
    ...(relay != null ? { relay } : {}),
    dialed,
    dialMs
  }
}

async function hasAddresses (port: ControlPort, peer: PeerId): Promise<boolean> {
  try {
    return (await port.libp2p.peerStore.get(peer)).addresses.length > 0
  } catch {
    return false
  }
}
