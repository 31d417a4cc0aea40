import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon/daemon.js'
import type { DaemonEvent } from '../../src/events.js'
import { resolveConfig, type FlagConfig, type KrillConfig } from '../../src/node/config.js'
import { testSwarmKey } from './test-swarm-key.js'

export interface TestDaemon {
  daemon: Daemon
  config: KrillConfig
  events: DaemonEvent[]
}

export async function tempDir (prefix = 'krill-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export type TestFlags = FlagConfig & Partial<KrillConfig> & {
  /**
   * true: the product default, a node of its own fresh private swarm. Otherwise a
   * node without --swarm-key / --join joins the test process's one shared swarm
   * (test/helpers/test-swarm-key.ts), so the nodes of a test can meet. A node
   * with `network: 'public'` has no swarm key at all.
   */
  ownSwarm?: boolean
}

/**
 * Starts one in-process daemon on loopback with a free API port and mDNS off
 * (tests never send multicast). `flags` override, as on the command line.
 */
export async function startTestDaemon (flagsIn: TestFlags = {}, opts: Pick<DaemonOptions, 'discovery'> = {}): Promise<TestDaemon> {
  const { ownSwarm, ...rest } = flagsIn
  const flags = (ownSwarm === true || rest.swarmKey != null || rest.join != null || rest.network === 'public' || (rest as { public?: boolean }).public === true
    ? rest
    : { ...rest, swarmKey: testSwarmKey() }) as FlagConfig & Partial<KrillConfig>
  const dataDir = flags.dataDir ?? await tempDir()
  const config: KrillConfig = {
    ...await resolveConfig({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: '127.0.0.1:0',
      mdns: false,
      // nothing listens here: tests that serve models pass a stand-in's URL
      ollama: 'http://127.0.0.1:9',
      ...flags,
      dataDir
    } as FlagConfig, {}),
    ...stripFlagOnly(flags)
  }
  const events: DaemonEvent[] = []
  const daemon = await startDaemon(config, { ...opts, onEvent: e => events.push(e), onProgress: () => {} })
  return { daemon, config, events }
}

/** KrillConfig fields that FlagConfig cannot express (e.g. numbers given directly). */
function stripFlagOnly (flags: Record<string, any>): Partial<KrillConfig> {
  const { dataDir, listen, api, bootstrap, ollama, ...rest } = flags
  return rest
}

export interface Swarm {
  nodes: TestDaemon[]
  stop: () => Promise<void>
}

/** Starts `n` daemons; every node after the first bootstraps from the first only. */
export async function startSwarm (n: number, flags: (i: number) => TestFlags = () => ({})): Promise<Swarm> {
  const nodes: TestDaemon[] = []
  const stop = async (): Promise<void> => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
  }
  try {
    const first = await startTestDaemon(flags(0))
    nodes.push(first)
    const bootstrap = [first.daemon.addrs()[0]]
    for (let i = 1; i < n; i++) {
      nodes.push(await startTestDaemon({ bootstrap, ...flags(i) }))
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, stop }
}
