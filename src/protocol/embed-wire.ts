/**
 * The wire side of /krill/embed/1.0.0 (protocols/embed.proto): limits, validation
 * of requests from either side, and conversions between krill's EmbedRequest /
 * EmbedResult and the protobuf frames. Vectors travel as float32 little-endian
 * bytes, exactly as the engine computed them.
 */
import { ErrorCode, KrillError, type ErrorCodeName } from '../errors.js'
import { EMBED_OPTION_KEYS, type EmbedRequest } from '../engine/types.js'
import * as pb from './generated/embed.js'
import { MAX_ERROR_MESSAGE_CHARS, keepAliveFromWire, keepAliveToWire } from './frames.js'
import { DEFAULT_EMBED_LIMITS, resolveLimits, type EmbedLimits, type Limits } from '../limits/index.js'
import { clampForServing } from './serving-clamps.js'
import { forEachField, validateDigest, validateKeepAlive, validateModelName } from './validate.js'
import type { Uint8ArrayList } from 'uint8arraylist'

export { EMBED_PROTOCOL } from './ids.js'

/** protobuf field numbers of EmbedOptions */
const OPTION_FIELD_NUMBERS: Readonly<Record<(typeof EMBED_OPTION_KEYS)[number], number>> = { num_ctx: 1 }
const KNOWN_OPTION_FIELDS = new Set(Object.values(OPTION_FIELD_NUMBERS))
const REQUEST_OPTIONS_FIELD = 7
const INT32_MAX = 2 ** 31 - 1

function bad (message: string): KrillError {
  return new KrillError('BAD_REQUEST', message)
}

/**
 * Checks an embedding request against the limits and returns a clean copy holding
 * only what krill forwards. Throws BAD_REQUEST (TOO_LARGE for more inputs than a
 * request may carry, so that callers know to split).
 */
export function validateEmbedRequest (input: unknown, limits: EmbedLimits & Pick<Limits, 'maxModelNameChars'> = { ...DEFAULT_EMBED_LIMITS, maxModelNameChars: 200 }): EmbedRequest {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad('request must be an object')
  const r = input as Record<string, unknown>
  const out: EmbedRequest = { model: validateModelName(r.model, limits), input: [] }
  const digest = validateDigest(r.digest)
  if (digest != null) out.digest = digest
  if (!Array.isArray(r.input)) throw bad('input must be a list of strings')
  if (r.input.length === 0) throw bad('input must hold at least one text')
  if (r.input.length > limits.maxInputs) {
    throw new KrillError('TOO_LARGE', `${r.input.length} inputs exceed the limit of ${limits.maxInputs} per request; split the batch`)
  }
  out.input = r.input.map((text, i) => {
    if (typeof text !== 'string') throw bad(`input[${i}] must be a string`)
    if (text.length > limits.maxInputChars) throw bad(`input[${i}] has ${text.length} characters; at most ${limits.maxInputChars} are carried per input`)
    return text.isWellFormed() ? text : text.toWellFormed()
  })
  if (r.truncate != null) {
    if (typeof r.truncate !== 'boolean') throw bad('truncate must be a boolean')
    out.truncate = r.truncate
  }
  if (r.dimensions != null) {
    if (!Number.isInteger(r.dimensions) || (r.dimensions as number) < 1 || (r.dimensions as number) > limits.maxDimensions) {
      throw bad(`dimensions must be an integer from 1 to ${limits.maxDimensions}`)
    }
    out.dimensions = r.dimensions as number
  }
  if (r.keepAlive != null) out.keepAlive = validateKeepAlive(r.keepAlive)
  if (r.options != null) {
    if (typeof r.options !== 'object' || Array.isArray(r.options)) throw bad('options must be an object')
    const o = r.options as Record<string, unknown>
    for (const key of Object.keys(o)) {
      if (!(EMBED_OPTION_KEYS as readonly string[]).includes(key)) throw bad(`unknown embedding option "${key}"; allowed: ${EMBED_OPTION_KEYS.join(', ')}`)
    }
    if (o.num_ctx != null) {
      if (!Number.isInteger(o.num_ctx) || (o.num_ctx as number) < 1 || (o.num_ctx as number) > INT32_MAX) throw bad('options.num_ctx must be a positive integer')
      out.options = { num_ctx: o.num_ctx as number }
    }
  }
  return out
}

export function encodeEmbedRequest (r: EmbedRequest): Uint8Array {
  return pb.EmbedRequest.encode({
    model: r.model,
    digest: r.digest,
    input: r.input,
    truncate: r.truncate,
    dimensions: r.dimensions,
    keepAlive: r.keepAlive != null ? keepAliveToWire(r.keepAlive) : undefined,
    options: r.options != null ? { numCtx: r.options.num_ctx } : undefined
  })
}

/**
 * Decodes and validates an EmbedRequest from a peer; what it asks of our engine
 * (keep_alive, num_ctx) is lowered to our limits. Throws BAD_REQUEST / TOO_LARGE.
 */
