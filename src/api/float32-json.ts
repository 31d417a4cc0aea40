/**
 * Vectors as Ollama writes them: each float32 as the shortest decimal that reads
 * back as the same float32 (Go's strconv with bitSize 32), so a client sees the
 * very numbers the provider's Ollama produced.
 */

export function float32Text (value: number): string {
  const f = Math.fround(value)
  if (!Number.isFinite(f)) return '0'
  if (f === 0) return '0'
  for (let p = 1; p < 9; p++) {
    const text = f.toPrecision(p)
    if (Math.fround(Number(text)) === f) return String(Number(text))
  }
  return String(Number(f.toPrecision(9)))
}

/** `[[…],[…]]` for a list of vectors */
export function vectorsJson (vectors: Float32Array[]): string {
  return '[' + vectors.map(v => '[' + Array.from(v, float32Text).join(',') + ']').join(',') + ']'
}

/** One float32 vector as base64 of its little-endian bytes (OpenAI's encoding_format "base64"). */
export function vectorBase64 (v: Float32Array): string {
  const bytes = Buffer.alloc(v.length * 4)
  for (let i = 0; i < v.length; i++) bytes.writeFloatLE(v[i], i * 4)
  return bytes.toString('base64')
}
