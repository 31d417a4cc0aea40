/**
 * A failure the CLI reports to its user with a stable `code` for scripts (printed
 * in `{"error":{"code","message","hint"}}` under --json), one line of `message`,
 * and a `hint` saying what to do: the daemon's own error codes, and what only the
 * CLI can tell (not krill at that address, a usage slip). Failures with a named
 * class in src/errors.ts are thrown as that class; exit codes come from
 * exit-codes.ts (`usage` → 2, else 1).
 */
export class CliError extends Error {
  readonly code: string
  readonly hint?: string
  /** bad usage (exit 2) rather than a failure (exit 1) */
  readonly usage: boolean

  constructor (code: string, message: string, opts: { hint?: string, usage?: boolean, cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'CliError'
    this.code = code
    this.hint = opts.hint
    this.usage = opts.usage ?? false
  }
}
