import { CommanderError } from 'commander'
import { DaemonUnreachableError, DatastoreLockedError, InterruptedError, InviteError, KrillError, KrillUserError, ModelNotServedError, UsageError } from '../errors.js'
import { CliError } from './cli-error.js'
import { exitCodeFor, type ExitCode } from './exit-codes.js'

export interface ErrorReport {
  code: string
  message: string
  hint?: string
  exitCode: ExitCode
}

/** the JSON code of a named error: a few by meaning, the rest from the class name (AddressInUseError → address_in_use) */
function codeOf (err: KrillUserError): string {
  if (err instanceof DaemonUnreachableError) return 'no_daemon'
  if (err instanceof ModelNotServedError) return 'unknown_model'
  if (err instanceof DatastoreLockedError) return 'data_dir_in_use'
  if (err instanceof InterruptedError) return 'interrupted'
  if (err instanceof InviteError) return `invite_${err.reason}`
  if (err instanceof UsageError && err.constructor === UsageError) return err.failure ? 'failed' : 'bad_usage'
  return err.constructor.name.replace(/Error$/, '').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase()
}

/** What the user is told about `err`, and the exit code that goes with it (exit-codes.ts). */
export function describeError (err: unknown): ErrorReport {
  const exitCode = exitCodeFor(err)
  if (err instanceof CliError) return { code: err.code, message: err.message, hint: err.hint, exitCode }
  if (err instanceof CommanderError) return { code: 'bad_usage', message: err.message.replace(/^error: /, ''), hint: 'run the command with --help for its usage', exitCode }
  if (err instanceof KrillUserError) return { code: codeOf(err), message: err.message, hint: err.hint, exitCode }
  if (err instanceof KrillError) return { code: err.code.toLowerCase(), message: err.message, exitCode }
  const message = err instanceof Error ? err.message : String(err)
  return { code: 'internal', message, hint: 'run again with KRILL_LOG=debug for details', exitCode }
}

/** `{"error":{"code","message","hint"}}` on one line */
export function errorJson (report: Pick<ErrorReport, 'code' | 'message' | 'hint'>): string {
  return JSON.stringify({ error: { code: report.code, message: report.message, ...(report.hint != null ? { hint: report.hint } : {}) } })
}

/** Prints the error on stderr (one line, or one JSON line) and returns the exit code. */
export function reportError (err: unknown, json: boolean): ExitCode {
  const report = describeError(err)
  if (json) {
    process.stderr.write(errorJson(report) + '\n')
  } else {
    process.stderr.write(`krill: ${report.message}${report.hint != null ? ` — ${report.hint}` : ''}\n`)
    if (process.env.KRILL_LOG === 'debug' && err instanceof Error && report.code === 'internal') process.stderr.write(`${err.stack}\n`)
  }
  return report.exitCode
}
