/**
 * Binds the Router to a running daemon: its provider table and DHT lookups, its
 * local engine and shared models, the chat protocol client for remote peers, and
 * the node's round-trip times (src/peers/rtt.ts) for ranking. The consume side of the peer policy applies
 * here: providers it excludes are invisible to the router (never asked, never sent a
 * prompt), whether they come from announcements or from the DHT.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Daemon } from '../daemon/daemon.js'
import type { ProviderDirectory, ProviderEntry } from '../discovery/types.js'
import { requestChat } from '../protocol/chat-client.js'
import { Router, type RouterOptions } from './router.js'

export function createDaemonRouter (daemon: Daemon, opts: RouterOptions = {}): Router {
  const libp2p = daemon.libp2p
  const allowed = (e: ProviderEntry): boolean => daemon.policy.mayConsume(e.peerId)
  const providers: ProviderDirectory = {
    providersFor: (model, digest) => daemon.providers.providersFor(model, digest).filter(allowed),
    catalog: () => daemon.providers.catalog(),
    all: () => daemon.providers.all().filter(allowed)
  }
  return new Router({
    selfId: libp2p.peerId.toString(),
    local: () => {
      const engine = daemon.engine
      const models = daemon.localModels()
      return engine != null && models.length > 0 ? { engine, models } : undefined
    },
    providers,
    findProviders: async (model, signal) => (await daemon.findProviders(model, { signal })).filter(allowed),
    remoteChat: (peerId, request, signal) => requestChat(libp2p, peerIdFromString(peerId), request, { signal }),
    latencyMs: peer => daemon.rtt.get(peer),
    onServed: info => {
      daemon.emitEvent({ event: 'request:routed', model: info.model, peerId: info.peerId, tokens: info.tokens, durationMs: info.durationMs, outcome: info.outcome })
    }
  }, { localSlots: daemon.config.slots, ...opts })
}
