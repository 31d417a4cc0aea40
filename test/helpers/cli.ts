import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { namesSwarm, testSwarmKey } from './test-swarm-key.js'

export const KRILL_BIN = fileURLToPath(new URL('../../bin/krill', import.meta.url))

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `krill ...args` to completion with the test's Node. */
export async function runKrill (args: string[], opts: { env?: NodeJS.ProcessEnv, input?: string, timeoutMs?: number } = {}): Promise<RunResult> {
  const child = spawn(process.execPath, [KRILL_BIN, ...args], {
    env: { ...process.env, KRILL_LOG: 'warn', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  child.stdin.end(opts.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

export interface DaemonProcess {
  child: ChildProcess
  ready: { peerId: string, addrs: string[], api: string }
  /** every JSON line printed after the ready line */
  events: Array<Record<string, unknown>>
  stderr: () => string
  /** SIGTERM and wait; resolves with the exit code */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

export interface SpawnDaemonOptions {
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
  /** the CLI script to run instead of bin/krill (the bench runs its own build) */
  entry?: string
  /** Node flags before the script, e.g. --cpu-prof */
  nodeArgs?: string[]
  /** told the child at once, so a cleanup can stop it even before it is ready */
  onSpawn?: (child: ChildProcess) => void
  /** which event lines after the ready line to keep (default: all) */
  keepEvent?: (event: Record<string, unknown>) => boolean
  /** keep only this many trailing characters of stderr (default: all) */
  maxStderr?: number
  /** true: a node of its own fresh private swarm; otherwise the test process's shared swarm key unless args/env name one */
  ownSwarm?: boolean
}

/** Spawns `krill daemon --json ...args` and waits for its ready line. */
export async function spawnDaemon (args: string[], opts: SpawnDaemonOptions = {}): Promise<DaemonProcess> {
  const swarm = opts.ownSwarm === true || namesSwarm(args, { ...process.env, ...opts.env }) ? {} : { KRILL_SWARM_KEY: testSwarmKey() }
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.entry ?? KRILL_BIN, 'daemon', '--json', ...args], {
    env: { ...process.env, KRILL_LOG: 'info', ...swarm, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  opts.onSpawn?.(child)
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
    if (opts.maxStderr != null && stderr.length > opts.maxStderr) stderr = stderr.slice(-opts.maxStderr)
  })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const events: Array<Record<string, unknown>> = []
  const lines = createInterface({ input: child.stdout })

  const ready = await new Promise<DaemonProcess['ready']>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`daemon not ready in time; stderr:\n${stderr}`))
    }, opts.timeoutMs ?? 30_000)
    lines.on('line', (line) => {
      let event: Record<string, any>
      try {
        event = JSON.parse(line)
      } catch {
        return
      }
      if (event.event === 'ready') {
        clearTimeout(timer)
        resolve(event as DaemonProcess['ready'])
      } else if (opts.keepEvent?.(event) ?? true) {
        events.push(event)
      }
    })
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`daemon exited with ${code} before ready; stderr:\n${stderr}`))
    })
  })

  return {
    child,
    ready,
    events,
    stderr: () => stderr,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode == null && child.signalCode == null) child.kill(signal)
      return await exited
    }
  }
}
