/**
 * Fuzzing the announcement decoder and the gossip topic validator with seeded random
 * and mutated announcements from many authors: never a throw, a verdict for every
 * message within a time bound, and a provider table that only ever holds valid,
 * bounded entries.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { decodeAnnouncement, DEFAULT_ANNOUNCEMENT_LIMITS, encodeAnnouncement, MODEL_NAME_PATTERN, type ValidAnnouncement } from '../../src/discovery/announcement.js'
import { AnnouncementValidator } from '../../src/discovery/announcement-validator.js'
import { ProviderTable } from '../../src/discovery/provider-table.js'
import { heapUsedMiB, hex, mutateBytes, Rng, SEED } from './fuzz.js'

const NOW = 1_750_000_000_000
/**
 * "No hang": one input may take this long at most. Decoding takes well under a
 * millisecond, but a GC pause on a loaded 2-core CI machine can take a few hundred;
 * a real hang (a loop on crafted input) takes far longer than this.
 */
const PER_INPUT_MS = 2_000

function announcement (rng: Rng, seq: number): ValidAnnouncement {
  const models = Array.from({ length: 1 + rng.int(5) }, (_, i) => ({
    name: rng.pick(['llama3.2:1b', 'qwen3:8b', 'hf.co/org/model:Q4_K_M', `m${i}:latest`]),
    digest: rng.int(16).toString(16).repeat(64),
    size: rng.int(2 ** 40),
    family: 'llama',
    parameterSize: '1.2B',
    quantization: 'Q8_0',
    contextLength: 8192
  }))
  return { models, capacity: { slots: 4, active: rng.int(4), queued: rng.int(8) }, version: 'krill/0.1.0', seq, timestampMs: NOW, ttlMs: 60_000 }
}

describe('fuzz: announcements', () => {
  it(`decode + validate survive 20 000 random and mutated announcements from 40 authors (seed ${SEED})`, async () => {
    const rng = new Rng(SEED + 10)
    const authors: PeerId[] = await Promise.all(Array.from({ length: 40 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const corpus = Array.from({ length: 20 }, (_, i) => encodeAnnouncement(announcement(rng, i + 1)).bytes)
    const table = new ProviderTable({ selfId: 'self', now: () => NOW, maxPeers: 30 })
    // the real rate limit would ignore most of a flood before decoding; lift it so every input is decoded
    const validator = new AnnouncementValidator({ table, now: () => NOW, rateLimit: { burst: 1e9, perMinute: 1e9 } })
    const heapBefore = heapUsedMiB()
    const verdicts: Record<string, number> = {}
    let seq = 1_000
    for (let i = 0; i < 20_000; i++) {
      const input = rng.chance(0.15)
        ? rng.bytes(rng.size(1024))
        : rng.chance(0.2) ? encodeAnnouncement(announcement(rng, seq++)).bytes : mutateBytes(rng, rng.pick(corpus), corpus)
      const started = performance.now()
      let decoded
      try {
        decoded = decodeAnnouncement(input, NOW)
      } catch (err) {
        expect.fail(`case ${i} (seed ${SEED}): decodeAnnouncement threw ${String(err)} for ${hex(input)}`)
      }
      if (!decoded.ok) expect(['reject', 'ignore']).toContain(decoded.verdict)
      const msg: Message = { type: 'signed', from: rng.pick(authors), topic: 'krill/models/1', data: input, sequenceNumber: BigInt(i), signature: new Uint8Array(64), key: undefined as never }
      let verdict: TopicValidatorResult
      try {
        verdict = validator.validate(undefined, msg)
      } catch (err) {
        expect.fail(`case ${i} (seed ${SEED}): the validator threw ${String(err)} for ${hex(input)}`)
      }
      verdicts[verdict] = (verdicts[verdict] ?? 0) + 1
      const ms = performance.now() - started
      if (ms > PER_INPUT_MS) expect.fail(`case ${i} (seed ${SEED}) took ${ms.toFixed(0)} ms for ${hex(input)}`)
    }
    const entries = table.all()
    const growth = heapUsedMiB() - heapBefore
    console.log(`announcement fuzz: verdicts ${JSON.stringify(verdicts)}, ${entries.length} table entries from ${new Set(entries.map(e => e.peerId)).size} authors, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
    expect(verdicts[TopicValidatorResult.Reject]).toBeGreaterThan(5_000)
    expect(verdicts[TopicValidatorResult.Accept]).toBeGreaterThan(100)
    // bounded: peers capped by the table, models per peer by the decoder
    expect(new Set(entries.map(e => e.peerId)).size).toBeLessThanOrEqual(30)
    expect(entries.length).toBeLessThanOrEqual(30 * DEFAULT_ANNOUNCEMENT_LIMITS.maxModels)
    for (const e of entries) {
      expect(e.model.name).toMatch(MODEL_NAME_PATTERN)
      expect(e.model.digest).toMatch(/^[0-9a-f]{64}$/)
    }
    expect(growth).toBeLessThan(64)
    table.stop()
  })
})
