/**
 * Conversions between the engine's shapes (src/engine/types.ts) and the generated
 * protobuf types (src/protocol/generated/chat.ts), plus frame encode/decode.
 * Nothing here enforces limits or value ranges; validate.ts does that.
 */
import * as varint from 'uint8-varint'
import { ErrorCode, KrillError, errorCodeName } from '../errors.js'
import * as pb from './generated/chat.js'
import type { ErrorCodeName } from '../errors.js'
import type { ChatEvent, ChatMessage, ChatOptions, ChatRequest, Think, ToolCall, Usage } from '../engine/types.js'
import type { Uint8ArrayList } from 'uint8arraylist'

export type DeltaEvent = Extract<ChatEvent, { type: 'delta' }>
export type DoneEvent = Extract<ChatEvent, { type: 'done' }>

/** Longest error message put on the wire; longer ones are cut. */
export const MAX_ERROR_MESSAGE_CHARS = 2048

// ---- request --------------------------------------------------------------

export function thinkToWire (think: Think): string {
  return typeof think === 'boolean' ? String(think) : think
}

/** "" means unset; unknown strings pass through for validate.ts to reject with a clear message. */
export function thinkFromWire (value: string): Think | undefined {
  switch (value) {
    case '': return undefined
    case 'true': return true
    case 'false': return false
    default: return value as Think
  }
}

export function keepAliveToWire (value: string | number): string {
  return String(value)
}

/** A plain number is seconds and becomes a number again (Ollama's JSON API takes both). */
export function keepAliveFromWire (value: string): string | number {
  return /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value
}

function parseJsonObject (text: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new KrillError('BAD_REQUEST', `${what} is not valid JSON`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new KrillError('BAD_REQUEST', `${what} must be a JSON object`)
  }
  return value as Record<string, unknown>
}

export function toolCallToPb (call: ToolCall): pb.ToolCall {
  return { name: call.function.name, arguments: JSON.stringify(call.function.arguments ?? {}) }
}

export function toolCallFromPb (call: pb.ToolCall, what = 'tool call'): ToolCall {
  const args = call.arguments === '' ? {} : parseJsonObject(call.arguments, `${what} arguments`)
  return { function: { name: call.name, arguments: args } }
}

function base64ToBytes (b64: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(b64, 'base64'))
}

