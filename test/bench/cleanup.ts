/**
 * Everything a benchmark starts (processes, in-process daemons, stand-ins, temp
 * dirs) is registered here the moment it exists, and released in reverse order
 * whatever happens: normal end, a thrown error, Ctrl-C. Child processes get a
 * synchronous SIGKILL on exit as the very last resort, so no daemon outlives
 * the bench.
 */
import type { ChildProcess } from 'node:child_process'

type Release = () => Promise<void> | void

interface Entry { name: string, release: Release }

export class Cleanup {
  private readonly entries: Entry[] = []
  private closing: Promise<void> | undefined

  /** Registers `release`; returns a function that releases just this one now. */
  add (name: string, release: Release): () => Promise<void> {
    const entry: Entry = { name, release }
    this.entries.push(entry)
    return async () => {
      const i = this.entries.indexOf(entry)
      if (i < 0) return
      this.entries.splice(i, 1)
      await runRelease(entry)
    }
  }

  /** Releases everything, newest first; never throws (failures are reported on stderr). */
  async closeAll (): Promise<void> {
    this.closing ??= (async () => {
      while (this.entries.length > 0) {
        const entry = this.entries.pop() as Entry
        await runRelease(entry)
      }
    })()
    await this.closing
    this.closing = undefined
  }
}

async function runRelease (entry: Entry): Promise<void> {
  try {
    await withTimeout(Promise.resolve(entry.release()), 15_000, `releasing ${entry.name}`)
  } catch (err) {
    process.stderr.write(`bench: cleanup of ${entry.name} failed: ${err instanceof Error ? err.message : String(err)}\n`)
  }
}

export async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new Error(`${what} took longer than ${ms} ms`)) }, ms)
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** children alive right now: killed synchronously if the bench process exits */
const children = new Set<ChildProcess>()
let exitHookInstalled = false

export function trackChild (child: ChildProcess): void {
  children.add(child)
  child.once('exit', () => children.delete(child))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', () => {
      for (const c of children) {
        if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
      }
    })
  }
}

/** Stops a child: `signal`, then SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopChild (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 8_000): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
