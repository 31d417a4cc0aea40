/**
 * Ollama treats "llama3" and "llama3:latest" as one model and compares names
 * case-insensitively; the router must find providers the same way.
 */
export function normalizeModelName (name: string): string {
  const lower = name.trim().toLowerCase()
  const lastSegment = lower.slice(lower.lastIndexOf('/') + 1)
  return lastSegment.includes(':') ? lower : `${lower}:latest`
}

export function sameModel (a: string, b: string): boolean {
  return normalizeModelName(a) === normalizeModelName(b)
}

/** Names to look a model up under in tables keyed by the exact announced name. */
export function nameVariants (name: string): string[] {
  const variants = [name]
  const normalized = normalizeModelName(name)
  if (normalized !== name) variants.push(normalized)
  if (normalized.endsWith(':latest')) variants.push(normalized.slice(0, -':latest'.length))
  return [...new Set(variants)]
}
