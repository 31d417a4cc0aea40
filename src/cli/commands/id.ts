import { networkInterfaces } from 'node:os'
import type { Command } from 'commander'
import type { StatusAnswer } from '../../api/control.js'
import { defaultDataDir } from '../../node/defaults.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { liveDaemon } from '../run-file.js'

export interface IdAnswer {
  peerId: string
  addrs: string[]
  /** the addresses are the live ones of a running daemon */
  running: boolean
  /** the data dir whose identity this is; null when only a daemon's API was asked */
  dataDir: string | null
  /** the API of the running daemon; null when none runs */
  api: string | null
  /** the identity was created just now */
  created: boolean
  /** with no daemon for the data dir: the daemon that answered at --api is a different node */
  otherDaemon?: { api: string, peerId: string }
}

/** /ip4/0.0.0.0/... means every interface: list each IPv4 address instead. */
function expandWildcards (listen: string[]): string[] {
  const ips = Object.values(networkInterfaces()).flat()
    .filter(i => i != null && i.family === 'IPv4')
    .map(i => (i as { address: string }).address)
  return listen.flatMap(a => a.startsWith('/ip4/0.0.0.0/') ? ips.map(ip => a.replace('/ip4/0.0.0.0/', `/ip4/${ip}/`)) : [a])
}

/** The identity in `dataDir` and its configured addresses (no daemon runs for it). */
async function offline (dataDir: string): Promise<IdAnswer> {
  // only this path needs the config schema and the key codecs
  const [{ resolveConfig }, { loadOrCreateIdentity }, { peerIdFromPrivateKey }] = await Promise.all([
    import('../../node/config.js'), import('../../node/identity.js'), import('@libp2p/peer-id')
  ])
  const config = await resolveConfig({ dataDir })
  const { privateKey, created } = await loadOrCreateIdentity(config.dataDir)
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  return { peerId, addrs: expandWildcards(config.listen).map(a => `${a}/p2p/${peerId}`), running: false, dataDir, api: null, created }
}

async function ask (base: string, timeoutMs?: number): Promise<StatusAnswer> {
  return await getJson<StatusAnswer>(base, '/krill/v1/status', timeoutMs != null ? { signal: AbortSignal.timeout(timeoutMs) } : {})
}

export function renderId (a: IdAnswer): string {
  const lines = [`peer id   ${a.peerId}`]
  if (a.dataDir != null) lines.push(`data dir  ${a.dataDir}`)
  lines.push(a.running ? `daemon    running, API ${a.api ?? '?'}` : 'daemon    not running: the addresses are the configured listen addresses')
  if (a.otherDaemon != null) lines.push(`          (the daemon at ${a.otherDaemon.api} is another node, ${a.otherDaemon.peerId})`)
  for (const addr of a.addrs) lines.push(`address   ${addr}`)
  return lines.join('\n') + '\n'
}

export function registerId (program: Command): void {
  program.command('id')
    .description("print a node's peer id and addresses: the live ones when its daemon runs (creates the identity if missing)")
    .option('--data-dir <dir>', 'the node of this data directory (env KRILL_HOME); its running daemon is found through <dir>/daemon.json')
    .option('--api <host:port>', 'ask the daemon at this API address instead (env KRILL_API)')
    .option('--json', 'machine-readable output')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      let answer: IdAnswer
      const apiGiven = opts.api ?? (process.env.KRILL_API !== '' ? process.env.KRILL_API : undefined)
      if (opts.dataDir == null && apiGiven != null) {
        // the user named a daemon: describe that one, live, or fail saying why
        const base = apiBase(opts.api)
        const status = await ask(base)
        answer = { peerId: status.peerId, addrs: status.addrs, running: true, dataDir: null, api: base, created: false }
      } else {
        const dataDir: string = opts.dataDir ?? defaultDataDir()
        const live = await liveDaemon(dataDir)
        if (live?.status != null) {
          answer = { peerId: live.status.peerId, addrs: live.status.addrs, running: true, dataDir, api: live.info.api, created: false }
        } else {
          answer = await offline(dataDir)
          // a daemon at the API address may still be this node (one started without a run file)
          const base = apiBase(opts.api)
          const status = await ask(base, 1_500).catch(() => undefined)
          if (status?.peerId === answer.peerId) answer = { ...answer, addrs: status.addrs, running: true, api: base }
          else if (status != null) answer.otherDaemon = { api: base, peerId: status.peerId }
        }
      }
      if (opts.json === true) printJson(answer)
      else process.stdout.write(renderId(answer))
    })
}
