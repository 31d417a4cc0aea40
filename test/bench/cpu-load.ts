/**
 * A CPU load from another process, busy on every core, while a figure is measured:
 * Debian's stress-ng when it is installed (`stress-ng --cpu N`, as the issue's
 * loaded-machine checks use), otherwise one busy Node process per core. The caller
 * learns which one ran, so the report can say it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { availableParallelism } from 'node:os'
import type { Cleanup } from './cleanup.js'

export interface CpuLoad {
  /** e.g. "stress-ng --cpu 2" */
  readonly label: string
  stop: () => Promise<void>
}

function hasStressNg (): boolean {
  return spawnSync('stress-ng', ['--version'], { stdio: 'ignore' }).status === 0
}

async function kill (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  child.kill('SIGKILL')
  await exited
}

/** Starts the load on every core; it runs until stop() (or the cleanup's end). */
export function startCpuLoad (cleanup: Cleanup): CpuLoad {
  const cores = availableParallelism()
  const children: ChildProcess[] = []
  let label: string
  if (hasStressNg()) {
    label = `stress-ng --cpu ${cores}`
    children.push(spawn('stress-ng', ['--cpu', String(cores), '--quiet'], { stdio: 'ignore' }))
  } else {
    label = `${cores} busy Node processes (stress-ng is not installed)`
    for (let i = 0; i < cores; i++) children.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }))
  }
  const stop = async (): Promise<void> => { await Promise.all(children.map(kill)) }
  const release = cleanup.add(label, stop)
  return { label, stop: release }
}
