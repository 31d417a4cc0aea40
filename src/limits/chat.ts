/**
 * Limits of the chat protocol. Every number a remote peer could push us past is
 * here, with a default; callers (krill.json's "limits", tests) override any subset
 * with `resolveLimits`. The protocol (src/protocol) enforces them; config reads them.
 */

/**
 * Chat streams we may open on one connection. libp2p allows 64 outbound streams of
 * a protocol per connection unless told otherwise; past that opening a stream fails
 * and the router counts the provider as failed, although it may allow far more. The
 * provider enforces its own limit (maxStreamsPerPeer, answered with RATE_LIMITED);
 * yamux caps streams per connection at 1000 anyway.
 */
export const MAX_OUTBOUND_CHAT_STREAMS = 1_000

export interface Limits {
  /** largest ChatRequest (protobuf bytes, without the length prefix) a server reads */
  maxRequestBytes: number
  /** largest server->client frame; clients reject bigger ones, servers split deltas below it */
  maxFrameBytes: number
  /** messages in one request */
  maxMessages: number
  /** characters (UTF-16 code units) in one message's content or thinking */
  maxMessageChars: number
  /** images in one message */
  maxImagesPerMessage: number
  /** tool calls in one message */
  maxToolCallsPerMessage: number
  /** tool definitions in one request */
  maxTools: number
  /** stop sequences in options */
  maxStopSequences: number
  /** characters in one stop sequence */
  maxStopChars: number
  /** characters in the model name */
  maxModelNameChars: number
  /** concurrent chat streams one peer may have open at this server */
  maxStreamsPerPeer: number
  /** chat streams one peer may open per minute on average (token bucket refill) */
  requestsPerMinute: number
  /** chat streams one peer may open in a burst before the per-minute rate applies */
  requestBurst: number
  /** the whole request must arrive within this many ms of the stream opening */
  requestTimeoutMs: number
  /** no progress (engine output, or the consumer draining our writes) for this long ends the request */
  stallTimeoutMs: number
  /** longest keep_alive a peer may ask of our Ollama; longer (or "forever") is lowered to this */
  maxKeepAliveSeconds: number
  /** largest num_ctx a peer may ask of our Ollama; larger is lowered to this */
  maxNumCtx: number
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxRequestBytes: 4 * 1024 * 1024,
  maxFrameBytes: 1024 * 1024,
  maxMessages: 1000,
  maxMessageChars: 1024 * 1024,
  maxImagesPerMessage: 16,
  maxToolCallsPerMessage: 64,
  maxTools: 128,
  maxStopSequences: 16,
  maxStopChars: 256,
  maxModelNameChars: 200,
  maxStreamsPerPeer: 8,
  // an agent loop or a team behind one node asks often; a flood asks far more
  requestsPerMinute: 120,
  requestBurst: 30,
  requestTimeoutMs: 10_000,
  stallTimeoutMs: 60_000,
  maxKeepAliveSeconds: 30 * 60,
  maxNumCtx: 131_072
})

/** Defaults with `overrides` applied; rejects values that would disable a limit by accident. */
export function resolveLimits (overrides: Partial<Limits> = {}): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS }
  for (const [key, value] of Object.entries(overrides) as Array<[keyof Limits, number | undefined]>) {
    if (value === undefined) continue
    if (!(key in DEFAULT_LIMITS)) {
      throw new TypeError(`unknown chat protocol limit "${key}"`)
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new TypeError(`chat protocol limit ${key} must be a positive integer, got ${String(value)}`)
    }
    limits[key] = value
  }
  return limits
}
