import { createPeerScoreParams, createPeerScoreThresholds, validatePeerScoreParams, validatePeerScoreThresholds } from '@libp2p/gossipsub/score'
import { describe, expect, it } from 'vitest'
import { ANNOUNCE_TOPIC } from '../../src/discovery/announcer.js'
import { announceScoreParams, ANNOUNCE_SCORE_THRESHOLDS, INVALID_MESSAGE_WEIGHT } from '../../src/discovery/gossip-scoring.js'
import { KrillError } from '../../src/errors.js'
import type { Logger } from '../../src/log.js'
import { BreachLog } from '../../src/protocol/breach-log.js'
import { encodeRequest } from '../../src/protocol/frames.js'
import { DEFAULT_LIMITS, resolveLimits } from '../../src/limits/index.js'
import { decodeChatRequest, MAX_JSON_DEPTH, validateChatRequest } from '../../src/protocol/validate.js'

const base = { model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hi' }] }

function nested (levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { type: 'string' }
  for (let i = 1; i < levels; i++) v = { items: v }
  return v
}

describe('JSON nesting in requests', () => {
  it('accepts schemas up to the limit and refuses deeper ones, in format, tools and tool call arguments', () => {
    expect(() => validateChatRequest({ ...base, format: nested(MAX_JSON_DEPTH) })).not.toThrow()
    expect(() => validateChatRequest({ ...base, format: nested(MAX_JSON_DEPTH + 1) })).toThrow(/format is nested more than 64 levels deep/)
    expect(() => validateChatRequest({ ...base, tools: [{ type: 'function', function: { name: 'f', parameters: nested(100) } }] })).toThrow(/tools\[0\] is nested/)
    const call = { function: { name: 'f', arguments: nested(100) } }
    expect(() => validateChatRequest({ ...base, messages: [{ role: 'assistant', content: '', toolCalls: [call] }] })).toThrow(/tool_calls\[0\]\.function\.arguments is nested/)
  })

  it('refuses a format nested 100 000 levels deep from the wire with BAD_REQUEST, not a stack overflow', () => {
    const bytes = encodeRequest({ model: base.model, messages: [{ role: 'user', content: 'hi' }] })
    const deep = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)
    // append the format field (#5, length-delimited: tag 0x2a), varint length, the text
    const text = new TextEncoder().encode(deep)
    const len: number[] = []
    for (let n = text.byteLength; ; n = Math.floor(n / 128)) { if (n < 128) { len.push(n); break } len.push((n & 0x7f) | 0x80) }
    const withDeep = Uint8Array.from([...bytes, 0x2a, ...len, ...text])
    const err = (() => { try { decodeChatRequest(withDeep) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(KrillError)
    expect((err as KrillError).code).toBe('BAD_REQUEST')
    expect((err as KrillError).message).toMatch(/format is nested more than/)
  })

  it('replaces lone surrogates so a request forwards exactly as it was checked', () => {
    const req = validateChatRequest({ ...base, messages: [{ role: 'user', content: 'a\uD800b' }] })
    expect(req.messages[0].content).toBe('a\uFFFDb')
    expect(decodeChatRequest(encodeRequest(req))).toEqual(req)
  })
})

describe('chat limits', () => {
  it('have defaults for requests per minute and burst, and reject nonsense overrides', () => {
    expect(DEFAULT_LIMITS.requestsPerMinute).toBe(120)
    expect(DEFAULT_LIMITS.requestBurst).toBe(30)
    expect(resolveLimits({ requestsPerMinute: 5 }).requestsPerMinute).toBe(5)
    expect(() => resolveLimits({ requestBurst: 0 })).toThrow(/positive integer/)
  })
})

describe('gossipsub scoring for krill/models/1', () => {
  it('is valid for gossipsub and graylists a peer after three rejected announcements', () => {
    const params = createPeerScoreParams(announceScoreParams())
    expect(() => { validatePeerScoreParams(params) }).not.toThrow()
    expect(() => { validatePeerScoreThresholds(createPeerScoreThresholds(ANNOUNCE_SCORE_THRESHOLDS)) }).not.toThrow()
    const topic = params.topics[ANNOUNCE_TOPIC]
    expect(topic.invalidMessageDeliveriesWeight).toBe(INVALID_MESSAGE_WEIGHT)
    // P4 is squared: 3 rejects × weight must pass the graylist threshold, 1 must not
    expect(3 ** 2 * topic.invalidMessageDeliveriesWeight * topic.topicWeight).toBeLessThan(ANNOUNCE_SCORE_THRESHOLDS.graylistThreshold!)
    expect(1 ** 2 * topic.invalidMessageDeliveriesWeight * topic.topicWeight).toBeGreaterThan(ANNOUNCE_SCORE_THRESHOLDS.publishThreshold!)
    // quiet honest peers are not punished for sending little
    expect(topic.meshMessageDeliveriesWeight).toBe(0)
    expect(topic.meshFailurePenaltyWeight).toBe(0)
    // a swarm on one machine shares 127.0.0.1
    expect(params.IPColocationFactorWhitelist.has('127.0.0.1')).toBe(true)
  })
})

describe('breach log', () => {
  it('logs the first breach of a kind per peer, then sums up repeats once per window', () => {
    const lines: string[] = []
    const log: Logger = { debug: () => {}, info: () => {}, error: () => {}, warn: (m: string) => { lines.push(m) } }
    let now = 0
    const breaches = new BreachLog(log, { windowMs: 1_000, maxKeys: 2, now: () => now })
    for (let i = 0; i < 100; i++) breaches.note('peerA', 'RATE_LIMITED', 'A flooded')
    breaches.note('peerB', 'RATE_LIMITED', 'B flooded')
    expect(lines).toEqual(['A flooded', 'B flooded'])
    now = 1_500
    breaches.note('peerA', 'RATE_LIMITED', 'A flooded')
    expect(lines.at(-1)).toBe('A flooded (and 99 more like it from this peer since the last line)')
    // bounded: a third key pushes out the oldest
    breaches.note('peerC', 'BUSY', 'C')
    breaches.note('peerB', 'RATE_LIMITED', 'B again')
    expect(lines.at(-1)).toBe('B again')
  })
})

describe('protocols/README.md', () => {
  it('states the per-minute limit and the JSON nesting limit the code uses', async () => {
    const { readFile } = await import('node:fs/promises')
    const readme = await readFile(new URL('../../protocols/README.md', import.meta.url), 'utf8')
    expect(readme).toContain(`| chat streams per consumer peer per minute | ${DEFAULT_LIMITS.requestsPerMinute}, bursts of ${DEFAULT_LIMITS.requestBurst} (token bucket) | \`RATE_LIMITED\` |`)
    expect(readme).toContain(`| ${MAX_JSON_DEPTH} levels | \`BAD_REQUEST\` |`)
  })
})
