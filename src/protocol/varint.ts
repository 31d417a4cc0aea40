import type { Uint8ArrayList } from 'uint8arraylist'

/**
 * Unsigned LEB128 varints, as used for frame length prefixes and protobuf tags.
 * Kept to 53-bit safe integers: nothing krill reads may be longer than that anyway.
 */

/** A varint longer than this cannot encode a length we would ever accept. */
export const MAX_VARINT_BYTES = 8

export function encodeVarint (value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`cannot varint-encode ${value}`)
  }
  const out: number[] = []
  let rest = value
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  out.push(rest)
  return Uint8Array.from(out)
}

export type VarintResult =
  | { status: 'ok', value: number, bytes: number }
  /** more bytes are needed */
  | { status: 'incomplete' }
  /** longer than MAX_VARINT_BYTES: never a length we accept */
  | { status: 'overlong' }

/** Decodes a varint at `offset`. */
export function decodeVarint (buf: Uint8Array | Uint8ArrayList, offset = 0): VarintResult {
  const at = (i: number): number => buf instanceof Uint8Array ? buf[i] : buf.get(i)
  let value = 0
  let scale = 1
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    if (offset + i >= buf.byteLength) return { status: 'incomplete' }
    const byte = at(offset + i)
    value += (byte & 0x7f) * scale
    if ((byte & 0x80) === 0) return { status: 'ok', value, bytes: i + 1 }
    scale *= 0x80
  }
  return { status: 'overlong' }
}
