import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

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

/** Spawns `krill daemon --json ...args` and waits for its ready line. */
export async function spawnDaemon (args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [KRILL_BIN, 'daemon', '--json', ...args], {
    env: { ...process.env, KRILL_LOG: 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const events: Array<Record<string, unknown>> = []
  const lines = createInterface({ input: child.stdout })

  const ready = await new Promise<DaemonProcess['ready']>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`daemon not ready in time; stderr:\n${stderr}`))
    }, opts.timeoutMs ?? 30_000)
    lines.on('line', (line) => {
      const event = JSON.parse(line)
      if (event.event === 'ready') {
        clearTimeout(timer)
        resolve(event)
      } else {
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
