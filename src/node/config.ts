import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { ConfigError, FileError } from '../errors.js'
import { isLoopbackHost, isUnspecifiedHost } from '../peers/index.js'
import type { Limits } from '../limits/index.js'
import { modeDefaults, networkMode, type NetworkMode } from '../network/network-mode.js'

import { CONFIG_FILE, DEFAULT_API, DEFAULT_OLLAMA, DEFAULT_TCP_PORT, DEFAULT_WS_PORT, defaultDataDir, parseHostPort } from './defaults.js'

// the light part lives in defaults.ts (the client commands load it without zod)
export { CONFIG_FILE, DEFAULT_API, DEFAULT_OLLAMA, DEFAULT_TCP_PORT, DEFAULT_WS_PORT, defaultDataDir, parseHostPort }

/** Everything a daemon needs to start, after flags, env and krill.json are merged. */
export interface KrillConfig {
  dataDir: string
  listen: string[]
  /** extra addresses advertised as reachable: a server's public address, a forwarded port */
  announce: string[]
  api: { host: string, port: number }
  /** bearer token the API requires when bound to a non-loopback address */
  apiToken?: string
  bootstrap: string[]
  mdns: boolean
  ollama: string
  /** false: never serve, even when Ollama is reachable */
  serve: boolean
  /** models to share; undefined shares all */
  share?: string[]
  /** always act as a circuit-relay server (a dedicated relay / bootstrap node) */
  relay: boolean
  /**
   * act as a circuit-relay server only while this node has a confirmed public
   * address (one a peer dialed back for AutoNAT v2, a UPnP port mapping, or
   * --announce): publicly reachable peers carry the swarm's NATed peers without
   * anyone configuring relays
   */
  autoRelay: boolean
  /** caps that keep relaying affordable and fair (used when relay or autoRelay) */
  relayLimits: RelayLimits
  /** ask the home router to forward our listen ports (UPnP IGD); sends SSDP multicast */
  upnp: boolean
  /**
   * AutoNAT v2: ask peers to dial our public listen addresses back on a fresh
   * connection, and advertise an address only once a peer did; also answer
   * such requests for peers
   */
  autonat: boolean
  /** open direct TCP connections to peers we reach only through a relay (tcp-punch.ts) */
  holePunch: boolean
  /** a pnet swarm key file (--swarm-key); unset: the data dir's own key (src/network/membership.ts) */
  swarmKey?: string
  /** an invite token to join (--join, KRILL_JOIN); remembered in the data dir */
  join?: string
  /** 'private' (a pnet swarm) or 'public' (--public); decides defaults (src/network/network-mode.ts) */
  network: NetworkMode
  /**
   * the public DHT's bootstrap peers the public network meets through
   * (--rendezvous, KRILL_RENDEZVOUS); [] means the standard Amino bootstrap peers
   */
  rendezvous: string[]
  /** concurrent Ollama requests this node runs for the network */
  slots: number
  /** requests waiting for a slot before new ones get BUSY */
  maxQueue: number
  maxConnections: number
  /** inbound connections in their handshake at once; more are refused until one finishes */
  maxPendingConnections: number
  /** new inbound connections one IP address may open per second */
  inboundConnectionsPerSecond: number
  /** chat protocol limits for peers using our engine (src/limits/chat.ts); unset keys keep their defaults */
  limits: Partial<Limits>
  /**
   * 'server' answers DHT queries; 'client' only asks; 'auto' answers while peers
   * can reach this node directly (see src/node/dht-mode.ts)
   */
  dhtMode: DhtMode
  /** lifetime of our model announcements; re-announced well before it ends */
  announceTtlMs: number
  /** how often the Ollama model list is refreshed */
  modelRefreshMs: number
  /** providers known before this node announces per model shard (protocols/README.md); 0: from the start */
  largeSwarmProviders: number
  /** lifetime of our sharded announcements (large swarms; never below announceTtlMs) */
  announceLargeTtlMs: number
  /** consumer-side caps on what peers serve us (README "Budgets") */
  budget: BudgetSettings
  /** receipts and the ledger (README "Receipts and the ledger") */
  ledger: LedgerSettings
  /** how a busy provider orders its queue (README "Fair share") */
  fairShare: FairShareSettings
}

export interface BudgetSettings {
  /** prompt + completion tokens peers may serve this node per UTC day; unset: no cap */
  tokensPerDay?: number
  /** num_predict for requests to peers that set no max_tokens / num_predict */
  defaultMaxTokens?: number
}

export interface LedgerSettings {
  /** entries older than this fold into per-peer totals */
  retentionDays: number
  /** receipts whose times lie further than this from our request are refused */
  skewMs: number
}

export interface FairShareSettings {
  /** waiting this long in a busy provider's queue outweighs one full point of standing */
  agingMs: number
  /** standing (tokens given and taken) loses half its weight after this long */
  halfLifeMs: number
}

