import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { httpCall } from './http.js'

/**
 * `<data dir>/daemon.json`: which process runs the node of a data dir, and where
 * its API is. Written by `krill daemon` when it is ready, removed when it stops;
 * read by `krill id|stop --data-dir` and by a second daemon on the same data dir.
 */
export const RUN_FILE = 'daemon.json'

export interface RunInfo {
  pid: number
  peerId: string
  api: string
  startedAt: string
}

export function writeRunFile (dataDir: string, info: RunInfo): void {
  const path = join(dataDir, RUN_FILE)
  // written whole, then renamed: a reader never sees half a file
  writeFileSync(`${path}.${info.pid}.tmp`, JSON.stringify(info) + '\n', { mode: 0o600 })
  renameSync(`${path}.${info.pid}.tmp`, path)
}

export function readRunFile (dataDir: string): RunInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(join(dataDir, RUN_FILE), 'utf8')) as Partial<RunInfo>
    if (typeof info.pid !== 'number' || typeof info.api !== 'string' || typeof info.peerId !== 'string') return undefined
    return info as RunInfo
  } catch {
    return undefined
  }
}

/** removes the file if it still names `pid` (a newer daemon's file stays) */
export function removeRunFile (dataDir: string, pid: number): void {
  if (readRunFile(dataDir)?.pid === pid) rmSync(join(dataDir, RUN_FILE), { force: true })
}

/**
 * Whether a process with this pid runs (EPERM: it does, owned by someone else). An
 * exited process its parent has not reaped yet (a zombie, Linux: state Z) does not.
 */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err: any) {
    return err?.code === 'EPERM'
  }
  try {
    // "pid (comm) S ...": the state follows the last ")"
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

/**
 * The daemon that holds `dataDir` right now: its run file names a live process
 * whose API answers as krill. A file left by a killed daemon does not count.
 * `status` is what the API says about the node (null when it wants a token we lack).
 */
export async function liveDaemon (dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<{ info: RunInfo, status: { peerId: string, addrs: string[] } | null } | undefined> {
  const info = readRunFile(dataDir)
  if (info == null || !processAlive(info.pid)) return undefined
  try {
    const token = env.KRILL_API_TOKEN
    const res = await httpCall(`${info.api}/krill/v1/status`, {
      headers: token != null && token !== '' ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(2_000)
    })
    if (res.header('x-krill-version') == null) {
      res.cancel()
      return undefined
    }
    if (!res.ok) {
      res.cancel()
      return { info, status: null }
    }
    const status = JSON.parse(await res.text()) as { peerId: string, addrs: string[] }
    return status.peerId === info.peerId ? { info, status } : undefined
  } catch {
    return undefined
  }
}
