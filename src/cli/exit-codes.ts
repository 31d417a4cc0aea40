/**
 * The one place that turns outcomes into exit codes (DESIGN.md §3): 0 ok,
 * 1 failure, 2 bad usage, 130 interrupted. Everything else throws named errors
 * (src/errors.ts) and never picks a code.
 */
import { CommanderError } from 'commander'
import { InterruptedError, KrillUserError, UsageError } from '../errors.js'
import { CliError } from './cli-error.js'

export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export function exitCodeFor (err: unknown): ExitCode {
  // commander: help and version are successes; everything else it rejects is usage
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage
  if (err instanceof InterruptedError) return EXIT.interrupted
  if (err instanceof CliError) return err.usage ? EXIT.usage : EXIT.failure
  if (err instanceof UsageError) return err.failure ? EXIT.failure : EXIT.usage
  if (err instanceof KrillUserError) return EXIT.failure
  return EXIT.failure
}

/** errors worth a message without a stack trace */
export function isUserError (err: unknown): err is KrillUserError {
  return err instanceof KrillUserError
}
