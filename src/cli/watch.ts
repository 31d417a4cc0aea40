import { setTimeout as sleep } from 'node:timers/promises'

/** ESC[H moves the cursor home, ESC[2J clears the screen: a redraw in place. */
export const CLEAR = '\x1b[H\x1b[2J'

export interface WatchOptions<T> {
  /** what the command shows, e.g. "krill peers" */
  title: string
  load: (signal: AbortSignal) => Promise<T>
  render: (data: T) => string
  /** JSON lines instead of redraws: one compact document per refresh */
  json: boolean
  everyMs?: number
  /** redraw in place (a terminal); otherwise plain lines, each refresh under a time stamp */
  tty?: boolean
}

/**
 * Refreshes until Ctrl-C (which exits 130 like every command; see interrupt.ts).
 * On a terminal each refresh redraws the screen; into a pipe or file each one is
 * appended as plain lines under a "# <title> at <time>" line, with no escape codes.
 * A failed refresh (daemon restarting) is shown and retried, so a dashboard left
 * open survives a daemon restart.
 */
export async function watch<T> (opts: WatchOptions<T>): Promise<never> {
  const everyMs = opts.everyMs ?? 2_000
  const tty = opts.tty ?? process.stdout.isTTY === true
  for (;;) {
    let out: string
    try {
      const data = await opts.load(AbortSignal.timeout(Math.max(everyMs * 5, 10_000)))
      out = opts.json ? JSON.stringify(data) + '\n' : opts.render(data)
    } catch (err: any) {
      const code = typeof err?.code === 'string' ? err.code : 'failed'
      out = opts.json ? JSON.stringify({ error: { code, message: err.message } }) + '\n' : `krill: ${err.message}\n`
    }
    if (opts.json) {
      process.stdout.write(out)
    } else if (tty) {
      const stamp = new Date().toLocaleTimeString()
      process.stdout.write(`${CLEAR}Every ${everyMs / 1000}s: ${opts.title}    ${stamp}    (Ctrl-C to quit)\n\n${out}`)
    } else {
      process.stdout.write(`# ${opts.title} at ${new Date().toISOString()}\n${out}\n`)
    }
    await sleep(everyMs)
  }
}
