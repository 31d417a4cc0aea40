/**
 * Validation of chat requests, from the wire (decodeChatRequest) or from anywhere
 * else (validateChatRequest, e.g. an HTTP body already mapped to the engine shape).
 * Every failure is a KrillError BAD_REQUEST (or TOO_LARGE) whose message says
 * exactly what is wrong, so the remote user can fix it.
 */
import { reader } from 'protons-runtime'
import { CHAT_OPTION_KEYS } from '../engine/types.js'
import { KrillError } from '../errors.js'
import { modelNameProblem, normalizeDigest } from '../models/index.js'
import { requestFromPb } from './frames.js'
import * as pb from './generated/chat.js'
import { resolveLimits } from '../limits/index.js'
import { clampForServing } from './serving-clamps.js'
import type { ChatMessage, ChatOptions, ChatRequest, Role, Think, ToolCall } from '../engine/types.js'
import type { Limits } from '../limits/index.js'
import type { Uint8ArrayList } from 'uint8arraylist'

const MAX_TOOL_NAME_CHARS = 256
/**
 * Nesting of JSON values (format schemas, tool definitions, tool call arguments).
 * Real schemas nest a few levels; parsing is iterative and survives any depth, but
 * JSON.stringify (forwarding to a peer, sending to Ollama) recurses and would
 * overflow the stack on a few hundred thousand levels.
 */
export const MAX_JSON_DEPTH = 64

const ROLES: readonly Role[] = ['system', 'user', 'assistant', 'tool']
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/
const INT32_MAX = 2 ** 31 - 1
const GO_DURATION_RE = /^[-+]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))*$/
const NUMBER_RE = /^-?\d+(\.\d+)?$/

/** Wire field numbers of `Options` in protocols/chat.proto, by option key. */
export const OPTION_FIELD_NUMBERS: Readonly<Record<keyof ChatOptions, number>> = Object.freeze({
  temperature: 1,
  top_p: 2,
  top_k: 3,
  seed: 4,
  stop: 5,
  num_predict: 6,
  num_ctx: 7,
  repeat_penalty: 8,
  presence_penalty: 9,
  frequency_penalty: 10,
  min_p: 11
})
const KNOWN_OPTION_FIELDS = new Set(Object.values(OPTION_FIELD_NUMBERS))
/** field number of `options` in ChatRequest */
const REQUEST_OPTIONS_FIELD = 4

function bad (message: string): KrillError {
  return new KrillError('BAD_REQUEST', message)
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function quote (value: string, max = 64): string {
  return JSON.stringify(value.length > max ? value.slice(0, max) + '…' : value)
}

export function validateModelName (name: unknown, limits: Pick<Limits, 'maxModelNameChars'> = resolveLimits()): string {
  if (typeof name !== 'string') throw bad('model is required')
  // Ollama's rule (src/models), the same one announcements are checked against
  const problem = modelNameProblem(name, limits.maxModelNameChars)
  if (problem != null) throw bad(problem)
  return name
}

/** Returns the digest in the form Ollama lists it: 64 lowercase hex digits, no prefix. */
export function validateDigest (digest: unknown): string | undefined {
  if (digest == null || digest === '') return undefined
  const normalized = typeof digest === 'string' ? normalizeDigest(digest) : undefined
  if (normalized == null) throw bad('digest must be 64 hex digits (sha256 of the model manifest)')
  return normalized
}

function checkString (value: unknown, what: string, maxChars: number): string {
  if (typeof value !== 'string') throw bad(`${what} must be a string`)
  if (value.length > maxChars) throw bad(`${what} is longer than ${maxChars} characters`)
  // lone surrogates (from broken UTF-8 on the wire, or \ud800 in JSON) cannot be encoded
  // again as they are; replace them with U+FFFD so what we forward is what we checked
  return value.isWellFormed() ? value : value.toWellFormed()
}

/** Throws BAD_REQUEST when `value` nests deeper than MAX_JSON_DEPTH; iterative, so any depth is safe to check. */
function checkDepth (value: unknown, what: string): void {
  const stack: Array<[unknown, number]> = [[value, 1]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number]
    if (v === null || typeof v !== 'object') continue
    if (depth > MAX_JSON_DEPTH) throw bad(`${what} is nested more than ${MAX_JSON_DEPTH} levels deep`)
    for (const child of Object.values(v)) stack.push([child, depth + 1])
  }
}

function validateToolCall (call: unknown, what: string): ToolCall {
  if (!isPlainObject(call) || !isPlainObject(call.function)) throw bad(`${what} must be {function: {name, arguments}}`)
  const name = checkString(call.function.name, `${what}.function.name`, MAX_TOOL_NAME_CHARS)
  if (name === '') throw bad(`${what}.function.name is empty`)
  const args = call.function.arguments ?? {}
  if (!isPlainObject(args)) throw bad(`${what}.function.arguments must be an object`)
  checkDepth(args, `${what}.function.arguments`)
  return { function: { name, arguments: args } }
}

