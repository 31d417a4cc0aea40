import { networkInterfaces } from 'node:os'
import type { Command } from 'commander'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { resolveConfig } from '../../node/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'

/** /ip4/0.0.0.0/... means every interface: list each IPv4 address instead. */
function expandWildcards (listen: string[]): string[] {
  const ips = Object.values(networkInterfaces()).flat()
    .filter(i => i != null && i.family === 'IPv4')
    .map(i => (i as { address: string }).address)
  return listen.flatMap(a => a.startsWith('/ip4/0.0.0.0/') ? ips.map(ip => a.replace('/ip4/0.0.0.0/', `/ip4/${ip}/`)) : [a])
}

export function registerId (program: Command): void {
  program.command('id')
    .description("print this node's peer id and addresses (creates the identity if missing)")
    .option('--data-dir <dir>', 'data directory (env KRILL_HOME)')
    .option('--api <host:port>', 'daemon API to ask for live addresses (env KRILL_API)')
    .option('--json', 'machine-readable output')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const config = await resolveConfig({ dataDir: opts.dataDir })
      const { privateKey, created } = await loadOrCreateIdentity(config.dataDir)
      const peerId = peerIdFromPrivateKey(privateKey).toString()

      // A running daemon with this identity knows its real addresses; otherwise
      // show the configured listen addresses.
      let addrs: string[] = expandWildcards(config.listen).map(a => `${a}/p2p/${peerId}`)
      let running = false
      try {
        const status = await getJson<{ peerId: string, addrs: string[] }>(apiBase(opts.api), '/krill/v1/status', { signal: AbortSignal.timeout(2_000) })
        if (status.peerId === peerId) {
          addrs = status.addrs
          running = true
        }
      } catch { /* no daemon: configured addresses are the best we know */ }

      if (opts.json === true) {
        printJson({ peerId, addrs, running, created, dataDir: config.dataDir })
        return
      }
      process.stdout.write(`peer id  ${peerId}\n`)
      for (const a of addrs) process.stdout.write(`address  ${a}\n`)
      if (!running) process.stdout.write('(daemon not running: these are the configured listen addresses)\n')
    })
}
