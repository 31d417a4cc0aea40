import { describe, expect, it } from 'vitest'
import { KrillError } from '../../src/errors.js'
import { encodeRequest } from '../../src/protocol/frames.js'
import * as pb from '../../src/protocol/generated/chat.js'
import { DEFAULT_LIMITS, resolveLimits } from '../../src/limits/index.js'
import { decodeChatRequest, findUnknownOptionFields, validateChatRequest, validateModelName } from '../../src/protocol/validate.js'
import { encode as encodeVarint } from 'uint8-varint'
import type { ChatRequest } from '../../src/engine/types.js'

const ok: ChatRequest = { model: 'llama3.2:3b', messages: [{ role: 'user', content: 'hi' }] }

function badRequest (fn: () => unknown, pattern: RegExp): void {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(KrillError)
  expect((caught as KrillError).code).toBe('BAD_REQUEST')
  expect((caught as KrillError).message).toMatch(pattern)
}

/** A ChatRequest whose options carry an extra field the schema does not define. */
function withUnknownOptionField (fieldNumber: number): Uint8Array {
  const known = pb.Options.encode({ temperature: 0.5, stop: [] })
  const extra = Uint8Array.from([...encodeVarint(fieldNumber * 8), 1]) // varint field = 1
  const options = Uint8Array.from([...known, ...extra])
  const head = encodeRequest(ok)
  return Uint8Array.from([...head, ...encodeVarint(4 * 8 + 2), ...encodeVarint(options.byteLength), ...options])
}

describe('limits', () => {
  it('has the documented defaults and accepts overrides', () => {
    expect(DEFAULT_LIMITS.maxRequestBytes).toBe(4 * 1024 * 1024)
    expect(DEFAULT_LIMITS.maxMessages).toBe(1000)
    expect(DEFAULT_LIMITS.maxStreamsPerPeer).toBe(8)
    expect(DEFAULT_LIMITS.requestTimeoutMs).toBe(10_000)
    expect(DEFAULT_LIMITS.stallTimeoutMs).toBe(60_000)
    expect(resolveLimits({ maxMessages: 3 }).maxMessages).toBe(3)
    expect(resolveLimits({ maxMessages: 3 }).maxRequestBytes).toBe(DEFAULT_LIMITS.maxRequestBytes)
    expect(() => resolveLimits({ maxMessages: 0 })).toThrow(/positive integer/)
    expect(() => resolveLimits({ nope: 1 } as never)).toThrow(/unknown/)
  })
})

describe('model names', () => {
  it.each(['llama3.2:3b', 'library/qwen:7b-q4_K_M', 'hf.co/user/repo:tag', 'mistral', `${'h'.repeat(100)}/${'n'.repeat(18)}/${'m'.repeat(80)}`])('accepts %s', name => {
    expect(validateModelName(name)).toBe(name)
  })

  it.each(['', ' llama', 'llama 3', 'llama;rm', '../etc/passwd', 'a/../b', '-x', '..', 'x/..', 'a'.repeat(201), 'a'.repeat(81), 'mödel', 'x\n'])('rejects %j', name => {
    badRequest(() => validateModelName(name), /model/)
  })
})

