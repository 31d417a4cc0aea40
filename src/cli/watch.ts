import { setTimeout as sleep } from 'node:timers/promises'

/** ESC[H moves the cursor home, ESC[2J clears the screen: a redraw in place. */
const CLEAR = '\x1b[H\x1b[2J'

export interface WatchOptions<T> {
  /** what the command shows, e.g. "krill peers" */
  title: string
  load: (signal: AbortSignal) => Promise<T>
  render: (data: T) => string
  /** JSON lines instead of redraws: one compact document per refresh */
  json: boolean
  everyMs?: number
}

/**
 * Refreshes until Ctrl-C, which is the normal way to leave and therefore exits 0.
 * A failed refresh (daemon restarting) is shown in place and retried, so a
 * dashboard left open survives a daemon restart.
 */
export async function watch<T> (opts: WatchOptions<T>): Promise<void> {
  const everyMs = opts.everyMs ?? 2_000
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    while (!stop.signal.aborted) {
      let out: string
      try {
        const data = await opts.load(AbortSignal.any([stop.signal, AbortSignal.timeout(Math.max(everyMs * 5, 10_000))]))
        out = opts.json ? JSON.stringify(data) + '\n' : opts.render(data)
      } catch (err: any) {
        if (stop.signal.aborted) break
        out = opts.json ? JSON.stringify({ error: { message: err.message } }) + '\n' : `krill: ${err.message}\n`
      }
      if (opts.json) {
        process.stdout.write(out)
      } else {
        const stamp = new Date().toLocaleTimeString()
        process.stdout.write(`${CLEAR}Every ${everyMs / 1000}s: ${opts.title}    ${stamp}    (Ctrl-C to quit)\n\n${out}`)
      }
      await sleep(everyMs, undefined, { signal: stop.signal }).catch(() => {})
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
