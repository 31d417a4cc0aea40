/**
 * krill's DHT (/krill/kad/1.0.0, @libp2p/kad-dht 16) at 1k / 10k / 100k nodes, for
 * the discovery simulator (discovery-sim.ts): how many peers one lookup asks, and
 * the bytes of its messages, from an emulation of kad-dht's own algorithm and
 * messages encoded with kad-dht's own codec.
 *
 * - routing table (routing-table/k-bucket.js): a trie over the first
 *   PREFIX_LENGTH (6) bits of the kad id, 64 buckets of K (20) peers at most, so a
 *   node knows at most 1280 peers, 20 of each 1/64 of the key space (here: 20
 *   picked at random among the peers of that region).
 * - a lookup (query/manager.js, query-path.js): the K closest peers of our own
 *   table, one per disjoint path (K paths), ALPHA (10) queries at once per path,
 *   peers never asked twice across paths; a path asks a peer only while it could
 *   still enter that path's K closest that answered, and follows only peers closer
 *   than the one that named them. Concurrency is emulated in rounds (each path asks
 *   its ALPHA best candidates at once, then reads their answers).
 * - an answer (rpc/handlers/find-node.js, get-providers.js): the K closest peers
 *   of the answering node's table (neither the asker nor itself), each with all its
 *   addresses (krill's passthroughMapper), plus, for GET_PROVIDERS, every provider
 *   record it holds for the key (uncapped); a provider lookup ends once K
 *   providers were found (content-routing/index.js), after the round that found them.
 *
 * Ids are 64-bit (enough to order 100k random ids by XOR distance).
 */
import { multiaddr } from '@multiformats/multiaddr'

export const K = 20
export const ALPHA = 10
export const PREFIX_BITS = 6
/**
 * kad-dht's maintenance, per node. A self-query every 5 min (query-self.js), which
 * stops after its first K query *events* (take(source, count)): every starting
 * peer first yields a dial and a send event, so it reads max(0, K − 2 × starting
 * peers) answers — 2 in a 10-node swarm, none beyond 11 nodes (measured: a 10-node
 * swarm's whole DHT received 10.6 KB at its 5-min mark, ~2.3 answers per node).
 * A routing-table refresh every 5 min (routing-table/refresh.js, one lookup per
 * common prefix length up to the table's largest, ≤ 15) is written but never runs
 * in kad-dht 16.4.5: RoutingTableRefresh has afterStart() and stop() but no start(),
 * so @libp2p/interface's start() helper, which only starts objects with both, skips
 * it. The simulator can count it (`dhtTableRefresh`) for when a kad-dht release fixes that.
 */
export const TABLE_REFRESH_S = 300
export const QUERY_SELF_S = 300
export const MAX_REFRESH_CPL = 15

/** the bytes of one self-query (its request to each starting peer, and the answers read before it stops) */
export function selfQueryBytes (nodes: number, sizes: DhtSizes): number {
  const starting = Math.max(0, Math.min(K, nodes - 1))
  return starting * sizes.findNodeRequest + Math.max(0, K - 2 * starting) * sizes.closerAnswer
}

interface KadMessageCodec { encode: (msg: Record<string, unknown>) => Uint8Array }
// kad-dht's protobuf codec: the package exports it only through its own modules
const kadIndex = import.meta.resolve('@libp2p/kad-dht')
const { Message, MessageType } = await import(new URL('./message/dht.js', kadIndex).href) as { Message: KadMessageCodec, MessageType: Record<string, string> }

/**
 * The addresses a public krill node advertises: TCP and QUIC on IPv4 and IPv6 and
 * one relay circuit (the internet's mix is unknown; stated in docs/benchmarks.md).
 */
const RELAY_ID = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
export const TYPICAL_ADDRS = [
  '/ip4/203.0.113.7/tcp/4001',
  '/ip4/203.0.113.7/udp/4001/quic-v1',
  '/ip6/2001:db8:4:2::7/tcp/4001',
  `/ip4/198.51.100.9/tcp/4001/p2p/${RELAY_ID}/p2p-circuit`
].map(a => multiaddr(a).bytes)

/** what a node of the bench's loopback swarms advertises: one TCP address */
export const LOOPBACK_ADDRS = [multiaddr('/ip4/127.0.0.1/tcp/40000').bytes]

/** a peer as kad-dht encodes it: its id (an Ed25519 identity multihash, 38 bytes) and addresses */
function peerInfo (addrs: Uint8Array[]): { id: Uint8Array, multiaddrs: Uint8Array[] } {
  return { id: new Uint8Array(38).fill(7), multiaddrs: addrs }
}

/** bytes on the stream: the message and its varint length prefix */
function framed (msg: Record<string, unknown>): number {
  const n = Message.encode({ closer: [], providers: [], ...msg }).byteLength
  return n + (n < 128 ? 1 : n < 16_384 ? 2 : 3)
}