describe('validateChatRequest', () => {
  it('returns a clean copy of a valid request', () => {
    const input = { ...ok, options: { temperature: 0.2, stop: ['x'] }, extra: 'dropped', think: 'high', keepAlive: '10m' }
    expect(validateChatRequest(input)).toEqual({ ...ok, options: { temperature: 0.2, stop: ['x'] }, think: 'high', keepAlive: '10m' })
  })

  it('rejects an unknown option key and names it', () => {
    badRequest(() => validateChatRequest({ ...ok, options: { temperature: 1, num_gpu: 99 } }), /unknown option "num_gpu"/)
  })

  it('checks option types and ranges', () => {
    badRequest(() => validateChatRequest({ ...ok, options: { temperature: '1' } }), /temperature must be a number/)
    badRequest(() => validateChatRequest({ ...ok, options: { top_p: 1.5 } }), /top_p must be between 0 and 1/)
    badRequest(() => validateChatRequest({ ...ok, options: { top_k: 1.5 } }), /top_k must be an integer/)
    badRequest(() => validateChatRequest({ ...ok, options: { num_ctx: 0 } }), /num_ctx/)
    badRequest(() => validateChatRequest({ ...ok, options: { stop: 'x' } }), /stop must be an array/)
    badRequest(() => validateChatRequest({ ...ok, options: { stop: Array(17).fill('x') } }), /more than 16/)
  })

  it('checks messages', () => {
    badRequest(() => validateChatRequest({ ...ok, messages: [] }), /must not be empty/)
    badRequest(() => validateChatRequest({ ...ok, messages: [{ role: 'wizard', content: 'x' }] }), /messages\[0\]\.role must be one of/)
    badRequest(() => validateChatRequest({ ...ok, messages: [{ role: 'user', content: 5 }] }), /messages\[0\]\.content must be a string/)
    badRequest(() => validateChatRequest({ ...ok, messages: [{ role: 'user', content: 'x', images: ['not base64!'] }] }), /images\[0\] is not base64/)
    const limits = resolveLimits({ maxMessages: 2, maxMessageChars: 5 })
    badRequest(() => validateChatRequest({ ...ok, messages: Array(3).fill(ok.messages[0]) }, limits), /too many messages: 3 > 2/)
    badRequest(() => validateChatRequest({ ...ok, messages: [{ role: 'user', content: '123456' }] }, limits), /longer than 5/)
    badRequest(() => validateChatRequest({ ...ok, messages: [{ role: 'assistant', content: '', toolCalls: [{ function: { name: '', arguments: {} } }] }] }), /name is empty/)
  })

  it('checks format, tools, think and keep_alive', () => {
    badRequest(() => validateChatRequest({ ...ok, format: 'yaml' }), /format must be "json" or a JSON schema object/)
    badRequest(() => validateChatRequest({ ...ok, tools: ['x'] }), /tools\[0\] must be an object/)
    badRequest(() => validateChatRequest({ ...ok, think: 'maybe' }), /think must be/)
    badRequest(() => validateChatRequest({ ...ok, keepAlive: 'soon' }), /keep_alive/)
    expect(validateChatRequest({ ...ok, keepAlive: '300' }).keepAlive).toBe(300)
    expect(validateChatRequest({ ...ok, keepAlive: '1h30m' }).keepAlive).toBe('1h30m')
    badRequest(() => validateChatRequest({ ...ok, digest: 'sha256:../../x' }), /digest/)
    badRequest(() => validateChatRequest({ ...ok, digest: 'abc' }), /64 hex digits/)
    expect(validateChatRequest({ ...ok, digest: 'sha256:' + 'AB'.repeat(32) }).digest).toBe('ab'.repeat(32))
  })
})

describe('decodeChatRequest (wire)', () => {
  it('decodes and validates a request from the wire', () => {
    const req: ChatRequest = { ...ok, options: { seed: 7 }, think: true }
    expect(decodeChatRequest(encodeRequest(req))).toEqual(req)
  })

  it('rejects bytes that are not a ChatRequest', () => {
    badRequest(() => decodeChatRequest(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3])), /not a valid ChatRequest/)
  })

  it('rejects unknown option fields on the wire, naming the field number', () => {
    const bytes = withUnknownOptionField(42)
    expect(findUnknownOptionFields(bytes)).toEqual([42])
    expect(findUnknownOptionFields(encodeRequest({ ...ok, options: { temperature: 1, stop: ['x'], min_p: 0.1 } }))).toEqual([])
    badRequest(() => decodeChatRequest(bytes), /unknown option field #42/)
  })

  it('stops decoding oversized repeated fields early', () => {
    const many = encodeRequest({ ...ok, messages: Array(5).fill(ok.messages[0]) })
    badRequest(() => decodeChatRequest(many, resolveLimits({ maxMessages: 4 })), /exceeds a limit/)
  })

  it('rejects an invalid role and an invalid think value from the wire', () => {
    const msg = pb.ChatRequest.decode(encodeRequest(ok))
    badRequest(() => decodeChatRequest(pb.ChatRequest.encode({ ...msg, messages: [{ ...msg.messages[0], role: 'root' }] })), /role/)
    badRequest(() => decodeChatRequest(pb.ChatRequest.encode({ ...msg, think: 'sometimes' })), /think/)
    badRequest(() => decodeChatRequest(pb.ChatRequest.encode({ ...msg, model: 'bad name' })), /model name/)
  })
})
