import { describe, expect, it } from 'vitest'
import { decodeAnnouncement, encodeAnnouncement, type ValidAnnouncement } from '../../src/discovery/announcement.js'
import type { ModelInfo } from '../../src/engine/types.js'
import { Announcement } from '../../src/protocol/generated/announce.js'

const NOW = 1_750_000_000_000
const base: ModelInfo = { name: 'nomic-embed-text:latest', digest: 'c'.repeat(64), size: 274_302_450, family: 'nomic-bert', parameterSize: '137M', quantization: 'F16', contextLength: 2048 }

function ann (models: ModelInfo[]): ValidAnnouncement {
  return { models, capacity: { slots: 2, active: 0, queued: 0 }, version: 'krill/0.1.0', seq: 3, timestampMs: NOW, ttlMs: 60_000 }
}

function decoded (bytes: Uint8Array): ModelInfo[] {
  const r = decodeAnnouncement(bytes, NOW)
  if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`)
  return r.announcement.models
}

describe('announcements carry capabilities and modification times', () => {
  it('round-trips capabilities and modified_at', () => {
    const modifiedAt = '2026-01-15T12:34:56.000Z'
    const { bytes, skipped } = encodeAnnouncement(ann([{ ...base, capabilities: ['embedding'], modifiedAt }]))
    expect(skipped).toEqual([])
    expect(decoded(bytes)[0]).toEqual({ ...base, capabilities: ['embedding'], modifiedAt })
  })

  it('reads an announcement of an older peer (no fields 8, 9) as "capabilities unknown"', () => {
    const old = Announcement.encode({
      models: [{ name: base.name, digest: base.digest, size: base.size, family: base.family, parameterSize: base.parameterSize, quantization: base.quantization, contextLength: base.contextLength, capabilities: [], modifiedMs: 0 }],
      capacity: { slots: 1, active: 0, queued: 0 },
      version: 'krill/0.1.0',
      seq: 1,
      timestampMs: NOW,
      ttlMs: 60_000
    })
    const [m] = decoded(old)
    expect(m.capabilities).toBeUndefined()
    expect(m.modifiedAt).toBeUndefined()
  })

  it('is read by a decoder that does not know the new fields (proto3 skips unknown fields)', () => {
    const { bytes } = encodeAnnouncement(ann([{ ...base, capabilities: ['embedding'], modifiedAt: '2026-01-15T12:34:56.000Z' }]))
    // the Model message as an older peer's schema knows it: fields 1-7 only
    const fields = Announcement.decode(bytes).models[0]
    expect(fields.name).toBe(base.name)
    expect(fields.contextLength).toBe(2048)
  })

  it('rejects garbage capability lists', () => {
    const bad = (capabilities: string[]): string => {
      const bytes = Announcement.encode({
        models: [{ name: base.name, digest: base.digest, size: 1, family: '', parameterSize: '', quantization: '', contextLength: 0, capabilities, modifiedMs: 0 }],
        capacity: { slots: 1, active: 0, queued: 0 },
        version: 'krill/0.1.0',
        seq: 1,
        timestampMs: NOW,
        ttlMs: 60_000
      })
      const r = decodeAnnouncement(bytes, NOW)
      return r.ok ? 'ok' : r.reason
    }
    expect(bad(['tools', 'vision'])).toBe('ok')
    expect(bad(['<script>'])).toBe('bad-field')
    expect(bad(Array.from({ length: 17 }, (_, i) => `c${i}`))).toBe('bad-field')
  })
})