function bytesToBase64 (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

export function messageToPb (m: ChatMessage): pb.Message {
  return {
    role: m.role,
    content: m.content,
    images: (m.images ?? []).map(base64ToBytes),
    thinking: m.thinking,
    toolCalls: (m.toolCalls ?? []).map(toolCallToPb),
    toolName: m.toolName
  }
}

export function optionsToPb (o: ChatOptions): pb.Options {
  return {
    temperature: o.temperature,
    topP: o.top_p,
    topK: o.top_k,
    seed: o.seed,
    stop: o.stop ?? [],
    numPredict: o.num_predict,
    numCtx: o.num_ctx,
    repeatPenalty: o.repeat_penalty,
    presencePenalty: o.presence_penalty,
    frequencyPenalty: o.frequency_penalty,
    minP: o.min_p
  }
}

export function optionsFromPb (o: pb.Options): ChatOptions {
  const out: ChatOptions = {}
  if (o.temperature != null) out.temperature = o.temperature
  if (o.topP != null) out.top_p = o.topP
  if (o.topK != null) out.top_k = o.topK
  if (o.seed != null) out.seed = o.seed
  if (o.stop.length > 0) out.stop = [...o.stop]
  if (o.numPredict != null) out.num_predict = o.numPredict
  if (o.numCtx != null) out.num_ctx = o.numCtx
  if (o.repeatPenalty != null) out.repeat_penalty = o.repeatPenalty
  if (o.presencePenalty != null) out.presence_penalty = o.presencePenalty
  if (o.frequencyPenalty != null) out.frequency_penalty = o.frequencyPenalty
  if (o.minP != null) out.min_p = o.minP
  return out
}

export function requestToPb (req: ChatRequest): pb.ChatRequest {
  return {
    model: req.model,
    digest: req.digest,
    messages: req.messages.map(messageToPb),
    options: req.options == null ? undefined : optionsToPb(req.options),
    format: req.format == null ? undefined : (req.format === 'json' ? 'json' : JSON.stringify(req.format)),
    tools: (req.tools ?? []).map(t => JSON.stringify(t)),
    think: req.think == null ? undefined : thinkToWire(req.think),
    keepAlive: req.keepAlive == null ? undefined : keepAliveToWire(req.keepAlive)
  }
}

export function encodeRequest (req: ChatRequest): Uint8Array {
  return pb.ChatRequest.encode(requestToPb(req))
}

/**
 * Structural conversion of a decoded request; throws KrillError BAD_REQUEST only
 * when a JSON-carrying field does not parse. Validate the result (validate.ts).
 */
export function requestFromPb (msg: pb.ChatRequest): ChatRequest {
  const req: ChatRequest = {
    model: msg.model,
    messages: msg.messages.map((m, i) => {
      const out: ChatMessage = { role: m.role as ChatMessage['role'], content: m.content }
      if (m.images.length > 0) out.images = m.images.map(bytesToBase64)
      if (m.thinking != null && m.thinking !== '') out.thinking = m.thinking
      if (m.toolCalls.length > 0) {
        out.toolCalls = m.toolCalls.map((c, j) => toolCallFromPb(c, `messages[${i}].tool_calls[${j}]`))
      }
      if (m.toolName != null && m.toolName !== '') out.toolName = m.toolName
      return out
    })
  }
  if (msg.digest != null && msg.digest !== '') req.digest = msg.digest
  if (msg.options != null) {
    const options = optionsFromPb(msg.options)
    if (Object.keys(options).length > 0) req.options = options
  }
  if (msg.format != null && msg.format !== '') {
    req.format = msg.format === 'json' ? 'json' : parseJsonObject(msg.format, 'format')
  }
  if (msg.tools.length > 0) req.tools = msg.tools.map((t, i) => parseJsonObject(t, `tools[${i}]`))
  if (msg.think != null) {
    const think = thinkFromWire(msg.think)
    if (think !== undefined) req.think = think
  }
  if (msg.keepAlive != null && msg.keepAlive !== '') req.keepAlive = keepAliveFromWire(msg.keepAlive)
  return req
}

// ---- response frames ------------------------------------------------------

export function acceptedFrame (queuePosition: number, modelDigest: string): pb.ChatFrame {
  return { accepted: { queuePosition, modelDigest } }
}

export function deltaFrame (delta: DeltaEvent): pb.ChatFrame {
  return {
    delta: {
      content: delta.content ?? '',
      thinking: delta.thinking ?? '',
      toolCalls: (delta.toolCalls ?? []).map(toolCallToPb)
    }
  }
}

/** `receipt`: an encoded SignedReceipt (protocols/receipt.proto), signed by us as provider. */
export function doneFrame (usage: Usage, receipt?: Uint8Array): pb.ChatFrame {
  const n = (x: number): number => Number.isFinite(x) && x > 0 ? Math.round(x) : 0
  return {
    done: {
      doneReason: usage.doneReason,
      promptEvalCount: n(usage.promptTokens),
      evalCount: n(usage.completionTokens),
      totalDuration: n(usage.totalDurationNs),
      loadDuration: n(usage.loadDurationNs),
      promptEvalDuration: n(usage.promptEvalDurationNs),
      evalDuration: n(usage.evalDurationNs),
      receipt: (receipt ?? new Uint8Array(0)) as Uint8Array<ArrayBuffer>
    }
  }
}

export function errorFrame (code: ErrorCodeName, message: string): pb.ChatFrame {
  const text = message.length > MAX_ERROR_MESSAGE_CHARS ? message.slice(0, MAX_ERROR_MESSAGE_CHARS - 1) + '…' : message
  return { error: { code: ErrorCode[code], message: text } }
}

export function encodeFrame (frame: pb.ChatFrame): Uint8Array {
  const d = frame.delta
  // the answer's tokens, one frame each: by hand (the same bytes protons writes,
  // checked in protocol-frames.test.ts) at about a third of protons' cost
  if (d != null && d.thinking === '' && d.toolCalls.length === 0 && frame.accepted == null && frame.done == null && frame.error == null) return encodeContentDelta(d.content)
  return pb.ChatFrame.encode(frame)
}

/** ChatFrame { delta: Delta { content } }: tag 2 (delta), its length, tag 1 (content), its length, UTF-8 */
export function encodeContentDelta (content: string): Uint8Array {
  const n = Buffer.byteLength(content, 'utf8')
  if (n === 0) return Uint8Array.of(0x12, 0x00)
  const inner = 1 + varint.encodingLength(n) + n
  const out = Buffer.allocUnsafe(1 + varint.encodingLength(inner) + inner)
  let at = 0
  out[at++] = 0x12
  at = writeVarint(out, at, inner)
  out[at++] = 0x0a
  at = writeVarint(out, at, n)
  out.write(content, at, 'utf8')
  return out
}

/** writes `n` as a protobuf varint at `at`; returns the offset after it */
export function writeVarint (out: Uint8Array, at: number, n: number): number {
  varint.encode(n, out, at)
  return at + varint.encodingLength(n)
}

export function decodeFrame (bytes: Uint8Array | Uint8ArrayList): pb.ChatFrame {
  const buf = bytes instanceof Uint8Array ? bytes : bytes.subarray()
  return decodeContentDelta(buf) ?? pb.ChatFrame.decode(buf)
}

/**
 * The answer's tokens, read by hand: a frame that is exactly ChatFrame{delta{content}}
 * as encodeContentDelta (and protons) writes it, or undefined for anything else
 * (other fields, other orders, unknown fields: protons decodes those).
 */
export function decodeContentDelta (buf: Uint8Array): pb.ChatFrame | undefined {
  const content = contentDeltaText(buf)
  return content === undefined ? undefined : { delta: { content, thinking: '', toolCalls: [] } }
}

/**
 * The text of a frame that is exactly ChatFrame{delta{content}} (see
 * decodeContentDelta), else undefined: the consumer turns it into its event
 * without the frame's objects in between.
 */
export function contentDeltaText (buf: Uint8Array): string | undefined {
  const end = buf.byteLength
  if (end < 2 || buf[0] !== 0x12) return undefined
  // the two lengths read inline (no object per varint): this runs once per token
  let at = 1
  let outer = 0
  for (let scale = 1, i = 0; ; i++, scale *= 128) {
    if (i === 5 || at >= end) return undefined
    const b = buf[at++]
    outer += (b & 0x7f) * scale
    if (b < 0x80) break
  }
  if (at + outer !== end) return undefined
  if (outer === 0) return ''
  if (buf[at++] !== 0x0a) return undefined
  let inner = 0
  for (let scale = 1, i = 0; ; i++, scale *= 128) {
    if (i === 5 || at >= end) return undefined
    const b = buf[at++]
    inner += (b & 0x7f) * scale
    if (b < 0x80) break
  }
  if (at + inner !== end) return undefined
  return utf8(buf, at, end)
}

/** Buffer's own UTF-8 decoder on any Uint8Array, without making a Buffer view first (half the cost for a token) */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (this: Uint8Array, start: number, end: number) => string }).utf8Slice
function utf8 (buf: Uint8Array, start: number, end: number): string {
  return utf8Slice != null ? utf8Slice.call(buf, start, end) : Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('utf8')
}

