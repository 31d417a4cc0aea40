import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import type { Registry } from 'prom-client'
import { UsageError } from '../errors.js'
import { createApiServer, type ApiServer } from '../api/server.js'
import { createMetricsRegistry, libp2pMetrics } from '../api/metrics.js'
import type { KrillConfig } from '../node/config.js'
import { createKrillNode, type KrillNode, type KrillLibp2p } from '../node/create-node.js'
import { loadOrCreateIdentity } from '../node/identity.js'
import { PeerDialer } from '../node/peer-dialer.js'
import { logger } from '../log.js'
import type { DaemonEvent, EventSink } from './events.js'

const log = logger('daemon')

export interface DaemonOptions {
  onEvent?: EventSink
  /** start-up progress for people, one short line per step */
  onProgress?: (step: string) => void
}

/** A running krill node: libp2p, the local engine, discovery, the chat protocol and the HTTP API. */
export class Daemon {
  readonly config: KrillConfig
  readonly startedAt = Date.now()
  /** this daemon's Prometheus registry: libp2p's metrics and krill's own (GET /metrics) */
  readonly metrics: Registry
  private readonly node: KrillNode
  private readonly dialer: PeerDialer
  private readonly emit: EventSink
  private api?: ApiServer
  private stopping?: Promise<void>

  private constructor (config: KrillConfig, node: KrillNode, emit: EventSink, metrics: Registry) {
    this.config = config
    this.metrics = metrics
    this.node = node
    this.emit = emit
    this.dialer = new PeerDialer(node.libp2p, { targetConnections: Math.min(64, config.maxConnections) })
  }

  get libp2p (): KrillLibp2p {
    return this.node.libp2p
  }

  get peerId (): PeerId {
    return this.node.libp2p.peerId
  }

  get apiUrl (): string {
    return this.api?.url ?? ''
  }

  /** addresses other peers can dial, each ending in /p2p/<peer id> */
  addrs (): string[] {
    return this.node.libp2p.getMultiaddrs().map(a => a.toString())
  }

  static async start (config: KrillConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    const progress = opts.onProgress ?? ((step: string) => log.info(step))
    const emit = opts.onEvent ?? (() => {})

    const { privateKey, created } = await loadOrCreateIdentity(config.dataDir)
    progress(`${created ? 'created' : 'loaded'} identity in ${config.dataDir}`)

    const metrics = createMetricsRegistry()
    const node = await createKrillNode({
      privateKey,
      metrics: libp2pMetrics(metrics),
      listen: config.listen,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      dhtMode: config.dhtMode,
      maxConnections: config.maxConnections,
      swarmKey: config.swarmKey,
      datastorePath: join(config.dataDir, 'datastore')
    })
    const daemon = new Daemon(config, node, emit, metrics)
    try {
      await daemon.startNode(progress)
      daemon.api = await createApiServer(daemon)
      await daemon.api.listen(config.api)
    } catch (err) {
      await daemon.stop()
      throw err
    }
    progress(`API on ${daemon.apiUrl}`)
    emit({ event: 'ready', peerId: daemon.peerId.toString(), addrs: daemon.addrs(), api: daemon.apiUrl })
    return daemon
  }

  private async startNode (progress: (step: string) => void): Promise<void> {
    const libp2p = this.node.libp2p
    libp2p.addEventListener('peer:connect', (evt) => {
      this.emit({ event: 'peer:joined', peerId: evt.detail.toString() })
    })
    libp2p.addEventListener('peer:disconnect', (evt) => {
      this.emit({ event: 'peer:left', peerId: evt.detail.toString() })
    })
    try {
      await libp2p.start()
    } catch (err: any) {
      throw explainListenError(err, this.config.listen)
    }
    this.dialer.start()
    void this.dialer.redialKnownPeers().catch(err => { log.debug(`redialing known peers failed: ${err.message}`) })
    progress(`peer id ${libp2p.peerId.toString()}`)
    progress(`listening on ${libp2p.getMultiaddrs().map(String).join(', ') || '(no addresses)'}`)
    if (this.config.bootstrap.length > 0) progress(`dialing ${this.config.bootstrap.length} bootstrap peer(s)`)
    const first = (): void => {
      progress('connected to the first peer')
      libp2p.removeEventListener('peer:connect', first)
    }
    libp2p.addEventListener('peer:connect', first)
  }

  /** Stops accepting work, closes the API, libp2p and the datastore. Safe to call twice. */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      this.emit({ event: 'stopping' })
      this.dialer.stop()
      await this.api?.close()
      await this.node.stop()
    })()
    await this.stopping
  }

  /** for the HTTP control API */
  emitEvent (event: DaemonEvent): void {
    this.emit(event)
  }
}

function explainListenError (err: any, listen: string[]): Error {
  const text = String(err?.message ?? err)
  if (/EADDRINUSE|address already in use/i.test(text) || err?.code === 'EADDRINUSE') {
    return new UsageError(`a listen address is already in use (${listen.join(', ')}): is another krill daemon running? Stop it or pass --listen with another port`, 1)
  }
  if (/EADDRNOTAVAIL|EACCES/i.test(text)) {
    return new UsageError(`cannot listen on ${listen.join(', ')}: ${text}; pass --listen with an address of this machine`, 1)
  }
  return err
}
