import { describe, expect, it } from 'vitest'
import { requestToPb } from '../../src/protocol/frames.js'
import * as pb from '../../src/protocol/generated/chat.js'
import { resolveLimits } from '../../src/limits/index.js'
import { clampForServing, keepAliveSeconds } from '../../src/protocol/serving-clamps.js'
import { decodeChatRequest } from '../../src/protocol/validate.js'
import type { ChatRequest } from '../../src/engine/types.js'

const base: ChatRequest = { model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hi' }] }

describe('what a remote peer may ask of our Ollama', () => {
  it('reads keep_alive the way Ollama does', () => {
    expect(keepAliveSeconds(300)).toBe(300)
    expect(keepAliveSeconds('5m')).toBe(300)
    expect(keepAliveSeconds('1h30m')).toBe(5400)
    expect(keepAliveSeconds('250ms')).toBeCloseTo(0.25)
    expect(keepAliveSeconds(-1)).toBe(Infinity)
    expect(keepAliveSeconds('-1m')).toBe(Infinity)
  })

  it('lowers keep_alive and num_ctx past the limits and leaves the rest alone', () => {
    const limits = { maxKeepAliveSeconds: 1800, maxNumCtx: 8192 }
    expect(clampForServing({ ...base, keepAlive: '24h', options: { num_ctx: 1_000_000, temperature: 0.2 } }, limits))
      .toEqual({ ...base, keepAlive: 1800, options: { num_ctx: 8192, temperature: 0.2 } })
    expect(clampForServing({ ...base, keepAlive: -1 }, limits).keepAlive).toBe(1800)
    const modest = { ...base, keepAlive: '10m', options: { num_ctx: 4096 } }
    expect(clampForServing(modest, limits)).toBe(modest)
  })

  it('applies on the wire: a decoded ChatRequest from a peer is already clamped', () => {
    const limits = resolveLimits({ maxKeepAliveSeconds: 60, maxNumCtx: 2048 })
    const bytes = pb.ChatRequest.encode(requestToPb({ ...base, keepAlive: '2h', options: { num_ctx: 2 ** 31 - 1 } }))
    const decoded = decodeChatRequest(bytes, limits)
    expect(decoded.keepAlive).toBe(60)
    expect(decoded.options?.num_ctx).toBe(2048)
  })
})
