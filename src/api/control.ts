import type { FastifyInstance } from 'fastify'
import type { Daemon } from '../daemon/daemon.js'
import { VERSION } from '../version.js'

/** GET /krill/v1/... : what the daemon knows, for `krill status|peers|…` and scripts. */
export function registerControlRoutes (app: FastifyInstance, daemon: Daemon): void {
  app.get('/krill/v1/status', async () => {
    const libp2p = daemon.libp2p
    return {
      peerId: libp2p.peerId.toString(),
      version: VERSION,
      uptimeMs: Date.now() - daemon.startedAt,
      addrs: daemon.addrs(),
      connections: libp2p.getConnections().length,
      peers: libp2p.getPeers().length
    }
  })
}
