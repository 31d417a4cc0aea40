/**
 * Logging, one way for every part. Each part's lines go to libp2p's logger under
 * `krill:<part>` (the `debug` module's namespaces, the same as libp2p's own
 * `libp2p:*`), so `DEBUG=krill:*,libp2p:*` shows krill's and libp2p's lines side
 * by side. Without DEBUG for a part, its lines are human-readable ones on stderr
 * (stdout belongs to command output and the daemon's JSON event lines) above the
 * KRILL_LOG threshold: KRILL_LOG=debug shows more, KRILL_LOG=silent none.
 *
 * libp2p services log through their components (`logger('chat', components)`
 * uses `components.logger`, the ComponentLogger the daemon gives createLibp2p);
 * code outside services calls `logger('part')`, which uses the same default
 * ComponentLogger.
 */
import { defaultLogger, enabled } from '@libp2p/logger'
import type { ComponentLogger, Logger as Libp2pLogger } from '@libp2p/interface'

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

let shared: ComponentLogger | undefined

/** The ComponentLogger krill gives createLibp2p (`logger` option) and uses for its own parts. */
export function componentLogger (): ComponentLogger {
  shared ??= quietWhenDisabled(defaultLogger())
  return shared
}

function disabledLogger (name: string, owner: ComponentLogger): Libp2pLogger {
  const log = Object.assign(() => {}, {
    enabled: false,
    error: () => {},
    trace: () => {},
    // a scope below may be switched on (DEBUG=libp2p:yamux:mss*) while this one is off
    newScope: (scope: string) => owner.forComponent(`${name}:${scope}`)
  })
  return log
}

/**
 * libp2p makes loggers per connection and per stream (a chat makes several on each
 * end): a real one is three `debug` instances, about 8 µs and an isatty (four system
 * calls) each. With none of its namespaces switched on (DEBUG, read at start) it
 * would print nothing, so it gets a no-op logger instead.
 */
export function quietWhenDisabled (inner: ComponentLogger, isEnabled: (namespace: string) => boolean = enabled): ComponentLogger {
  const owner: ComponentLogger = {
    forComponent: name => isEnabled(name) || isEnabled(`${name}:error`) || isEnabled(`${name}:trace`)
      ? inner.forComponent(name)
      : disabledLogger(name, owner)
  }
  return owner
}

/**
 * A logger for `part`: through `components.logger` when given (a libp2p service),
 * else through krill's default ComponentLogger.
 */
export function logger (part: string, components?: { logger: ComponentLogger }): Logger {
  const debug = (components?.logger ?? componentLogger()).forComponent(`krill:${part}`)
  const write = (level: Level) => (msg: string): void => {
    if (debug.enabled) {
      if (level === 'warn' || level === 'error') debug.error('%s %s', level, msg)
      else debug('%s %s', level, msg)
      return
    }
    if (LEVELS[level] < threshold) return
    process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${part}: ${msg}\n`)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}
