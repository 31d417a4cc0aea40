import { describe, expect, it } from 'vitest'
import { Uint8ArrayList } from 'uint8arraylist'
import { ErrorCode, KrillError } from '../../src/errors.js'
import {
  acceptedFrame, decodeContentDelta, decodeFrame, deltaFrame, deltaFromPb, doneFrame, encodeContentDelta, encodeFrame, encodeRequest, errorFrame,
  errorFromPb, requestFromPb, requestToPb, splitDelta, usageFromPb
} from '../../src/protocol/frames.js'
import * as pb from '../../src/protocol/generated/chat.js'
import type { ChatRequest, Usage } from '../../src/engine/types.js'

const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 250, 251, 252]).toString('base64')

const full: ChatRequest = {
  model: 'hf.co/user/repo:Q4_K_M',
  digest: 'a'.repeat(64),
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'what is in this picture? ünïcödé 🦐', images: [png] },
    {
      role: 'assistant',
      content: '',
      thinking: 'let me look it up',
      toolCalls: [{ function: { name: 'lookup', arguments: { q: 'shrimp', n: 2, nested: { ok: true } } } }]
    },
    { role: 'tool', content: '{"found":true}', toolName: 'lookup' }
  ],
  options: { temperature: 0, top_p: 0.9, top_k: 40, seed: 2 ** 40, stop: ['</s>', '\n\n'], num_predict: -1, num_ctx: 8192, repeat_penalty: 1.1, presence_penalty: 0, frequency_penalty: -0.5, min_p: 0.05 },
  format: { type: 'object', properties: { answer: { type: 'string' } } },
  tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
  think: 'medium',
  keepAlive: '5m'
}

function roundTrip (req: ChatRequest): ChatRequest {
  return requestFromPb(pb.ChatRequest.decode(encodeRequest(req)))
}

describe('request conversion', () => {
  it('round-trips every field through the wire format', () => {
    expect(roundTrip(full)).toEqual(full)
  })

  it('carries images as raw bytes, not base64 text', () => {
    const msg = requestToPb(full)
    expect(Buffer.from(msg.messages[1].images[0]).toString('base64')).toBe(png)
    expect(msg.messages[1].images[0].byteLength).toBe(10)
  })

  it('keeps an option set to zero apart from an unset option', () => {
    const decoded = pb.ChatRequest.decode(encodeRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], options: { temperature: 0 } }))
    expect(decoded.options?.temperature).toBe(0)
    expect(decoded.options?.topP).toBeUndefined()
    expect(roundTrip({ model: 'm', messages: [{ role: 'user', content: 'x' }], options: { temperature: 0 } }).options).toEqual({ temperature: 0 })
  })

  it('encodes think and keep_alive as documented strings', () => {
    const base = { model: 'm', messages: [{ role: 'user' as const, content: 'x' }] }
    expect(requestToPb({ ...base, think: true }).think).toBe('true')
    expect(requestToPb({ ...base, think: false }).think).toBe('false')
    expect(roundTrip({ ...base, think: false }).think).toBe(false)
    expect(requestToPb({ ...base, keepAlive: 300 }).keepAlive).toBe('300')
    expect(roundTrip({ ...base, keepAlive: -1 }).keepAlive).toBe(-1)
    expect(roundTrip({ ...base, format: 'json' }).format).toBe('json')
    expect(requestToPb({ ...base }).think).toBeUndefined()
  })

  it('rejects JSON fields that do not parse, naming the field', () => {
    const msg = requestToPb({ model: 'm', messages: [{ role: 'user', content: 'x' }] })
    expect(() => requestFromPb({ ...msg, tools: ['{"ok":1}', '{nope'] })).toThrow(/tools\[1\] is not valid JSON/)
    expect(() => requestFromPb({ ...msg, format: '[1,2]' })).toThrow(/format must be a JSON object/)
    const withCall = { ...msg, messages: [{ ...msg.messages[0], toolCalls: [{ name: 'f', arguments: 'null' }] }] }
    expect(() => requestFromPb(withCall)).toThrow(/messages\[0\]\.tool_calls\[0\] arguments must be a JSON object/)
  })
})

