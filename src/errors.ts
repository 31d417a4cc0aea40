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

  constructor (code: ErrorCodeName, message: string, options: { peer?: string, cause?: unknown, connectionReplaced?: boolean } = {}) {
    super(message, { cause: options.cause })
    this.name = 'KrillError'
    this.code = code
    this.peer = options.peer
    this.connectionReplaced = options.connectionReplaced ?? false
  }
}

/** A mistake the user can fix (bad flag, bad config file); printed as one line, no stack. */
export class UsageError extends Error {
  readonly exitCode: 1 | 2

  constructor (message: string, exitCode: 1 | 2 = 2) {
    super(message)
    this.name = 'UsageError'
    this.exitCode = exitCode
  }
}
