import { CommanderError } from 'commander'
import { describe, expect, it } from 'vitest'
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.js'
import {
  AddressInUseError, AddressUnavailableError, BadRequestError, ConfigError, DaemonUnreachableError, DatastoreError,
  DatastoreLockedError, FileError, IdentityError, InterruptedError, KrillError, ModelNotServedError, PolicyFileError,
  RequestFailedError, SwarmKeyError, UsageError
} from '../../src/errors.js'

describe('exit codes (DESIGN.md §3), decided in the CLI only', () => {
  it('maps bad usage to 2', () => {
    for (const err of [new UsageError('x'), new ConfigError('x'), new BadRequestError('x'), new CommanderError(1, 'commander.unknownOption', 'x')]) {
      expect(exitCodeFor(err), err.constructor.name).toBe(EXIT.usage)
    }
  })

  it('maps failures to 1', () => {
    for (const err of [new AddressInUseError('x'), new AddressUnavailableError('x'), new DatastoreLockedError('x'), new DatastoreError('x'),
      new FileError('x'), new IdentityError('x'), new PolicyFileError('x'), new SwarmKeyError('x'), new DaemonUnreachableError('x'),
      new RequestFailedError('x'), new ModelNotServedError('x'), new KrillError('INTERNAL', 'x'), new Error('x'), 'x']) {
      expect(exitCodeFor(err), String((err as Error).constructor?.name ?? err)).toBe(EXIT.failure)
    }
    // the pre-named-classes form: `new UsageError(msg, 1)` meant a failure
    expect(exitCodeFor(new UsageError('x', 1))).toBe(EXIT.failure)
  })

  it('maps an interrupt to 130 and help or version to 0', () => {
    expect(exitCodeFor(new InterruptedError('interrupted'))).toBe(EXIT.interrupted)
    expect(exitCodeFor(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)'))).toBe(EXIT.ok)
  })

  it('names each error class', () => {
    expect(new DatastoreLockedError('x').name).toBe('DatastoreLockedError')
    expect(new ConfigError('x')).toBeInstanceOf(UsageError)
  })
})
