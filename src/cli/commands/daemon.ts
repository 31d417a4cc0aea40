import type { Command } from 'commander'
import { startDaemon } from '../../daemon/daemon.js'
import type { DaemonEvent } from '../../events.js'
import { DEFAULT_API, resolveConfig, type FlagConfig } from '../../node/config.js'
import { decodeInvite } from '../../network/invite-token.js'
import { whoCanUse } from '../../network/network-mode.js'
import { logger } from '../../log.js'
import { collect, cliOptions } from '../options.js'
import { refuseHeldDataDir, runFileWriter } from '../daemon-run.js'

const log = logger('krill')

function describe (event: DaemonEvent): string | undefined {
  switch (event.event) {
    case 'peer:joined': return `peer joined ${event.peerId}`
    case 'peer:left': return `peer left ${event.peerId}`
    case 'model:appeared': return `model ${event.model} appeared at ${event.peerId}`
    case 'model:vanished': return `model ${event.model} vanished from ${event.peerId}`
    case 'request:served': return `served ${event.model} for ${event.peerId}: ${event.outcome}, ${event.tokens} tokens in ${event.durationMs} ms`
    case 'request:routed': return `routed ${event.model} to ${event.peerId}: ${event.outcome}, ${event.tokens} tokens in ${event.durationMs} ms`
    default: return undefined
  }
}

/** The start-up banner for people: who can use this node, and what to do next. */
export function banner (api: string, network: 'private' | 'public', serving: boolean, ollama: string): string {
  const hostPort = api.replace(/^https?:\/\//, '')
  const apiFlag = hostPort === DEFAULT_API ? '' : ` --api ${hostPort}`
  return [
    `krill: ${whoCanUse(network, serving)}${serving ? ` (${ollama})` : ''}`,
    'next steps:',
    `  apps     point OpenAI clients at ${api}/v1, Ollama clients at ${api}`,
    `  invite   krill invite${apiFlag}     prints a token; on another machine: krill daemon --join <token>`,
    `  status   krill status${apiFlag}`,
    ''
  ].join('\n')
}

export function registerDaemon (program: Command): void {
  program.command('daemon')
    .description('run a node: serve local models, route requests, expose the HTTP API')
    .option('--data-dir <dir>', 'identity, datastore and krill.json (env KRILL_HOME)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (env KRILL_LISTEN, comma list)', collect)
    .option('--announce <multiaddr>', 'also advertise this address as reachable, e.g. a server\'s public IP or a forwarded port; repeatable (env KRILL_ANNOUNCE)', collect)
    .option('--api <host:port>', 'HTTP API address, port 0 picks a free one (env KRILL_API)')
    .option('--bootstrap <multiaddr>', 'peer to join through, repeatable (env KRILL_BOOTSTRAP)', collect)
    .option('--no-mdns', 'do not discover peers on the local network')
    .option('--ollama <url>', 'Ollama to serve from (env OLLAMA_HOST)')
    .option('--serve', 'serve local models to peers (the default in a private swarm; on the public network only with this flag)')
    .option('--no-serve', 'only consume and relay; never serve local models')
    .option('--share <model>', 'share only this model (repeatable; a trailing * matches a prefix)', collect)
    .option('--relay', 'act as a circuit-relay server for peers behind NATs')
    .option('--no-auto-relay', 'never relay for others, not even once this node is publicly reachable')
    .option('--upnp', 'ask the home router to forward our port (UPnP; sends SSDP multicast on the LAN); off in a private swarm unless given')
    .option('--no-upnp', 'never ask the router to forward our port (UPnP)')
    .option('--no-autonat', 'do not have peers confirm our public addresses by dialing back (AutoNAT v2), nor do it for them')
    .option('--no-hole-punch', 'never open direct connections through NATs by TCP hole punching (relayed peers stay relayed)')
    .option('--swarm-key <file>', 'join the private swarm of this pre-shared key (env KRILL_SWARM_KEY)')
    .option('--public', 'join the public krill network (strangers connect; serves only with --serve) instead of a private swarm')
    .option('--rendezvous <multiaddr>', 'public IPFS DHT peer to meet the public network through, repeatable; replaces the standard bootstrap peers (env KRILL_RENDEZVOUS)', collect)
    .option('--join <token>', 'join the private swarm of an invite token from `krill invite`; remembered in the data dir (env KRILL_JOIN)')
    .option('--json', 'print the ready line and events as JSON lines on stdout')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const json = opts.json === true
      const flags: FlagConfig = {
        dataDir: opts.dataDir,
        listen: opts.listen,
        announce: opts.announce,
        api: opts.api,
        bootstrap: opts.bootstrap,
        mdns: opts.mdns,
        ollama: opts.ollama,
        serve: opts.serve,
        share: opts.share,
        relay: opts.relay,
        autoRelay: opts.autoRelay,
        upnp: opts.upnp,
        autonat: opts.autonat,
        holePunch: opts.holePunch,
        swarmKey: opts.swarmKey,
        public: opts.public,
        rendezvous: opts.rendezvous,
        join: opts.join
      }
      const config = await resolveConfig(flags)
      // a bad token stops us (exit 2) before anything is written to the data dir
      if (config.join != null) await decodeInvite(config.join)
      await refuseHeldDataDir(config.dataDir)
      const runFile = runFileWriter(config.dataDir)
      const onEvent = (event: DaemonEvent): void => {
        if (event.event === 'ready') runFile.ready(event)
        if (json) {
          process.stdout.write(JSON.stringify(event) + '\n')
        } else if (event.event === 'ready') {
          process.stdout.write(`krill daemon ready\n  peer id  ${event.peerId}\n  network  ${event.network}\n  api      ${event.api}\n${event.addrs.map(a => `  address  ${a}`).join('\n')}\n`)
          process.stderr.write(banner(event.api, event.network, config.serve, config.ollama))
        } else {
          const line = describe(event)
          if (line != null) log.info(line)
        }
      }
      // Signal handlers go in before start: a SIGTERM right after the ready line
      // must still mean a clean shutdown.
      let firstSignalAt = 0
      let signalled!: (signal: NodeJS.Signals) => void
      const stopRequested = new Promise<NodeJS.Signals>(resolve => { signalled = resolve })
      const onSignal = (signal: NodeJS.Signals): void => {
        // Ctrl-C reaches both this process and a launcher that forwards it:
        // only a repeat after a pause means "force quit"
        if (firstSignalAt > 0 && Date.now() - firstSignalAt < 1_000) return
        if (firstSignalAt > 0) {
          log.warn(`second ${signal}: exiting without a clean shutdown`)
          process.exit(1)
        }
        firstSignalAt = Date.now()
        signalled(signal)
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)

      const daemon = await startDaemon(config, { onEvent, onStopRequest: () => { onSignal('SIGTERM') } })
      const signal = await stopRequested
      log.info(`${signal}: shutting down (in-flight requests are finished or cancelled)`)
      await daemon.stop()
      runFile.remove()
      log.info('stopped')
    })
}
