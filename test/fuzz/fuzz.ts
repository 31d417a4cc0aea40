/**
 * Seeded input generators for the fuzz tests. Everything random comes from one PRNG
 * (mulberry32), so a failure names its seed and case number and replays exactly:
 * KRILL_FUZZ_SEED=<seed> npx vitest run test/fuzz
 */
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { encode as encodeVarint } from 'uint8-varint'

export const SEED = Number(process.env.KRILL_FUZZ_SEED ?? 0x6b72696c)

export class Rng {
  private state: number

  constructor (seed: number) {
    this.state = seed >>> 0
  }

  /** in [0, 1) */
  next (): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** integer in [0, n) */
  int (n: number): number {
    return Math.floor(this.next() * n)
  }

  chance (p: number): boolean {
    return this.next() < p
  }

  pick<T> (items: readonly T[]): T {
    return items[this.int(items.length)]
  }

  bytes (n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.int(256)
    return out
  }

  /** a size skewed to small values, sometimes large */
  size (max: number): number {
    const r = this.next()
    return Math.floor(max * r * r * r)
  }
}

/** Strings that break naive code: unicode edge cases, control characters, paths, injections. */
export const NASTY_STRINGS: readonly string[] = [
  '', ' ', '\u0000', '\uFEFF', '\uD800', '\uDFFF', '\uD83D\uDE00', 'é', 'e\u0301', '\u202E', '\u200B', '𝕂𝕣𝕚𝕝𝕝',
  '../../etc/passwd', '/etc/passwd', 'C:\\Windows\\win.ini', 'file:///etc/passwd', '~/.ssh/id_ed25519',
  '$(rm -rf /)', '`id`', '; ls', '| cat', '%s%s%s%n', '{{7*7}}', '${7*7}', '<script>', "'; DROP TABLE x; --",
  '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'NaN', 'Infinity', '-0', '1e309',
  'sha256:' + 'f'.repeat(64), 'llama3.2:1b', 'x'.repeat(300), '\n'.repeat(50), '\r\n\r\n', 'data: [DONE]\n\n'
]

export const NASTY_NUMBERS: readonly number[] = [
  0, -0, 1, -1, 0.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE,
  1e308, -1e308, 1e-320, 1.7976931348623157e308
]

export function randomString (rng: Rng, maxLen = 40): string {
  if (rng.chance(0.3)) return rng.pick(NASTY_STRINGS)
  const n = rng.size(maxLen)
  let s = ''
  for (let i = 0; i < n; i++) {
    const r = rng.next()
    s += r < 0.6
      ? String.fromCharCode(0x20 + rng.int(95))
      : r < 0.8 ? String.fromCharCode(rng.int(0x10000)) : String.fromCodePoint(0x10000 + rng.int(0x10ffff - 0x10000))
  }
  return s
}

/** Any JSON value, with a bias to the shapes that break parsers and validators. */
export function randomJson (rng: Rng, depth = 0): unknown {
  const r = rng.next()
  if (depth > 6 || r < 0.15) return rng.pick<unknown>([null, true, false, 0, -1, '', 'user', 'assistant', 'system', 'tool', 'json'])
  if (r < 0.3) return rng.chance(0.5) ? rng.pick(NASTY_NUMBERS) : (rng.next() - 0.5) * 10 ** rng.int(20)
  if (r < 0.5) return randomString(rng)
  if (r < 0.7) return Array.from({ length: rng.size(8) }, () => randomJson(rng, depth + 1))
  const out: Record<string, unknown> = {}
  for (let i = rng.size(8); i > 0; i--) {
    out[rng.chance(0.3) ? rng.pick(['model', 'messages', 'role', 'content', 'options', 'tools', 'format', 'stream', 'images', '__proto__', 'constructor']) : randomString(rng, 12)] = randomJson(rng, depth + 1)
  }
  return out
}

/** a JSON value nested `levels` deep, as text (building it as an object would need the same depth) */
export function deepJsonText (levels: number, kind: 'object' | 'array'): string {
  return kind === 'object' ? '{"a":'.repeat(levels) + '1' + '}'.repeat(levels) : '['.repeat(levels) + ']'.repeat(levels)
}