describe('response frames', () => {
  const usage: Usage = {
    doneReason: 'length', promptTokens: 12, completionTokens: 34, totalDurationNs: 9_876_543_210, loadDurationNs: 1, promptEvalDurationNs: 2, evalDurationNs: 3
  }

  it('encodes exactly one frame kind per ChatFrame', () => {
    expect(Object.keys(decodeFrame(encodeFrame(acceptedFrame(3, 'abc'))))).toEqual(['accepted'])
    expect(decodeFrame(encodeFrame(acceptedFrame(0, ''))).accepted).toEqual({ queuePosition: 0, modelDigest: '' })
    expect(Object.keys(decodeFrame(encodeFrame(doneFrame(usage))))).toEqual(['done'])
  })

  it('round-trips deltas and usage', () => {
    const delta = { type: 'delta' as const, content: 'Hi', thinking: 'hmm', toolCalls: [{ function: { name: 'f', arguments: { a: [1, 2] } } }] }
    const back = decodeFrame(encodeFrame(deltaFrame(delta)))
    expect(back.delta).toBeDefined()
    expect(deltaFromPb(back.delta as pb.ChatFrame.Delta)).toEqual(delta)
    expect(deltaFromPb(decodeFrame(encodeFrame(deltaFrame({ type: 'delta', content: 'x' }))).delta as pb.ChatFrame.Delta)).toEqual({ type: 'delta', content: 'x' })
    expect(usageFromPb(decodeFrame(encodeFrame(doneFrame(usage))).done as pb.ChatFrame.Done)).toEqual(usage)
  })

  it('maps error codes to the numbers in src/errors.ts and names the peer', () => {
    const frame = decodeFrame(encodeFrame(errorFrame('UNKNOWN_MODEL', 'no such model')))
    expect(frame.error).toEqual({ code: ErrorCode.UNKNOWN_MODEL, message: 'no such model' })
    const err = errorFromPb(frame.error as pb.ChatFrame.Error, '12D3KooWpeer')
    expect(err).toBeInstanceOf(KrillError)
    expect(err.code).toBe('UNKNOWN_MODEL')
    expect(err.peer).toBe('12D3KooWpeer')
    expect(err.message).toContain('12D3KooWpeer')
    const odd = errorFromPb({ code: 999, message: 'future' }, 'p')
    expect(odd.code).toBe('INTERNAL')
    expect(odd.message).toContain('unknown error code 999')
  })

  it('cuts overlong error messages', () => {
    const frame = errorFrame('INTERNAL', 'x'.repeat(10_000))
    expect(frame.error?.message.length).toBeLessThanOrEqual(2048)
  })

  it('splits a delta that would not fit in one frame, in order, without breaking surrogate pairs', () => {
    const content = '🦐'.repeat(3000) + 'end'
    const pieces = splitDelta({ type: 'delta', thinking: 'think'.repeat(500), content }, 1024)
    expect(pieces.length).toBeGreaterThan(2)
    for (const p of pieces) expect(encodeFrame(deltaFrame(p)).byteLength).toBeLessThanOrEqual(1024)
    expect(pieces.map(p => p.thinking ?? '').join('')).toBe('think'.repeat(500))
    expect(pieces.map(p => p.content ?? '').join('')).toBe(content)
    const firstContent = pieces.findIndex(p => p.content != null)
    expect(pieces.slice(firstContent).every(p => p.thinking == null)).toBe(true)
    expect(splitDelta({ type: 'delta', content: 'small' }, 1024)).toEqual([{ type: 'delta', content: 'small' }])
    expect(() => splitDelta({ type: 'delta', toolCalls: [{ function: { name: 'f', arguments: { big: 'x'.repeat(5000) } } }] }, 1024))
      .toThrow(/does not fit/)
  })
})

describe('content deltas encoded by hand', () => {
  it('are byte for byte what protons writes, for every length class and any UTF-8', () => {
    const samples = ['', 'a', ' the', 'ü', '🦐 krill', 'x'.repeat(120), 'y'.repeat(200), 'é'.repeat(70_000), 'z'.repeat(2_100_000)]
    for (const content of samples) {
      const frame = { delta: { content, thinking: '', toolCalls: [] } }
      expect(Buffer.from(encodeContentDelta(content)).equals(Buffer.from(pb.ChatFrame.encode(frame))), `length ${content.length}`).toBe(true)
      expect(Buffer.from(encodeFrame(frame)).equals(Buffer.from(pb.ChatFrame.encode(frame)))).toBe(true)
      expect(decodeFrame(encodeFrame(frame)).delta?.content).toBe(content)
    }
  })

  it('leave deltas with thinking or tool calls to protons', () => {
    const frame = deltaFrame({ type: 'delta', content: 'a', thinking: 'hmm', toolCalls: [{ function: { name: 'f', arguments: { x: 1 } } }] })
    expect(Buffer.from(encodeFrame(frame)).equals(Buffer.from(pb.ChatFrame.encode(frame)))).toBe(true)
  })
})

describe('content deltas decoded by hand', () => {
  it('read what protons reads, and leave every other frame to it', () => {
    const frames: pb.ChatFrame[] = [
      { delta: { content: '', thinking: '', toolCalls: [] } },
      { delta: { content: ' the', thinking: '', toolCalls: [] } },
      { delta: { content: '🦐 ü'.repeat(50_000), thinking: '', toolCalls: [] } },
      { delta: { content: 'a', thinking: 'hmm', toolCalls: [] } },
      deltaFrame({ type: 'delta', toolCalls: [{ function: { name: 'f', arguments: {} } }] }),
      acceptedFrame(0, 'd'.repeat(64)),
      errorFrame('BUSY', 'busy')
    ]
    for (const frame of frames) {
      const bytes = pb.ChatFrame.encode(frame)
      expect(decodeFrame(bytes)).toEqual(pb.ChatFrame.decode(bytes))
      // split across chunks, as frames arrive from a stream
      const list = new Uint8ArrayList(bytes.subarray(0, 1), bytes.subarray(1))
      expect(decodeFrame(list)).toEqual(pb.ChatFrame.decode(bytes))
    }
    // a content delta followed by an unknown field is protons' to read
    const extra = Uint8Array.from([...pb.ChatFrame.encode(frames[1]), 0x28, 0x01])
    expect(decodeContentDelta(extra)).toBeUndefined()
    expect(decodeFrame(extra).delta?.content).toBe(' the')
  })
})
