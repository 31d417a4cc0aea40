/**
 * The moving parts of a benchmark, each registered with a Cleanup as soon as it
 * exists: Ollama stand-ins (own process, or in this one), real `krill daemon`
 * processes (spawned like test/helpers/cli.ts spawnDaemon, so their memory is their
 * own and SIGKILL is real) and in-process daemons. Everything listens on 127.0.0.1.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { StandinKnobs } from '../fixtures/ollama-standin.js'
import { spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/swarm.js'
import type { FlagConfig, KrillConfig } from '../../src/node/config.js'
import { Cleanup, stopChild, trackChild } from './cleanup.js'

export const MODEL = 'llama3.2:1b'

/** Chat protocol limits high enough that one consumer may run every stream a benchmark opens. */
export const OPEN_LIMITS = {
  maxStreamsPerPeer: 1_000,
  requestsPerMinute: 100_000,
  requestBurst: 10_000
}

/**
 * Every node of a loopback benchmark dials from 127.0.0.1, which libp2p's
 * per-address inbound rate limit (inboundConnectionThreshold) would otherwise
 * treat as one very eager host.
 */
export const LOOPBACK_CONNECTIONS_PER_SECOND = 10_000

export interface StandinProc {
  url: string
  pid: number
  child: ChildProcess
  setKnobs: (knobs: Partial<StandinKnobs>) => Promise<void>
  addModel: (name: string) => Promise<void>
  /** forget recorded requests (they would pile up over a long run) */
  reset: () => Promise<void>
  stats: () => Promise<{ requests: number, completed: number, aborted: number, tokensSent: number }>
  stop: () => Promise<void>
}

const STANDIN_MAIN = fileURLToPath(new URL('./standin-proc.js', import.meta.url))
const KRILL_CLI = fileURLToPath(new URL('./krill-cli.js', import.meta.url))
/** the V8 flags bin/krill starts krill with (its shell part): the bench's daemons run as `krill daemon` does */
export const LAUNCHER_NODE_FLAGS = ['--max-semi-space-size=4']

/** `krill daemon --json ...args` as its own process, from the bench's own build. */
export async function spawnKrillDaemon (args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number, entry?: string } = {}): Promise<DaemonProcess> {
  // BENCH_CPU_PROF=DIR: every daemon writes a V8 CPU profile there when it stops
  // (BENCH_CPU_PROF_INTERVAL=µs samples more often than V8's default 1,000 µs)
  const interval = process.env.BENCH_CPU_PROF_INTERVAL != null && process.env.BENCH_CPU_PROF_INTERVAL !== '' ? [`--cpu-prof-interval=${process.env.BENCH_CPU_PROF_INTERVAL}`] : []
  const prof = process.env.BENCH_CPU_PROF != null && process.env.BENCH_CPU_PROF !== '' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, ...interval] : []
  return await spawnDaemon(args, {
    // as the operator set it (the test helper's own default is info)
    env: { KRILL_LOG: process.env.KRILL_LOG ?? 'info', ...opts.env },
    timeoutMs: opts.timeoutMs ?? 60_000,
    entry: opts.entry ?? KRILL_CLI,
    nodeArgs: [...LAUNCHER_NODE_FLAGS, ...prof],
    onSpawn: trackChild,
    // served requests would pile up by the ten thousand over a run
    keepEvent: event => event.event !== 'request:served',
    // a chatty daemon must not grow the bench's memory
    maxStderr: 64 * 1024
  })
}