function validateMessage (m: unknown, i: number, limits: Limits): ChatMessage {
  const what = `messages[${i}]`
  if (!isPlainObject(m)) throw bad(`${what} must be an object`)
  if (typeof m.role !== 'string' || !ROLES.includes(m.role as Role)) {
    throw bad(`${what}.role must be one of ${ROLES.join(', ')}, got ${quote(String(m.role))}`)
  }
  const out: ChatMessage = {
    role: m.role as Role,
    content: checkString(m.content ?? '', `${what}.content`, limits.maxMessageChars)
  }
  if (m.images != null) {
    if (!Array.isArray(m.images)) throw bad(`${what}.images must be an array`)
    if (m.images.length > limits.maxImagesPerMessage) {
      throw bad(`${what} has ${m.images.length} images, more than ${limits.maxImagesPerMessage}`)
    }
    out.images = m.images.map((img, j) => {
      if (typeof img !== 'string' || img.length % 4 !== 0 || !BASE64_RE.test(img)) {
        throw bad(`${what}.images[${j}] is not base64`)
      }
      return img
    })
    if (out.images.length === 0) delete out.images
  }
  if (m.thinking != null && m.thinking !== '') out.thinking = checkString(m.thinking, `${what}.thinking`, limits.maxMessageChars)
  if (m.toolCalls != null) {
    if (!Array.isArray(m.toolCalls)) throw bad(`${what}.toolCalls must be an array`)
    if (m.toolCalls.length > limits.maxToolCallsPerMessage) {
      throw bad(`${what} has ${m.toolCalls.length} tool calls, more than ${limits.maxToolCallsPerMessage}`)
    }
    if (m.toolCalls.length > 0) out.toolCalls = m.toolCalls.map((c, j) => validateToolCall(c, `${what}.tool_calls[${j}]`))
  }
  if (m.toolName != null && m.toolName !== '') out.toolName = checkString(m.toolName, `${what}.tool_name`, MAX_TOOL_NAME_CHARS)
  return out
}