export type DhtMode = 'server' | 'client' | 'auto'

/**
 * What a relaying node grants. libp2p's defaults (128 KiB and 2 min per relayed
 * connection) cut a token stream off mid-answer, so a krill relay grants far more
 * per connection and bounds the total instead: reservations, circuits overall and
 * circuits per peer.
 */
export interface RelayLimits {
  /** peers that may hold a reservation (be reachable through us) at once */
  maxReservations: number
  /** relayed connections open through us at once */
  maxCircuits: number
  /** relayed connections one peer may have open through us, as source or destination */
  maxCircuitsPerPeer: number
  /** bytes (both directions) one relayed connection may carry before the relay resets it */
  dataBytes: number
  /** lifetime of one relayed connection before the relay resets it */
  durationMs: number
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxReservations: 128,
  maxCircuits: 256,
  maxCircuitsPerPeer: 8,
  dataBytes: 1024 * 1024 * 1024,
  durationMs: 60 * 60_000
}

const relayLimitsSchema = z.object({
  maxReservations: z.number().int().min(1).max(10_000).optional(),
  maxCircuits: z.number().int().min(1).max(10_000).optional(),
  maxCircuitsPerPeer: z.number().int().min(1).max(1_000).optional(),
  // at least 1 MiB: less cannot carry a single answer
  dataBytes: z.number().int().min(1024 * 1024).max(Number.MAX_SAFE_INTEGER).optional(),
  // libp2p's relay sends the duration as a uint32 and arms a timer with it: keep it in range
  durationMs: z.number().int().min(60_000).max(24 * 3_600_000).optional()
}).strict()

/**
 * Chat protocol limits a provider may change in krill.json. The frame size that
 * consumers also check (maxFrameBytes) is not among them: raising it alone would
 * break every consumer.
 */
const limitsSchema = z.object({
  maxRequestBytes: z.number().int().min(64 * 1024).max(64 * 1024 * 1024).optional(),
  maxMessages: z.number().int().min(1).max(100_000).optional(),
  maxMessageChars: z.number().int().min(1).max(64 * 1024 * 1024).optional(),
  maxImagesPerMessage: z.number().int().min(1).max(1_000).optional(),
  maxTools: z.number().int().min(1).max(10_000).optional(),
  maxStreamsPerPeer: z.number().int().min(1).max(1_000).optional(),
  requestsPerMinute: z.number().int().min(1).max(100_000).optional(),
  requestBurst: z.number().int().min(1).max(10_000).optional(),
  requestTimeoutMs: z.number().int().min(1_000).max(600_000).optional(),
  stallTimeoutMs: z.number().int().min(1_000).max(3_600_000).optional(),
  maxKeepAliveSeconds: z.number().int().min(0).max(7 * 24 * 3600).optional(),
  maxNumCtx: z.number().int().min(512).max(2 ** 31 - 1).optional()
}).strict()

/** The subset a user can set in krill.json (and, for most keys, by flag or env). */
const fileSchema = z.object({
  listen: z.array(z.string()).optional(),
  announce: z.array(z.string()).optional(),
  api: z.string().optional(),
  apiToken: z.string().min(16).optional(),
  bootstrap: z.array(z.string()).optional(),
  mdns: z.boolean().optional(),
  ollama: z.string().optional(),
  serve: z.boolean().optional(),
  share: z.array(z.string().min(1)).optional(),
  relay: z.boolean().optional(),
  autoRelay: z.boolean().optional(),
  relayLimits: relayLimitsSchema.optional(),
  upnp: z.boolean().optional(),
  autonat: z.boolean().optional(),
  holePunch: z.boolean().optional(),
  swarmKey: z.string().optional(),
  public: z.boolean().optional(),
  rendezvous: z.array(z.string()).optional(),
  // a big server (or Ollama with a high OLLAMA_NUM_PARALLEL) may run hundreds of
  // answers at once; the bench runs 500 concurrent streams through one provider
  slots: z.number().int().min(1).max(1024).optional(),
  maxQueue: z.number().int().min(0).max(10_000).optional(),
  maxConnections: z.number().int().min(1).max(10_000).optional(),
  maxPendingConnections: z.number().int().min(1).max(1_000).optional(),
  inboundConnectionsPerSecond: z.number().int().min(1).max(10_000).optional(),
  limits: limitsSchema.optional(),
  dhtMode: z.enum(['server', 'client', 'auto']).optional(),
  announceTtlMs: z.number().int().min(3_000).max(3_600_000).optional(),
  modelRefreshMs: z.number().int().min(100).max(3_600_000).optional(),
  largeSwarmProviders: z.number().int().min(0).max(1_000_000).optional(),
  announceLargeTtlMs: z.number().int().min(3_000).max(3_600_000).optional(),
  budget: z.object({
    tokensPerDay: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    defaultMaxTokens: z.number().int().min(1).max(10_000_000).optional()
  }).strict().optional(),
  ledger: z.object({
    retentionDays: z.number().min(1 / 24).max(3650).optional(),
    skewMs: z.number().int().min(1_000).max(24 * 3_600_000).optional()
  }).strict().optional(),
  fairShare: z.object({
    agingMs: z.number().int().min(100).max(3_600_000).optional(),
    halfLifeMs: z.number().int().min(60_000).max(365 * 24 * 3_600_000).optional()
  }).strict().optional()
}).strict()