/** The Ollama stand-in in its own process (test/bench/standin-proc.ts). */
export async function startStandinProc (cleanup: Cleanup, opts: { models?: string[], knobs?: Partial<StandinKnobs> } = {}): Promise<StandinProc> {
  const child = fork(STANDIN_MAIN, [], {
    env: { ...process.env, STANDIN_MODELS: (opts.models ?? [MODEL]).join(','), STANDIN_KNOBS: JSON.stringify(opts.knobs ?? {}) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  trackChild(child)
  const release = cleanup.add(`stand-in process ${child.pid ?? '?'}`, async () => { await stopChild(child) })
  let nextId = 1
  const pending = new Map<number, (msg: any) => void>()
  const ready = new Promise<{ url: string, pid: number }>((resolve, reject) => {
    child.once('exit', code => { reject(new Error(`stand-in process exited with ${String(code)} before it was ready`)) })
    child.on('message', (msg: any) => {
      if (msg?.type === 'ready') resolve(msg)
      else if (typeof msg?.id === 'number') {
        pending.get(msg.id)?.(msg)
        pending.delete(msg.id)
      }
    })
  })
  const ask = async (msg: Record<string, unknown>): Promise<any> => {
    const id = nextId++
    return await new Promise(resolve => {
      pending.set(id, resolve)
      child.send({ ...msg, id })
    })
  }
  const { url, pid } = await ready
  return {
    url,
    pid,
    child,
    setKnobs: async knobs => { await ask({ type: 'knobs', knobs }) },
    addModel: async name => { await ask({ type: 'addModel', name }) },
    reset: async () => { await ask({ type: 'reset' }) },
    stats: async () => await ask({ type: 'stats' }),
    stop: release
  }
}

export interface KrillProc extends DaemonProcess {
  dataDir: string
  pid: number
  /** stops it (SIGTERM, SIGKILL when it hangs) and removes its data dir */
  close: () => Promise<void>
}

/**
 * A real `krill daemon` process on loopback (its own krill.json), for figures that
 * need its own memory or a real SIGKILL. `config` goes to krill.json.
 */
/** `entry`: another build's test/bench/krill-cli.js (an A/B of two builds in one run) */
export async function startKrillProc (cleanup: Cleanup, opts: { ollama?: string, bootstrap?: string[], config?: Record<string, unknown>, dataDir?: string, entry?: string } = {}): Promise<KrillProc> {
  const dataDir = opts.dataDir ?? await tempDir('krill-bench-')
  const removeDir = cleanup.add(`data dir ${dataDir}`, async () => { await rm(dataDir, { recursive: true, force: true }) })
  await writeFile(join(dataDir, 'krill.json'), JSON.stringify({
    inboundConnectionsPerSecond: LOOPBACK_CONNECTIONS_PER_SECOND,
    ...opts.config
  }))
  const args = ['--data-dir', dataDir, '--no-mdns', '--no-upnp', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0']
  if (opts.ollama != null) args.push('--ollama', opts.ollama)
  else args.push('--no-serve')
  for (const b of opts.bootstrap ?? []) args.push('--bootstrap', b)
  let proc: DaemonProcess
  try {
    proc = await spawnKrillDaemon(args, { env: { KRILL_LOG: process.env.KRILL_LOG ?? 'error' }, entry: opts.entry })
  } catch (err) {
    await removeDir()
    throw err
  }
  const stop = cleanup.add(`krill daemon ${proc.ready.peerId}`, async () => { await stopChild(proc.child) })
  return {
    ...proc,
    dataDir,
    pid: proc.child.pid as number,
    close: async () => {
      await stop()
      await removeDir()
    }
  }
}

export interface Memory {
  /** resident set now, MB */
  rssMb: number
  /** highest resident set since the process started (VmHWM), MB */
  peakRssMb: number
}

/** A process's memory from /proc/<pid>/status (Linux). */
export async function processMemory (pid: number): Promise<Memory> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
    return m == null ? NaN : Number(m[1])
  }
  return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 }
}

/** Samples a process's RSS every `everyMs` until stopped; returns the highest value seen (MB). */
export function sampleRss (pid: number, everyMs = 50): { stop: () => Promise<number> } {
  let peak = 0
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        peak = Math.max(peak, (await processMemory(pid)).rssMb)
      } catch {
        // the process is gone: nothing more to sample
        return
      }
      await new Promise(resolve => setTimeout(resolve, everyMs))
    }
  })()
  return {
    stop: async () => {
      running = false
      await loop
      try {
        peak = Math.max(peak, (await processMemory(pid)).rssMb)
      } catch {}
      return peak
    }
  }
}

/** An in-process daemon on loopback (startTestDaemon), registered for cleanup. */
export async function startKrillInProcess (cleanup: Cleanup, flags: FlagConfig & Partial<KrillConfig> = {}): Promise<TestDaemon> {
  const node = await startTestDaemon({
    serve: flags.ollama != null,
    inboundConnectionsPerSecond: LOOPBACK_CONNECTIONS_PER_SECOND,
    upnp: false,
    ...flags
  })
  cleanup.add(`in-process daemon ${node.daemon.peerId.toString()}`, async () => {
    await node.daemon.stop()
    await rm(node.config.dataDir, { recursive: true, force: true })
  })
  return node
}

/** Polls `check` every `everyMs` until it is truthy; throws after `timeoutMs`. */
export async function until (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** The providers of `model` a daemon's HTTP API knows (GET /krill/v1/providers/{model}). */
export async function providersVia (api: string, model: string): Promise<Array<{ peerId: string }>> {
  const res = await fetch(`${api}/krill/v1/providers/${encodeURIComponent(model)}`)
  if (!res.ok) return []
  const body = await res.json() as { providers?: Array<{ peerId: string }> } | Array<{ peerId: string }>
  return Array.isArray(body) ? body : body.providers ?? []
}
