/** Limits of the embedding protocol (/krill/embed/1.0.0); see protocols/README.md. */

export interface EmbedLimits {
  /** inputs in one request; a consumer splits bigger batches */
  maxInputs: number
  /** characters (UTF-16 code units) in one input */
  maxInputChars: number
  /** largest EmbedRequest a provider reads (protobuf bytes) */
  maxRequestBytes: number
  /** largest provider -> consumer frame; vectors are split over frames below it */
  maxFrameBytes: number
  /** longest vector accepted, in values */
  maxDimensions: number
}

export const DEFAULT_EMBED_LIMITS: Readonly<EmbedLimits> = Object.freeze({
  maxInputs: 256,
  maxInputChars: 32 * 1024,
  // 256 inputs of 8 Ki characters of any script (at most 3 UTF-8 bytes per UTF-16
  // code unit) is 6 MiB, plus framing
  maxRequestBytes: 8 * 1024 * 1024,
  maxFrameBytes: 1024 * 1024,
  maxDimensions: 65_536
})

export function resolveEmbedLimits (overrides: Partial<EmbedLimits> = {}): EmbedLimits {
  const out: EmbedLimits = { ...DEFAULT_EMBED_LIMITS }
  for (const [key, value] of Object.entries(overrides) as Array<[keyof EmbedLimits, number | undefined]>) {
    if (value === undefined) continue
    if (!(key in DEFAULT_EMBED_LIMITS)) throw new TypeError(`unknown embed protocol limit "${key}"`)
    if (!Number.isInteger(value) || value <= 0) throw new TypeError(`embed protocol limit ${key} must be a positive integer, got ${String(value)}`)
    out[key] = value
  }
  return out
}
