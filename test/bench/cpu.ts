/**
 * CPU time a process spent, from Linux's /proc/<pid>/schedstat (nanoseconds on a
 * CPU, not wall time): unlike latency, it does not grow when the machine is
 * loaded and a process waits for a core, so it shows what krill itself costs per
 * request on a busy machine too. The main thread is the event loop every token
 * passes through; all threads add libuv's pool (LevelDB, crypto) and V8's helpers.
 */
import { readdir, readFile } from 'node:fs/promises'

async function schedNs (path: string): Promise<number> {
  const text = await readFile(path, 'utf8')
  return Number(text.split(' ')[0])
}

export interface CpuNs {
  /** the main (event-loop) thread */
  main: number
  /** every thread of the process */
  all: number
}

export async function processCpuNs (pid: number): Promise<CpuNs> {
  const main = await schedNs(`/proc/${pid}/schedstat`)
  let all = 0
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    // a thread may end between readdir and the read
    all += await schedNs(`/proc/${pid}/task/${tid}/schedstat`).catch(() => 0)
  }
  return { main, all }
}

/** CPU ms each process spent while `fn` ran. */
export async function cpuDuring (pids: number[], fn: () => Promise<void>): Promise<CpuNs[]> {
  const before = await Promise.all(pids.map(processCpuNs))
  await fn()
  const after = await Promise.all(pids.map(processCpuNs))
  return after.map((a, i) => ({ main: (a.main - before[i].main) / 1e6, all: (a.all - before[i].all) / 1e6 }))
}