export interface DhtSizes {
  /** FIND_NODE request for a peer-id key (38 B) / GET_PROVIDERS request for a CID key (36 B) */
  findNodeRequest: number
  getProvidersRequest: number
  /** the answer with K closer peers */
  closerAnswer: number
  /** what one more provider adds to a GET_PROVIDERS answer */
  perProvider: number
  /** ADD_PROVIDER (one-way): the key and ourselves as provider */
  addProvider: number
}

/** `closerPeers`: how many peers an answer names (K, or fewer in a network smaller than K + 2) */
export function dhtSizes (addrs: Uint8Array[] = TYPICAL_ADDRS, closerPeers = K): DhtSizes {
  const peerKey = new Uint8Array(38)
  const cidKey = new Uint8Array(36)
  const closer = Array.from({ length: closerPeers }, () => peerInfo(addrs))
  const base = framed({ type: MessageType.GET_PROVIDERS, key: cidKey, closer })
  return {
    findNodeRequest: framed({ type: MessageType.FIND_NODE, key: peerKey }),
    getProvidersRequest: framed({ type: MessageType.GET_PROVIDERS, key: cidKey }),
    closerAnswer: framed({ type: MessageType.FIND_NODE, key: peerKey, closer }),
    perProvider: (framed({ type: MessageType.GET_PROVIDERS, key: cidKey, closer, providers: Array.from({ length: 100 }, () => peerInfo(addrs)) }) - base) / 100,
    addProvider: framed({ type: MessageType.ADD_PROVIDER, key: cidKey, providers: [peerInfo(addrs)] })
  }
}

/** a small deterministic PRNG (mulberry32), so the figures do not move between runs */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

const MASK = (1n << 64n) - 1n

export class DhtNetwork {
  readonly ids: bigint[]
  private readonly regionStart: number[]
  private readonly tables = new Map<number, Map<number, number[]>>()
  private readonly seed: number

  constructor (readonly size: number, seed = 1) {
    this.seed = seed
    const rnd = prng(seed)
    const ids: bigint[] = []
    for (let i = 0; i < size; i++) ids.push(((BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32))) & MASK)
    ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    this.ids = ids
    this.regionStart = []
    let j = 0
    for (let r = 0; r <= 1 << PREFIX_BITS; r++) {
      while (j < size && Number(ids[j] >> BigInt(64 - PREFIX_BITS)) < r) j++
      this.regionStart.push(j)
    }
  }

  /** the peers node `i` knows in region `r`: at most K of them, chosen at random once */
  private known (i: number, r: number): number[] {
    let table = this.tables.get(i)
    if (table == null) {
      table = new Map()
      if (this.tables.size > 50_000) this.tables.clear()
      this.tables.set(i, table)
    }
    let peers = table.get(r)
    if (peers == null) {
      const lo = this.regionStart[r]
      const hi = this.regionStart[r + 1]
      if (hi - lo <= K + 1) peers = Array.from({ length: hi - lo }, (_, k) => lo + k).filter(k => k !== i)
      else {
        const rnd = prng(this.seed * 7919 + i * 131 + r)
        const picked = new Set<number>()
        while (picked.size < K) {
          const k = lo + Math.floor(rnd() * (hi - lo))
          if (k !== i) picked.add(k)
        }
        peers = [...picked]
      }
      table.set(r, peers)
    }
    return peers
  }

  /** the K closest peers to `key` in node `i`'s table, closest first, leaving out `exclude` */
  closest (i: number, key: bigint, exclude: number[] = []): number[] {
    const home = Number(key >> BigInt(64 - PREFIX_BITS))
    const out: number[] = []
    // regions in XOR order from the key's own: every peer of region home ^ d is closer than any of home ^ (d + 1)
    for (let d = 0; d < 1 << PREFIX_BITS && out.length < K; d++) {
      const found = this.known(i, home ^ d).filter(p => !exclude.includes(p))
      found.sort((a, b) => cmp(this.ids[a] ^ key, this.ids[b] ^ key))
      out.push(...found)
    }
    return out.slice(0, K)
  }

  /** the K peers truly closest to `key`: where provider records end up */
  trueClosest (key: bigint): number[] {
    let lo = 0
    let hi = this.size
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.ids[mid] < key) lo = mid + 1
      else hi = mid
    }
    const around = this.ids.slice(Math.max(0, lo - 4 * K), lo + 4 * K).map((_, k) => Math.max(0, lo - 4 * K) + k)
    return around.sort((a, b) => cmp(this.ids[a] ^ key, this.ids[b] ^ key)).slice(0, K)
  }

  /**
   * One lookup from node `from` for `key`: the peers asked, and (with `holders`,
   * a provider lookup) how many provider records the answers carried before it stopped.
   */
  lookup (from: number, key: bigint, holders?: { peers: Set<number>, providers: number }, shape: LookupShape = {}): { asked: number, providersCarried: number } {
    const alpha = shape.alpha ?? ALPHA
    const dist = (p: number): bigint => this.ids[p] ^ key
    const seen = new Set<number>([from])
    const start = this.closest(from, key)
    const rnd = prng(Number(key & 0xffffn) + from)
    start.sort(() => (rnd() > 0.5 ? 1 : -1))
    // the starting peers dealt round-robin over the disjoint paths (K by default)
    const pathCount = Math.min(shape.disjointPaths ?? K, start.length)
    const paths = Array.from({ length: pathCount }, (_, i) => ({ queue: start.filter((_p, j) => j % pathCount === i), closest: [] as number[] }))
    for (const p of start) seen.add(p)
    let asked = 0
    let providersCarried = 0
    let providersFound = 0
    const canAdd = (list: number[], p: number): boolean => list.length < K || cmp(dist(p), dist(list[list.length - 1])) < 0
    while (paths.some(pa => pa.queue.length > 0)) {
      for (const path of paths) {
        path.queue.sort((a, b) => cmp(dist(a), dist(b)))
        const batch = path.queue.splice(0, alpha).filter(p => canAdd(path.closest, p))
        for (const p of batch) {
          asked++
          if (holders?.peers.has(p) === true) {
            // an answer names every record it holds, or a sample of at most the cap (krill's DHT: dht-provider-cap.ts)
            const named = Math.min(holders.providers, shape.maxProvidersPerAnswer ?? Infinity)
            providersCarried += named
            providersFound += named
          }
          const answer = this.closest(p, key, [from, p])
          path.closest.push(p)
          path.closest.sort((a, b) => cmp(dist(a), dist(b)))
          if (path.closest.length > K) path.closest.length = K
          for (const c of answer) {
            if (seen.has(c)) continue
            if (cmp(dist(c), dist(p)) >= 0) continue
            if (!canAdd(path.closest, c)) continue
            seen.add(c)
            path.queue.push(c)
          }
        }
      }
      // a provider lookup stops once K providers are known (after the answers in flight)
      if (holders != null && providersFound >= K) break
    }
    return { asked, providersCarried }
  }
}

