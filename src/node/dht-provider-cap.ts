/**
 * At most MAX_PROVIDERS_PER_ANSWER provider records in each answer krill's DHT gives
 * (and in what a lookup of our own takes from our store).
 *
 * kad-dht answers GET_PROVIDERS with every record it holds for the key, uncapped: in
 * a large swarm the ~20 peers closest to a popular model's key hold a record of each
 * of its thousands of providers, and every lookup of that model carried them all
 * (the discovery simulator's figure for 100k nodes serving one model: ~9 KB/s per
 * node, nearly all of it provider records). A lookup stops once it knows K (20)
 * providers anyway, so an answer names a random K of them: every provider is still
 * named to someone, and an answer stays the size of one from a small swarm. kad-dht
 * has no option for it, so the DHT's own Providers store is wrapped.
 */
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

export const MAX_PROVIDERS_PER_ANSWER = 20

interface ProviderStore {
  getProviders: (cid: CID, options?: unknown) => Promise<PeerId[]>
}

/** a random `max` of `items` (partial Fisher–Yates; `items` is the store's fresh array) */
function sample<T> (items: T[], max: number): T[] {
  for (let i = 0; i < max; i++) {
    const j = i + Math.floor(Math.random() * (items.length - i))
    const t = items[i]
    items[i] = items[j]
    items[j] = t
  }
  return items.slice(0, max)
}

/** `dht`: libp2p.services.dht (a KadDHT); returns false when it has no providers store to wrap */
export function capProviderAnswers (dht: unknown, max = MAX_PROVIDERS_PER_ANSWER): boolean {
  const store = (dht as { providers?: Partial<ProviderStore> }).providers
  if (typeof store?.getProviders !== 'function') return false
  const get = store.getProviders.bind(store)
  store.getProviders = async (cid, options) => {
    const all = await get(cid, options)
    return all.length <= max ? all : sample(all, max)
  }
  return true
}
