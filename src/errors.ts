/**
 * Error codes shared by the chat protocol, the router and the HTTP API.
 * The numeric values are the wire values of `Error.code` in protocols/chat.proto.
 */
export const ErrorCode = {
  INTERNAL: 1,
  BAD_REQUEST: 2,
  UNKNOWN_MODEL: 3,
  BUSY: 4,
  RATE_LIMITED: 5,
  TOO_LARGE: 6,
  TIMEOUT: 7,
  ENGINE_FAILED: 8,
  FORBIDDEN: 9,
  CANCELLED: 10,
  NO_PROVIDER: 11,
  SHUTTING_DOWN: 12
} as const

export type ErrorCodeName = keyof typeof ErrorCode
export type ErrorCodeValue = (typeof ErrorCode)[ErrorCodeName]

export function errorCodeName (code: number): ErrorCodeName {
  const entry = Object.entries(ErrorCode).find(([, value]) => value === code)
  return (entry?.[0] as ErrorCodeName | undefined) ?? 'INTERNAL'
}

/** An error that carries a krill error code and, when it came from a peer, which one. */
export class KrillError extends Error {
  readonly code: ErrorCodeName
  readonly peer?: string
  /**
   * The chat failed because the connection under it went away while another
   * connection to the same peer is open (a relayed connection replaced by a
   * direct one): the provider itself is fine, and asking it again should work.
   */
  readonly connectionReplaced: boolean
  /** the peer could not be reached at all (no connection, and dialing it failed) */
  readonly unreachable: boolean

  constructor (code: ErrorCodeName, message: string, options: { peer?: string, cause?: unknown, connectionReplaced?: boolean, unreachable?: boolean } = {}) {
    super(message, { cause: options.cause })
    this.name = 'KrillError'
    this.code = code
    this.peer = options.peer
    this.connectionReplaced = options.connectionReplaced ?? false
    this.unreachable = options.unreachable ?? false
  }
}

/**
 * Errors a person can act on: printed as one line, no stack. Which exit code each
 * class means is decided in one place, the CLI (src/cli/exit-codes.ts); nothing
 * else knows about exit codes.
 */
export class KrillUserError extends Error {
  /** what to do about it, when the message does not say */
  readonly hint?: string

  constructor (message: string, options: { hint?: string, cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.name = new.target.name
    this.hint = options.hint
  }
}

/**
 * The command line is wrong: a bad flag, argument or value (bad usage). Its
 * subclasses say where. (A second argument of 1, from before the named classes,
 * still means "a failure, not bad usage".)
 */
export class UsageError extends KrillUserError {
  /** @deprecated throw a named failure class instead; true when built as `new UsageError(msg, 1)` */
  readonly failure: boolean

  constructor (message: string, legacy?: 1 | 2 | { hint?: string, cause?: unknown }) {
    super(message, typeof legacy === 'object' ? legacy : {})
    this.failure = legacy === 1
  }
}

/** A setting is wrong: a flag or env value, krill.json, or a combination of them. */
export class ConfigError extends UsageError {}

/** The daemon refused a request as malformed (HTTP 400): what was typed cannot be used. */
export class BadRequestError extends UsageError {}

export type InviteErrorReason = 'malformed' | 'damaged' | 'foreign' | 'expired'

/** An invite token (--join, KRILL_JOIN) that cannot be used: bad usage, with why. */
export class InviteError extends ConfigError {
  readonly reason: InviteErrorReason

  constructor (reason: InviteErrorReason, message: string) {
    super(message)
    this.reason = reason
  }
}

/** An invite was asked of a node that is not in a private swarm. */
export class NotInSwarmError extends KrillUserError {}

/** A file krill needs could not be read or written (config, identity, policy). */
export class FileError extends KrillUserError {}

/** The identity key is unreadable or corrupt, or cannot be created. */
export class IdentityError extends FileError {}

/** policy.json is not a valid peer policy. */
export class PolicyFileError extends FileError {}

/** The swarm key file is missing, unreadable or malformed. */
export class SwarmKeyError extends FileError {}

/** A libp2p listen address or the API address is taken (another daemon?). */
export class AddressInUseError extends KrillUserError {}

/** An address to listen on is not one of this machine's, or not ours to take. */
export class AddressUnavailableError extends KrillUserError {}

/** The datastore is locked by another daemon. */
export class DatastoreLockedError extends KrillUserError {}

/** The datastore cannot be opened. */
export class DatastoreError extends KrillUserError {}

/** A client command found no daemon at the API address. */
export class DaemonUnreachableError extends KrillUserError {}

/** The daemon answered a client command with an error. */
export class RequestFailedError extends KrillUserError {}

/** Nobody in the swarm serves the model asked for. */
export class ModelNotServedError extends KrillUserError {}

/** The user interrupted (Ctrl-C) a command that was still working. */
export class InterruptedError extends KrillUserError {}