/** Mutates a JSON value in place-ish (returns the new value): replace, delete, add, wrap. */
export function mutateJson (rng: Rng, value: unknown, depth = 0): unknown {
  if (depth > 8 || rng.chance(0.2)) {
    const r = rng.next()
    if (r < 0.5) return randomJson(rng, 3)
    if (r < 0.7) return [value]
    if (r < 0.85) return { value }
    return rng.pick<unknown>([undefined, null, '', 0, 1e309, -1, [], {}])
  }
  if (Array.isArray(value)) {
    const copy = [...value]
    if (copy.length > 0 && rng.chance(0.7)) {
      const i = rng.int(copy.length)
      copy[i] = mutateJson(rng, copy[i], depth + 1)
    }
    if (rng.chance(0.2)) copy.push(randomJson(rng, 2))
    if (rng.chance(0.1) && copy.length > 0) copy.splice(rng.int(copy.length), 1)
    if (rng.chance(0.05)) return Array.from({ length: 200 + rng.int(2000) }, () => copy[0] ?? 'x')
    return copy
  }
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) }
    const keys = Object.keys(copy)
    if (keys.length > 0 && rng.chance(0.7)) {
      const k = rng.pick(keys)
      copy[k] = mutateJson(rng, copy[k], depth + 1)
    }
    if (rng.chance(0.15) && keys.length > 0) delete copy[rng.pick(keys)]
    if (rng.chance(0.15)) copy[rng.chance(0.5) ? rng.pick(['__proto__', 'constructor', 'num_gpu', 'raw', 'template', 'images', 'keep_alive', 'options']) : randomString(rng, 10)] = randomJson(rng, 2)
    return copy
  }
  if (typeof value === 'string') {
    const r = rng.next()
    if (r < 0.3) return randomString(rng)
    if (r < 0.5) return value + randomString(rng, 10)
    if (r < 0.6) return value.repeat(1 + rng.int(1000))
    if (r < 0.8) return value.slice(0, rng.int(value.length + 1))
    return rng.pick(NASTY_STRINGS)
  }
  if (typeof value === 'number') return rng.chance(0.5) ? rng.pick(NASTY_NUMBERS) : -value
  return randomJson(rng, 3)
}

/** Text-level mutations of a JSON body: cuts, flips and splices that break the syntax too. */
export function mutateText (rng: Rng, text: string): string {
  const at = rng.int(text.length + 1)
  switch (rng.int(7)) {
    case 0: return text.slice(0, at)
    case 1: return text.slice(0, at) + String.fromCharCode(rng.int(0x10000)) + text.slice(at + 1)
    case 2: return text.slice(0, at) + rng.pick(['"', '{', '[', ']', '}', ',', ':', '\\', '\\u', '\\ud800', 'null', '1e999', '-', '\u0000']) + text.slice(at)
    case 3: return text.slice(0, at) + text.slice(at + 1 + rng.int(20))
    case 4: return text + text.slice(0, at)
    case 5: return text.replace(/"[a-z_]+"/, `"${randomString(rng, 10).replace(/["\\]/g, '')}"`)
    default: return text.slice(0, at) + deepJsonText(100 + rng.int(20_000), rng.chance(0.5) ? 'object' : 'array') + text.slice(at)
  }
}

/** Byte-level mutations of an encoded message or a stream of frames. */
export function mutateBytes (rng: Rng, input: Uint8Array, corpus: readonly Uint8Array[] = []): Uint8Array {
  let b = Uint8Array.from(input)
  const rounds = 1 + rng.int(4)
  for (let n = 0; n < rounds; n++) {
    const at = rng.int(b.length + 1)
    switch (rng.int(9)) {
      case 0: { // bit flips
        if (b.length === 0) break
        for (let k = 1 + rng.int(8); k > 0; k--) b[rng.int(b.length)] ^= 1 << rng.int(8)
        break
      }
      case 1: // truncation
        b = b.subarray(0, at)
        break
      case 2: { // set bytes to boundary values
        if (b.length === 0) break
        b[rng.int(b.length)] = rng.pick([0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x22])
        break
      }
      case 3: // insert random bytes
        b = concat(b.subarray(0, at), rng.bytes(1 + rng.size(64)), b.subarray(at))
        break
      case 4: // delete a range
        b = concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(16))))
        break
      case 5: { // length-field corruption: a huge, zero or overlong varint where a length may be
        const lengths = [0, 1, 127, 128, 2 ** 21, 2 ** 31 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]
        const varint = rng.chance(0.2) ? new Uint8Array(11).fill(0xff) : encodeVarint(rng.pick(lengths))
        b = concat(b.subarray(0, at), varint, b.subarray(Math.min(b.length, at + 1)))
        break
      }
      case 6: // duplicate a range (repeated fields, repeated frames)
        b = concat(b, b.subarray(at, Math.min(b.length, at + 1 + rng.int(200))))
        break
      case 7: // splice with another corpus entry
        if (corpus.length > 0) {
          const other = rng.pick(corpus)
          b = concat(b.subarray(0, at), other.subarray(rng.int(other.length + 1)))
        }
        break
      default: // overwrite with a field tag of a random number and wire type
        b = concat(b.subarray(0, at), encodeVarint(rng.int(64) * 8 + rng.int(8)), b.subarray(at))
    }
  }
  return b
}

export function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

export function hex (bytes: Uint8Array, max = 256): string {
  const s = Buffer.from(bytes.subarray(0, max)).toString('hex')
  return bytes.byteLength > max ? `${s}… (${bytes.byteLength} bytes)` : s
}

let gcFn: (() => void) | undefined

/** A full GC, so heap numbers mean live memory (works without --expose-gc). */
export function collectGarbage (): void {
  if (gcFn == null) {
    setFlagsFromString('--expose-gc')
    gcFn = runInNewContext('gc') as () => void
  }
  gcFn()
  gcFn()
}

export function heapUsedMiB (): number {
  collectGarbage()
  return process.memoryUsage().heapUsed / (1024 * 1024)
}