export function deltaFromPb (d: pb.ChatFrame.Delta): DeltaEvent {
  const out: DeltaEvent = { type: 'delta' }
  if (d.content !== '') out.content = d.content
  if (d.thinking !== '') out.thinking = d.thinking
  if (d.toolCalls.length > 0) out.toolCalls = d.toolCalls.map(c => toolCallFromPb(c))
  return out
}

export function usageFromPb (d: pb.ChatFrame.Done): Usage {
  return {
    doneReason: d.doneReason,
    promptTokens: d.promptEvalCount,
    completionTokens: d.evalCount,
    totalDurationNs: d.totalDuration,
    loadDurationNs: d.loadDuration,
    promptEvalDurationNs: d.promptEvalDuration,
    evalDurationNs: d.evalDuration
  }
}

/** The error a client raises for an Error frame from `peer`. */
export function errorFromPb (e: pb.ChatFrame.Error, peer: string): KrillError {
  const code = errorCodeName(e.code)
  const known = Object.values(ErrorCode).includes(e.code as never)
  const detail = known ? e.message : `unknown error code ${e.code}: ${e.message}`
  return new KrillError(code, `peer ${peer}: ${detail}`, { peer })
}

/** Splits text into pieces of at most `units` UTF-16 code units, never inside a surrogate pair. */
function chunkText (text: string, units: number): string[] {
  const out: string[] = []
  let i = 0
  while (i < text.length) {
    let end = Math.min(i + units, text.length)
    const last = text.charCodeAt(end - 1)
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--
    out.push(text.slice(i, end))
    i = end
  }
  return out
}

/**
 * Splits a delta whose frame would exceed `maxFrameBytes` into several deltas that
 * each fit, preserving order (thinking, then content, then tool calls). Throws
 * KrillError TOO_LARGE when a single tool call cannot fit in one frame.
 */
export function splitDelta (delta: DeltaEvent, maxFrameBytes: number): DeltaEvent[] {
  // the usual token fits by far: bound its size instead of encoding it twice (once
  // here, once to send it) — a UTF-16 code unit is at most 3 UTF-8 bytes, and two
  // strings inside two messages take at most 4 tag bytes and 4 × 5 length bytes
  if (delta.toolCalls == null || delta.toolCalls.length === 0) {
    if (((delta.content?.length ?? 0) + (delta.thinking?.length ?? 0)) * 3 + 24 <= maxFrameBytes) return [delta]
  }
  if (encodeFrame(deltaFrame(delta)).byteLength <= maxFrameBytes) return [delta]
  // one UTF-16 code unit is at most 3 UTF-8 bytes; leave room for tags and lengths
  const units = Math.max(1, Math.floor((maxFrameBytes - 32) / 3))
  const out: DeltaEvent[] = []
  for (const piece of chunkText(delta.thinking ?? '', units)) out.push({ type: 'delta', thinking: piece })
  for (const piece of chunkText(delta.content ?? '', units)) out.push({ type: 'delta', content: piece })
  for (const call of delta.toolCalls ?? []) {
    const d: DeltaEvent = { type: 'delta', toolCalls: [call] }
    if (encodeFrame(deltaFrame(d)).byteLength > maxFrameBytes) {
      throw new KrillError('TOO_LARGE', `a tool call of "${call.function.name.slice(0, 64)}" does not fit in a ${maxFrameBytes}-byte frame`)
    }
    out.push(d)
  }
  return out
}
