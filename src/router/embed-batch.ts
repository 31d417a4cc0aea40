/**
 * Splits an embedding batch into requests the embed protocol carries: at most
 * `maxInputs` inputs and `maxRequestBytes` of protobuf each, in order. Every piece is
 * validated as the wire would (BAD_REQUEST for an input over the per-input limit).
 */
import type { EmbedRequest } from '../engine/types.js'
import { DEFAULT_EMBED_LIMITS, type EmbedLimits } from '../limits/index.js'
import { validateEmbedRequest } from '../protocol/embed-wire.js'

/** protobuf overhead of one input (tag plus a length varint of up to 4 bytes) */
const PER_INPUT_BYTES = 5
/** the request's other fields (model, digest, options, keep_alive) */
const REQUEST_HEAD_BYTES = 1024

export function splitEmbedBatch (request: EmbedRequest, limits: EmbedLimits = DEFAULT_EMBED_LIMITS): EmbedRequest[] {
  const pieces: EmbedRequest[] = []
  let inputs: string[] = []
  let bytes = REQUEST_HEAD_BYTES
  const flush = (): void => {
    if (inputs.length === 0) return
    pieces.push(validateEmbedRequest({ ...request, input: inputs }, { ...limits, maxModelNameChars: 200 }))
    inputs = []
    bytes = REQUEST_HEAD_BYTES
  }
  for (const text of request.input) {
    const size = Buffer.byteLength(text) + PER_INPUT_BYTES
    if (inputs.length >= limits.maxInputs || (inputs.length > 0 && bytes + size > limits.maxRequestBytes)) flush()
    inputs.push(text)
    bytes += size
  }
  flush()
  return pieces
}
