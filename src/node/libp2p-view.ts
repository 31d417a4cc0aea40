/**
 * What krill's libp2p services get from libp2p (`components`), described
 * structurally (libp2p's internal interfaces are not a dependency), and a view of
 * them shaped like the parts of the Libp2p interface that krill's classes take,
 * so a class runs the same whether it is handed a node (tests) or runs as a
 * service (the daemon).
 */
import type { AbortOptions, ComponentLogger, Connection, ContentRouting, Libp2pEvents, PeerId, PeerRouting, PeerStore, StreamHandler, StreamHandlerOptions, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface KrillComponents {
  peerId: PeerId
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
  peerStore: PeerStore
  peerRouting: PeerRouting
  contentRouting: ContentRouting
  connectionManager: {
    getConnections: (peerId?: PeerId) => Connection[]
    openConnection: (peer: PeerId | Multiaddr | Multiaddr[], options?: AbortOptions) => Promise<Connection>
  }
  addressManager: { getAddresses: () => Multiaddr[] }
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

/** The subset of Libp2p that krill's network parts use. */
export interface Libp2pView {
  peerId: PeerId
  peerStore: PeerStore
  peerRouting: PeerRouting
  contentRouting: ContentRouting
  getConnections: (peerId?: PeerId) => Connection[]
  getMultiaddrs: () => Multiaddr[]
  dial: (peer: PeerId | Multiaddr | Multiaddr[], options?: AbortOptions) => Promise<Connection>
  handle: KrillComponents['registrar']['handle']
  unhandle: KrillComponents['registrar']['unhandle']
  addEventListener: TypedEventTarget<Libp2pEvents>['addEventListener']
  removeEventListener: TypedEventTarget<Libp2pEvents>['removeEventListener']
}

export function libp2pView (c: KrillComponents): Libp2pView {
  return {
    get peerId () { return c.peerId },
    get peerStore () { return c.peerStore },
    get peerRouting () { return c.peerRouting },
    get contentRouting () { return c.contentRouting },
    getConnections: peer => c.connectionManager.getConnections(peer),
    getMultiaddrs: () => c.addressManager.getAddresses(),
    dial: async (peer, options) => await c.connectionManager.openConnection(peer, options),
    handle: async (protocol, handler, options) => { await c.registrar.handle(protocol, handler, options) },
    unhandle: async protocol => { await c.registrar.unhandle(protocol) },
    addEventListener: c.events.addEventListener.bind(c.events),
    removeEventListener: c.events.removeEventListener.bind(c.events)
  }
}