type NumberRule = { integer?: boolean, min: number, max: number }
const OPTION_RULES: Record<Exclude<keyof ChatOptions, 'stop'>, NumberRule> = {
  temperature: { min: 0, max: 100 },
  top_p: { min: 0, max: 1 },
  min_p: { min: 0, max: 1 },
  top_k: { integer: true, min: 0, max: INT32_MAX },
  seed: { integer: true, min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
  num_predict: { integer: true, min: -2, max: INT32_MAX },
  num_ctx: { integer: true, min: 1, max: INT32_MAX },
  repeat_penalty: { min: 0, max: 100 },
  presence_penalty: { min: -100, max: 100 },
  frequency_penalty: { min: -100, max: 100 }
}

export function validateOptions (options: unknown, limits: Limits = resolveLimits()): ChatOptions {
  if (!isPlainObject(options)) throw bad('options must be an object')
  const out: ChatOptions = {}
  for (const [key, value] of Object.entries(options)) {
    if (!(CHAT_OPTION_KEYS as readonly string[]).includes(key)) {
      throw bad(`unknown option ${quote(key)}; allowed options: ${CHAT_OPTION_KEYS.join(', ')}`)
    }
    if (value === undefined) continue
    if (key === 'stop') {
      if (!Array.isArray(value)) throw bad('option stop must be an array of strings')
      if (value.length > limits.maxStopSequences) throw bad(`option stop has more than ${limits.maxStopSequences} sequences`)
      out.stop = value.map((s, i) => {
        const text = checkString(s, `option stop[${i}]`, limits.maxStopChars)
        if (text === '') throw bad(`option stop[${i}] is empty`)
        return text
      })
      continue
    }
    const rule = OPTION_RULES[key as keyof typeof OPTION_RULES]
    if (typeof value !== 'number' || !Number.isFinite(value)) throw bad(`option ${key} must be a number`)
    if (rule.integer === true && !Number.isInteger(value)) throw bad(`option ${key} must be an integer`)
    if (value < rule.min || value > rule.max) throw bad(`option ${key} must be between ${rule.min} and ${rule.max}, got ${value}`)
    out[key as keyof typeof OPTION_RULES] = value
  }
  return out
}

function validateThink (think: unknown): Think {
  if (typeof think === 'boolean' || think === 'low' || think === 'medium' || think === 'high') return think
  throw bad('think must be true, false, "low", "medium" or "high"')
}

export function validateKeepAlive (value: unknown): string | number {
  if (typeof value === 'number' && Number.isFinite(value)) return value
  if (typeof value === 'string') {
    if (NUMBER_RE.test(value)) return Number(value)
    if (value.length <= 64 && GO_DURATION_RE.test(value)) return value
  }
  throw bad('keep_alive must be a number of seconds or a duration like "5m"')
}

/**
 * Checks a request in the engine shape against `limits` and returns a clean copy
 * holding only the fields krill forwards. `input` may come straight from JSON.
 */
export function validateChatRequest (input: unknown, limits: Limits = resolveLimits()): ChatRequest {
  if (!isPlainObject(input)) throw bad('request must be an object')
  const req: ChatRequest = {
    model: validateModelName(input.model, limits),
    messages: []
  }
  const digest = validateDigest(input.digest)
  if (digest != null) req.digest = digest

  if (!Array.isArray(input.messages)) throw bad('messages must be an array')
  if (input.messages.length === 0) throw bad('messages must not be empty')
  if (input.messages.length > limits.maxMessages) {
    throw bad(`too many messages: ${input.messages.length} > ${limits.maxMessages}`)
  }
  req.messages = input.messages.map((m, i) => validateMessage(m, i, limits))

  if (input.options != null) {
    const options = validateOptions(input.options, limits)
    if (Object.keys(options).length > 0) req.options = options
  }
  if (input.format != null) {
    if (input.format !== 'json' && !isPlainObject(input.format)) throw bad('format must be "json" or a JSON schema object')
    checkDepth(input.format, 'format')
    req.format = input.format
  }
  if (input.tools != null) {
    if (!Array.isArray(input.tools)) throw bad('tools must be an array')
    if (input.tools.length > limits.maxTools) throw bad(`too many tools: ${input.tools.length} > ${limits.maxTools}`)
    req.tools = input.tools.map((t, i) => {
      if (!isPlainObject(t)) throw bad(`tools[${i}] must be an object`)
      checkDepth(t, `tools[${i}]`)
      return t
    })
    if (req.tools.length === 0) delete req.tools
  }
  if (input.think != null) req.think = validateThink(input.think)
  if (input.keepAlive != null) req.keepAlive = validateKeepAlive(input.keepAlive)
  return req
}

/**
 * Field numbers inside ChatRequest.options that protocols/chat.proto does not
 * define. The generated decoder skips unknown fields silently; krill must not
 * (known option keys only), so this walks the raw bytes.
 */
export function findUnknownOptionFields (bytes: Uint8Array): number[] {
  const unknown: number[] = []
  forEachField(bytes, (field, wireType, start, end) => {
    if (field !== REQUEST_OPTIONS_FIELD || wireType !== 2) return
    forEachField(bytes.subarray(start, end), (optionField) => {
      if (!KNOWN_OPTION_FIELDS.has(optionField) && !unknown.includes(optionField)) unknown.push(optionField)
    })
  })
  return unknown
}

/**
 * Walks the top-level fields of a protobuf message with the reader the generated
 * decoder uses (protons-runtime); stops quietly at malformed input.
 */
export function forEachField (buf: Uint8Array, visit: (field: number, wireType: number, start: number, end: number) => void): void {
  const fields: Array<[field: number, wireType: number, start: number, end: number]> = []
  const r = reader(buf)
  try {
    while (r.pos < r.len) {
      const tag = r.uint32()
      const wireType = tag & 7
      // groups (3, 4) are not used by krill's messages: treat as malformed
      if (wireType !== 0 && wireType !== 1 && wireType !== 2 && wireType !== 5) break
      let start = r.pos
      if (wireType === 2) {
        const length = r.uint32()
        start = r.pos
        r.skip(length)
      } else {
        r.skipType(wireType)
      }
      if (r.pos > r.len) break
      fields.push([tag >>> 3, wireType, start, r.pos])
    }
  } catch { /* malformed from here on: what was read stands */ }
  for (const [field, wireType, start, end] of fields) visit(field, wireType, start, end)
}

/**
 * Decodes and validates a ChatRequest received from a peer (the frame payload,
 * without its length prefix). Throws KrillError BAD_REQUEST on anything wrong.
 */
export function decodeChatRequest (payload: Uint8Array | Uint8ArrayList, limits: Limits = resolveLimits()): ChatRequest {
  const bytes = payload instanceof Uint8Array ? payload : payload.subarray()
  let msg: pb.ChatRequest
  try {
    msg = pb.ChatRequest.decode(bytes, {
      limits: {
        messages: limits.maxMessages,
        tools: limits.maxTools,
        messages$: { images: limits.maxImagesPerMessage, toolCalls: limits.maxToolCallsPerMessage },
        options: { stop: limits.maxStopSequences }
      }
    })
  } catch (err) {
    if ((err as Error).name === 'MaxLengthError') throw bad(`request exceeds a limit: ${(err as Error).message}`)
    throw bad('request is not a valid ChatRequest protobuf')
  }
  const unknownFields = findUnknownOptionFields(bytes)
  if (unknownFields.length > 0) {
    throw bad(`unknown option field ${unknownFields.map(n => `#${n}`).join(', ')} in ChatRequest.options; allowed options: ${CHAT_OPTION_KEYS.join(', ')}`)
  }
  return clampForServing(validateChatRequest(requestFromPb(msg), limits), limits)
}