export type FileConfig = z.infer<typeof fileSchema>

/** Options as they come from the command line (commander's camelCased names). */
export interface FlagConfig extends Omit<FileConfig, 'api'> {
  dataDir?: string
  api?: string
  /** an invite token (--join / KRILL_JOIN); never read from krill.json */
  join?: string
}

function list (value: string | undefined): string[] | undefined {
  if (value == null || value.trim() === '') return undefined
  return value.split(',').map(s => s.trim()).filter(s => s !== '')
}

/** Reads the env vars DESIGN.md names. */
export function envConfig (env: NodeJS.ProcessEnv = process.env): FlagConfig {
  const out: FlagConfig = {}
  if (env.KRILL_HOME != null && env.KRILL_HOME !== '') out.dataDir = env.KRILL_HOME
  if (list(env.KRILL_LISTEN) != null) out.listen = list(env.KRILL_LISTEN)
  if (list(env.KRILL_ANNOUNCE) != null) out.announce = list(env.KRILL_ANNOUNCE)
  if (env.KRILL_API != null && env.KRILL_API !== '') out.api = env.KRILL_API
  if (env.KRILL_API_TOKEN != null && env.KRILL_API_TOKEN !== '') out.apiToken = env.KRILL_API_TOKEN
  if (list(env.KRILL_BOOTSTRAP) != null) out.bootstrap = list(env.KRILL_BOOTSTRAP)
  if (env.OLLAMA_HOST != null && env.OLLAMA_HOST !== '') out.ollama = env.OLLAMA_HOST
  if (env.KRILL_SWARM_KEY != null && env.KRILL_SWARM_KEY !== '') out.swarmKey = env.KRILL_SWARM_KEY
  if (list(env.KRILL_RENDEZVOUS) != null) out.rendezvous = list(env.KRILL_RENDEZVOUS)
  if (env.KRILL_JOIN != null && env.KRILL_JOIN.trim() !== '') out.join = env.KRILL_JOIN.trim()
  return out
}

export async function readConfigFile (dataDir: string): Promise<FileConfig> {
  const path = join(dataDir, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') return {}
    throw new FileError(`cannot read ${path}: ${err.message}`, { cause: err })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err: any) {
    throw new ConfigError(`${path} is not valid JSON (${err.message}); fix it or remove the file`)
  }
  const parsed = fileSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue.path.length > 0 ? `"${issue.path.join('.')}"` : 'the file'
    throw new ConfigError(`${path}: ${where}: ${issue.message}`)
  }
  return parsed.data
}

export function normalizeOllamaUrl (value: string): string {
  // OLLAMA_HOST is often given without a scheme, as Ollama itself accepts.
  const withScheme = /^https?:\/\//.test(value) ? value : `http://${value}`
  try {
    const url = new URL(withScheme)
    if (url.port === '' && !/^https?:\/\/[^/]+:\d+/.test(withScheme)) url.port = '11434'
    return url.origin
  } catch {
    throw new ConfigError(`--ollama "${value}" is not a URL (for example http://127.0.0.1:11434)`)
  }
}

/**
 * OLLAMA_HOST is also how Ollama clients are pointed at krill: a shell that did
 * so would make the daemon use itself as its Ollama.
 */
function checkNotOwnApi (ollama: string, api: { host: string, port: number }): void {
  const url = new URL(ollama)
  // bound to 0.0.0.0 / :: the API listens on loopback too; dialing 0.0.0.0 reaches this host
  const local = (h: string): boolean => isLoopbackHost(h) || isUnspecifiedHost(h)
  const sameHost = url.hostname === api.host || (local(url.hostname) && local(api.host))
  if (sameHost && Number(url.port) === api.port) {
    throw new ConfigError(`the Ollama URL ${ollama} is krill's own API address (is OLLAMA_HOST set to krill for your clients?); pass --ollama http://127.0.0.1:11434 or unset OLLAMA_HOST for the daemon`)
  }
}

