import { EXIT } from './exit-codes.js'
import { errorJson } from './report-error.js'

const hooks = new Set<() => void>()

/** Runs `fn` when Ctrl-C ends the command (e.g. to finish a line); returns an undo. */
export function onInterrupt (fn: () => void): () => void {
  hooks.add(fn)
  return () => { hooks.delete(fn) }
}

/**
 * Ctrl-C ends every client command with exit 130, however it arrives (from the
 * terminal to the whole process group, or forwarded by a launcher). Leaving the
 * process closes its sockets: the daemon sees the client go away and cancels
 * what it was doing for it (a chat stops at the provider's Ollama).
 */
export function exitOnInterrupt (json: boolean): void {
  process.once('SIGINT', () => {
    for (const hook of hooks) {
      try { hook() } catch { /* leaving anyway */ }
    }
    process.stderr.write(json ? errorJson({ code: 'interrupted', message: 'interrupted' }) + '\n' : 'krill: interrupted\n')
    process.exit(EXIT.interrupted)
  })
}
