/**
 * Model digests: the sha256 of a model's manifest, as Ollama lists it. Accepted as
 * 64 hex digits in any case, optionally prefixed `sha256:` or `sha256-` (Ollama's
 * two spellings); normalized to 64 lower-case hex digits without prefix, which is
 * the form krill puts on the wire, in announcements and in DHT keys.
 */
const DIGEST_RE = /^(?:sha256[:-])?([0-9a-f]{64})$/i

/** The normalized digest, or undefined when `digest` is not one. */
export function normalizeDigest (digest: string): string | undefined {
  const m = DIGEST_RE.exec(digest)
  return m == null ? undefined : m[1].toLowerCase()
}

export function isValidDigest (digest: string): boolean {
  return normalizeDigest(digest) !== undefined
}

/** Two digests name the same model copy. */
export function sameDigest (a: string, b: string): boolean {
  const na = normalizeDigest(a)
  return na !== undefined && na === normalizeDigest(b)
}
