import { describe, expect, it } from 'vitest'
import type { ProviderEntry } from '../../src/discovery/types.js'
import type { ModelInfo } from '../../src/engine/types.js'
import { Backoff } from '../../src/router/backoff.js'
import { PartialAnswer, continuationRequest, mergeUsage } from '../../src/router/continuation.js'
import { candidateFromEntry, freeCapacity, rankCandidates, type Candidate, type RankContext } from '../../src/router/rank.js'

const DIGEST_A = 'a'.repeat(64)
const DIGEST_B = 'b'.repeat(64)

function model (digest = DIGEST_A): ModelInfo {
  return { name: 'llama3.2:1b', digest, size: 1_321_098_329, family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', contextLength: 131_072 }
}

function entry (peerId: string, opts: { slots?: number, active?: number, queued?: number, digest?: string, source?: 'gossip' | 'dht' } = {}): ProviderEntry {
  const now = Date.now()
  return {
    peerId,
    model: opts.source === 'dht' ? { ...model(''), size: 0, family: '', parameterSize: '', quantization: '', contextLength: 0 } : model(opts.digest),
    capacity: { slots: opts.slots ?? 2, active: opts.active ?? 0, queued: opts.queued ?? 0 },
    version: 'krill/0.1.0',
    source: opts.source ?? 'gossip',
    receivedAt: now,
    expiresAt: now + 60_000
  }
}

function ctx (over: Partial<RankContext> = {}): RankContext {
  return {
    latencyMs: () => 10,
    inflight: () => 0,
    backoffUntil: () => 0,
    now: 1_000_000,
    random: () => 0.5,
    ...over
  }
}

const ids = (cs: Candidate[]): string[] => cs.map(c => c.peerId)

describe('rankCandidates', () => {
  it('puts more free capacity first, counting active and queued', () => {
    const cs = [
      entry('busy', { slots: 4, active: 4, queued: 1 }),
      entry('half', { slots: 4, active: 2 }),
      entry('idle', { slots: 4 })
    ].map(candidateFromEntry)
    expect(ids(rankCandidates(cs, ctx()))).toEqual(['idle', 'half', 'busy'])
  })

  it('breaks capacity ties by measured latency, and treats unmeasured peers as far', () => {
    const cs = ['far', 'near', 'unknown'].map(p => candidateFromEntry(entry(p)))
    const rtt: Record<string, number | undefined> = { far: 80, near: 3, unknown: undefined }
    expect(ids(rankCandidates(cs, ctx({ latencyMs: p => rtt[p] })))).toEqual(['near', 'far', 'unknown'])
  })

  it('counts the requests this node already runs on a peer against its capacity', () => {
    const cs = [entry('p1', { slots: 2 }), entry('p2', { slots: 2 })].map(candidateFromEntry)
    const inflight: Record<string, number> = { p1: 2, p2: 0 }
    expect(ids(rankCandidates(cs, ctx({ inflight: p => inflight[p] ?? 0 })))).toEqual(['p2', 'p1'])
    expect(freeCapacity(cs[0], 2)).toBe(0)
  })

  it('does not count our chats twice once an announcement includes them', () => {
    const announced = entry('p1', { slots: 4, active: 2 })
    const [p1, p2] = [announced, entry('p2', { slots: 4, active: 1 })].map(candidateFromEntry)
    expect(p1.capacityAt).toBe(announced.receivedAt)
    // two chats on p1: one started before its announcement (already in active=2), one after
    const started = [announced.receivedAt - 10, announced.receivedAt + 10]
    const seen: Array<number | undefined> = []
    const inflight = (peer: string, since?: number): number => {
      seen.push(since)
      return peer === 'p1' ? started.filter(t => since == null || t >= since).length : 0
    }
    // p1: 4 - 2 - 1 = 1 free; p2: 4 - 1 = 3 free
    expect(ids(rankCandidates([p1, p2], ctx({ inflight })))).toEqual(['p2', 'p1'])
    expect(seen).toContain(announced.receivedAt)
    expect(freeCapacity(p1, inflight('p1', p1.capacityAt))).toBe(1)
  })

  it('spreads load between equals with the random tiebreak', () => {
    const cs = ['p1', 'p2', 'p3'].map(p => candidateFromEntry(entry(p)))
    const firsts = new Set<string>()
    let seed = 1
    const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
    for (let i = 0; i < 60; i++) firsts.add(rankCandidates(cs, ctx({ random }))[0].peerId)
    expect(firsts).toEqual(new Set(['p1', 'p2', 'p3']))
  })

  it('treats latencies within one bucket as equal so they share the load', () => {
    const cs = ['p1', 'p2'].map(p => candidateFromEntry(entry(p)))
    const rtt: Record<string, number> = { p1: 1.1, p2: 1.3 }
    const seq = [0.9, 0.1]
    let i = 0
    const ranked = rankCandidates(cs, ctx({ latencyMs: p => rtt[p], random: () => seq[i++ % 2] }))
    expect(ids(ranked)).toEqual(['p2', 'p1'])
  })

  it('tries peers in backoff last, but still tries them', () => {
    const cs = [entry('failed', { slots: 8 }), entry('ok', { slots: 1 })].map(candidateFromEntry)
    const ranked = rankCandidates(cs, ctx({ backoffUntil: p => p === 'failed' ? 1_000_500 : 0 }))
    expect(ids(ranked)).toEqual(['ok', 'failed'])
    const expired = rankCandidates(cs, ctx({ backoffUntil: p => p === 'failed' ? 999_999 : 0 }))
    expect(ids(expired)).toEqual(['failed', 'ok'])
  })

  it('with a pinned digest drops other digests and puts exact matches before unknown (DHT) ones', () => {
    const cs = [
      entry('dht', { source: 'dht' }),
      entry('other', { digest: DIGEST_B, slots: 16 }),
      entry('exact', { digest: DIGEST_A, slots: 1 })
    ].map(candidateFromEntry)
    expect(ids(rankCandidates(cs, ctx({ digest: DIGEST_A })))).toEqual(['exact', 'dht'])
  })

  it('prefers the digest an answer started on without excluding others', () => {
    const cs = [entry('other', { digest: DIGEST_B, slots: 16 }), entry('same', { digest: DIGEST_A, slots: 1 })].map(candidateFromEntry)
    expect(ids(rankCandidates(cs, ctx({ preferDigest: DIGEST_A })))).toEqual(['same', 'other'])
    expect(ids(rankCandidates(cs, ctx()))).toEqual(['other', 'same'])
  })

  it('merges one peer known from gossip and the DHT into the gossip entry', () => {
    const cs = [entry('p1', { source: 'dht' }), entry('p1', { slots: 3 })].map(candidateFromEntry)
    const ranked = rankCandidates(cs, ctx())
    expect(ranked).toHaveLength(1)
    expect(ranked[0]).toMatchObject({ source: 'gossip', digest: DIGEST_A, capacity: { slots: 3 } })
  })

  it('prefers the local engine while it has a free slot, not once it is full', () => {
    const local: Candidate = { peerId: 'self', local: true, model: 'llama3.2:1b', digest: DIGEST_A, capacity: { slots: 1, active: 0, queued: 0 }, source: 'local' }
    const remote = candidateFromEntry(entry('remote', { slots: 8 }))
    expect(ids(rankCandidates([remote, local], ctx()))).toEqual(['self', 'remote'])
    const full = { ...local, capacity: { slots: 1, active: 1, queued: 0 } }
    expect(ids(rankCandidates([full, remote], ctx()))).toEqual(['remote', 'self'])
  })

  it('takes DHT entries as unknown capacity and digest', () => {
    const c = candidateFromEntry(entry('p', { source: 'dht' }))
    expect(c).toMatchObject({ digest: '', capacity: undefined, source: 'dht' })
    expect(freeCapacity(c, 0)).toBe(1)
  })
})

describe('Backoff', () => {
  it('backs off exponentially, capped, and forgets a peer on success', () => {
    let now = 0
    const b = new Backoff({ baseMs: 100, maxMs: 1_000, now: () => now })
    expect(b.until('p')).toBe(0)
    expect(b.fail('p')).toBe(100)
    expect(b.fail('p')).toBe(200)
    expect(b.fail('p')).toBe(400)
    expect(b.fail('p')).toBe(800)
    expect(b.fail('p')).toBe(1_000)
    expect(b.failures('p')).toBe(5)
    b.succeed('p')
    expect(b.until('p')).toBe(0)
    expect(b.fail('p')).toBe(100)
    now = 50
    expect(b.until('p')).toBe(100)
  })

  it('lets the backoff run out ("not forever")', () => {
    let now = 0
    const b = new Backoff({ baseMs: 100, now: () => now })
    b.fail('p')
    now = 99
    expect(b.until('p')).toBe(100)
    now = 100
    expect(b.until('p')).toBe(0)
    // the streak is remembered: failing again right after waits longer
    expect(b.fail('p')).toBe(300)
  })
})

describe('continuation', () => {
  it('asks the next provider to continue the partial assistant message', () => {
    const partial = new PartialAnswer()
    const request = { model: 'llama3', messages: [{ role: 'user' as const, content: 'hi' }], options: { temperature: 0 } }
    expect(continuationRequest(request, partial, 'llama3:latest')).toEqual({ ...request, model: 'llama3:latest' })
    partial.add({ content: 'Hello' })
    partial.add({ thinking: 'hmm' })
    partial.add({ content: ' there' })
    expect(partial.deltas).toBe(3)
    expect(continuationRequest(request, partial, 'llama3:latest')).toEqual({
      model: 'llama3:latest',
      options: { temperature: 0 },
      messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello there', thinking: 'hmm' }]
    })
    expect(request.messages).toHaveLength(1)
  })

  it('moves the earlier tokens from prompt back to completion in the usage', () => {
    const usage = { doneReason: 'stop', promptTokens: 10, completionTokens: 7, totalDurationNs: 5, loadDurationNs: 1, promptEvalDurationNs: 1, evalDurationNs: 3 }
    expect(mergeUsage(usage, 0, 99)).toBe(usage)
    expect(mergeUsage(usage, 4, 99)).toEqual({ ...usage, promptTokens: 6, completionTokens: 11, totalDurationNs: 99 })
  })
})
