import type { Limits } from '../limits/index.js'

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, μs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g

/** keep_alive in seconds; negative (Ollama: "keep loaded forever") becomes Infinity. */
export function keepAliveSeconds (value: string | number): number {
  if (typeof value === 'number') return value < 0 ? Infinity : value
  const sign = value.startsWith('-') ? -1 : 1
  let total = 0
  for (const [, amount, unit] of value.matchAll(PART)) total += Number(amount) * UNIT_SECONDS[unit]
  return sign < 0 && total > 0 ? Infinity : total
}

/**
 * What a remote consumer may ask of our Ollama stays within what we are willing
 * to give: keep_alive and num_ctx are legal Ollama options, but a stranger must not
 * pin a model in our memory for ever or ask for a context that exhausts it. We
 * lower them rather than refuse: the answer is the same, only cheaper for us.
 */
export function clampForServing<R extends { keepAlive?: string | number, options?: { num_ctx?: number } }> (request: R, limits: Pick<Limits, 'maxKeepAliveSeconds' | 'maxNumCtx'>): R {
  let out = request
  if (request.keepAlive != null && keepAliveSeconds(request.keepAlive) > limits.maxKeepAliveSeconds) {
    out = { ...out, keepAlive: limits.maxKeepAliveSeconds }
  }
  const numCtx = request.options?.num_ctx
  if (numCtx != null && numCtx > limits.maxNumCtx) {
    out = { ...out, options: { ...request.options, num_ctx: limits.maxNumCtx } }
  }
  return out
}