function checkMultiaddrs (values: string[], flag: string): string[] {
  for (const value of values) {
    try {
      multiaddr(value)
    } catch (err: any) {
      throw new ConfigError(`${flag} "${value}" is not a valid multiaddr (${err.message}); example: /ip4/192.0.2.10/tcp/${DEFAULT_TCP_PORT}/p2p/12D3KooW…`)
    }
  }
  return values
}

/**
 * Merges flags over env over krill.json over defaults and validates the result.
 * Throws ConfigError (a UsageError) with a one-line, fixable message.
 */
export async function resolveConfig (flags: FlagConfig, env: NodeJS.ProcessEnv = process.env): Promise<KrillConfig> {
  const fromEnv = envConfig(env)
  const dataDir = flags.dataDir ?? fromEnv.dataDir ?? defaultDataDir(env)
  const file = await readConfigFile(dataDir)
  const pick = <K extends keyof FlagConfig>(key: K): FlagConfig[K] | undefined =>
    flags[key] ?? fromEnv[key] ?? (file as FlagConfig)[key]

  const listen = checkMultiaddrs(pick('listen') ?? [
    `/ip4/0.0.0.0/tcp/${DEFAULT_TCP_PORT}`,
    `/ip4/0.0.0.0/tcp/${DEFAULT_WS_PORT}/ws`,
    // QUIC (one round trip to connect); left out in a private swarm, see create-node.ts
    `/ip4/0.0.0.0/udp/${DEFAULT_TCP_PORT}/quic-v1`
  ], '--listen')
  const announce = checkMultiaddrs(pick('announce') ?? [], '--announce')
  const bootstrap = checkMultiaddrs(pick('bootstrap') ?? [], '--bootstrap')
  for (const addr of bootstrap) {
    if (multiaddr(addr).getComponents().every(c => c.name !== 'p2p')) {
      throw new ConfigError(`--bootstrap "${addr}" has no /p2p/<peer id> part; copy the full address that \`krill id\` prints on that machine`)
    }
  }

  const api = parseHostPort(pick('api') ?? DEFAULT_API)
  const ollama = normalizeOllamaUrl(pick('ollama') ?? DEFAULT_OLLAMA)
  checkNotOwnApi(ollama, api)
  const network = networkMode({ public: pick('public') })
  const defaults = modeDefaults(network)
  const rendezvous = checkMultiaddrs(pick('rendezvous') ?? [], '--rendezvous')
  for (const addr of rendezvous) {
    if (multiaddr(addr).getComponents().every(c => c.name !== 'p2p')) {
      throw new ConfigError(`--rendezvous "${addr}" has no /p2p/<peer id> part; give a public DHT peer's full address`)
    }
  }
  const join = flags.join ?? fromEnv.join
  if (network === 'public' && join != null) {
    throw new ConfigError('--public and --join contradict each other: the public network has no swarm key; pass only one of them')
  }
  if (network === 'public' && pick('swarmKey') != null) {
    throw new ConfigError('--public and --swarm-key contradict each other: the public network has no swarm key; pass only one of them')
  }
  if (network !== 'public' && rendezvous.length > 0) {
    throw new ConfigError('--rendezvous only means something on the public network; add --public (or drop --rendezvous)')
  }

  return {
    dataDir,
    listen,
    announce,
    api,
    apiToken: pick('apiToken'),
    bootstrap,
    mdns: pick('mdns') ?? true,
    ollama,
    serve: pick('serve') ?? defaults.serve,
    share: pick('share'),
    relay: pick('relay') ?? false,
    autoRelay: pick('autoRelay') ?? true,
    relayLimits: { ...DEFAULT_RELAY_LIMITS, ...pick('relayLimits') },
    upnp: pick('upnp') ?? defaults.upnp,
    autonat: pick('autonat') ?? true,
    holePunch: pick('holePunch') ?? true,
    swarmKey: pick('swarmKey'),
    join,
    network,
    rendezvous,
    slots: pick('slots') ?? 4,
    maxQueue: pick('maxQueue') ?? 64,
    maxConnections: pick('maxConnections') ?? 200,
    maxPendingConnections: pick('maxPendingConnections') ?? 16,
    inboundConnectionsPerSecond: pick('inboundConnectionsPerSecond') ?? 10,
    limits: pick('limits') ?? {},
    dhtMode: pick('dhtMode') ?? 'auto',
    announceTtlMs: pick('announceTtlMs') ?? 60_000,
    modelRefreshMs: pick('modelRefreshMs') ?? 10_000,
    largeSwarmProviders: pick('largeSwarmProviders') ?? 64,
    announceLargeTtlMs: pick('announceLargeTtlMs') ?? 3_600_000,
    budget: { ...pick('budget') },
    ledger: { retentionDays: 30, skewMs: 5 * 60_000, ...pick('ledger') },
    fairShare: { agingMs: 5_000, halfLifeMs: 6 * 3_600_000, ...pick('fairShare') }
  }
}
