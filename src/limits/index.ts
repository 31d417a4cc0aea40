/** Limits: the chat protocol's limit defaults and types, and per-peer rate limiting. */
export { DEFAULT_LIMITS, MAX_OUTBOUND_CHAT_STREAMS, resolveLimits, type Limits } from './chat.js'
export { PeerRateLimiter, type RateLimitOptions } from './rate-limit.js'
export { DEFAULT_EMBED_LIMITS, resolveEmbedLimits, type EmbedLimits } from './embed.js'