export function decodeEmbedRequest (payload: Uint8Array | Uint8ArrayList, limits: EmbedLimits & Limits = { ...resolveLimits(), ...DEFAULT_EMBED_LIMITS }): EmbedRequest {
  const bytes = payload instanceof Uint8Array ? payload : payload.subarray()
  let msg: pb.EmbedRequest
  try {
    msg = pb.EmbedRequest.decode(bytes, { limits: { input: limits.maxInputs + 1 } })
  } catch (err) {
    if ((err as Error).name === 'MaxLengthError') throw new KrillError('TOO_LARGE', `more than ${limits.maxInputs} inputs; split the batch`)
    throw bad('request is not a valid EmbedRequest protobuf')
  }
  const unknown: number[] = []
  forEachField(bytes, (field, wireType, start, end) => {
    if (field !== REQUEST_OPTIONS_FIELD || wireType !== 2) return
    forEachField(bytes.subarray(start, end), f => { if (!KNOWN_OPTION_FIELDS.has(f) && !unknown.includes(f)) unknown.push(f) })
  })
  if (unknown.length > 0) throw bad(`unknown option field ${unknown.map(n => `#${n}`).join(', ')} in EmbedRequest.options; allowed options: ${EMBED_OPTION_KEYS.join(', ')}`)
  const request = validateEmbedRequest({
    model: msg.model,
    digest: msg.digest,
    input: msg.input,
    truncate: msg.truncate,
    dimensions: msg.dimensions,
    keepAlive: msg.keepAlive != null && msg.keepAlive !== '' ? keepAliveFromWire(msg.keepAlive) : undefined,
    options: msg.options?.numCtx != null ? { num_ctx: msg.options.numCtx } : undefined
  }, limits)
  return clampForServing(request, limits)
}

// ---- frames ---------------------------------------------------------------

export function encodeEmbedFrame (frame: pb.EmbedFrame): Uint8Array {
  return pb.EmbedFrame.encode(frame)
}

export function decodeEmbedFrame (bytes: Uint8Array | Uint8ArrayList): pb.EmbedFrame {
  return pb.EmbedFrame.decode(bytes)
}

export function embedAcceptedFrame (queuePosition: number, modelDigest: string): pb.EmbedFrame {
  return { accepted: { queuePosition, modelDigest } }
}

export function embedErrorFrame (code: ErrorCodeName, message: string): pb.EmbedFrame {
  return { error: { code: ErrorCode[code], message: message.slice(0, MAX_ERROR_MESSAGE_CHARS) } }
}

export function embedDoneFrame (count: number, promptTokens: number, totalDurationNs: number, loadDurationNs: number, receipt?: Uint8Array): pb.EmbedFrame {
  return { done: { count, promptEvalCount: Math.min(promptTokens, 0xffffffff), totalDuration: totalDurationNs, loadDuration: loadDurationNs, receipt: receipt != null ? Uint8Array.from(receipt) : new Uint8Array(0) } }
}

/** Room left in a frame for vector bytes (tags, lengths and the two numbers). */
const FRAME_OVERHEAD = 32

/**
 * The vectors as Vectors frames of at most `maxFrameBytes`, in order; each frame
 * holds whole vectors of one length. Throws when a single vector cannot fit.
 */
export function vectorFrames (embeddings: Float32Array[], maxFrameBytes: number): pb.EmbedFrame[] {
  const frames: pb.EmbedFrame[] = []
  let i = 0
  while (i < embeddings.length) {
    const dims = embeddings[i].length
    const perFrame = Math.floor((maxFrameBytes - FRAME_OVERHEAD) / Math.max(4 * dims, 1))
    if (perFrame < 1) throw new KrillError('TOO_LARGE', `a vector of ${dims} values does not fit in a ${maxFrameBytes}-byte frame`)
    let j = i
    while (j < embeddings.length && j - i < perFrame && embeddings[j].length === dims) j++
    const data = new Uint8Array(4 * dims * (j - i))
    const view = new DataView(data.buffer)
    let at = 0
    for (let k = i; k < j; k++) {
      for (const v of embeddings[k]) { view.setFloat32(at, v, true); at += 4 }
    }
    frames.push({ vectors: { firstIndex: i, dimensions: dims, data } })
    i = j
  }
  return frames
}

/** The vectors of one Vectors frame; throws on a frame that cannot be right. */
export function vectorsFromPb (v: pb.EmbedFrame.Vectors, maxDimensions: number): Float32Array[] {
  if (v.dimensions < 1 || v.dimensions > maxDimensions) throw new Error(`vectors of ${v.dimensions} values`)
  if (v.data.byteLength === 0 || v.data.byteLength % (4 * v.dimensions) !== 0) throw new Error(`${v.data.byteLength} bytes are not whole vectors of ${v.dimensions} values`)
  const view = new DataView(v.data.buffer, v.data.byteOffset, v.data.byteLength)
  const count = v.data.byteLength / (4 * v.dimensions)
  const out: Float32Array[] = []
  for (let k = 0; k < count; k++) {
    const vec = new Float32Array(v.dimensions)
    for (let d = 0; d < v.dimensions; d++) vec[d] = view.getFloat32((k * v.dimensions + d) * 4, true)
    out.push(vec)
  }
  return out
}

