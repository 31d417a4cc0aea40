/**
 * Human-readable logs on stderr (stdout belongs to command output and the
 * daemon's JSON event lines). KRILL_LOG=debug shows more, KRILL_LOG=silent none.
 */
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
type Level = Exclude<keyof typeof LEVELS, 'silent'>

let threshold: number = LEVELS[(process.env.KRILL_LOG as keyof typeof LEVELS) ?? 'info'] ?? LEVELS.info

export function setLogLevel (level: keyof typeof LEVELS): void {
  threshold = LEVELS[level]
}

export interface Logger {
  debug: (msg: string) => void
  info: (msg: string) => void
  warn: (msg: string) => void
  error: (msg: string) => void
}

export function logger (scope: string): Logger {
  const write = (level: Level) => (msg: string): void => {
    if (LEVELS[level] < threshold) return
    process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${scope}: ${msg}\n`)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}