/** kad-dht's query shape (KadDHTInit alpha, disjointPaths); defaults ALPHA and K */
export interface LookupShape {
  alpha?: number
  disjointPaths?: number
  /** provider records one answer names at most (kad-dht: all it holds; krill caps at 20) */
  maxProvidersPerAnswer?: number
}

function cmp (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

export interface LookupStats {
  /** peers asked by one lookup, on average */
  asked: number
  /** provider lookups of a key with `providers` providers: peers asked, and provider records carried */
  providerLookup: (providers: number) => { asked: number, providersCarried: number }
  /** common prefix lengths a table refresh walks (its largest CPL + 1, ≤ 16) */
  refreshLookups: number
}

const cache = new Map<string, LookupStats>()

/** lookups in a network of `nodes` DHT servers, averaged over `samples` random keys */
export function lookupStats (nodes: number, shape: LookupShape = {}, samples = 24): LookupStats {
  const cacheKey = `${nodes}/${shape.alpha ?? ALPHA}/${shape.disjointPaths ?? K}/${shape.maxProvidersPerAnswer ?? 'all'}`
  const hit = cache.get(cacheKey)
  if (hit != null) return hit
  const net = new DhtNetwork(nodes)
  const rnd = prng(nodes)
  const randomKey = (): bigint => ((BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32))) & MASK
  let asked = 0
  let maxCpl = 0
  for (let s = 0; s < samples; s++) {
    const from = Math.floor(rnd() * nodes)
    asked += net.lookup(from, randomKey(), undefined, shape).asked
    // the largest common prefix of `from` with a peer in its table: its own region's closest
    const own = net.ids[from]
    const [nearest] = net.closest(from, own, [from])
    maxCpl += nearest == null ? 0 : 64 - (own ^ net.ids[nearest]).toString(2).length
  }
  const providerCache = new Map<number, { asked: number, providersCarried: number }>()
  const stats: LookupStats = {
    asked: asked / samples,
    refreshLookups: Math.min(MAX_REFRESH_CPL, Math.round(maxCpl / samples)) + 1,
    providerLookup: (providers) => {
      // records are held by the key's K closest peers, each holding every provider's record
      const bucket = providers < 1 ? 0 : Math.round(Math.log2(providers) * 4) / 4
      const hitP = providerCache.get(bucket)
      if (hitP != null) return hitP
      let a = 0
      let carried = 0
      for (let s = 0; s < samples; s++) {
        const key = randomKey()
        const r = net.lookup(Math.floor(rnd() * nodes), key, providers >= 1 ? { peers: new Set(net.trueClosest(key)), providers: Math.round(providers) } : undefined, shape)
        a += r.asked
        carried += r.providersCarried
      }
      const out = { asked: a / samples, providersCarried: carried / samples }
      providerCache.set(bucket, out)
      return out
    }
  }
  cache.set(cacheKey, stats)
  return stats
}
