import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import {
  decodeAnnouncement,
  DEFAULT_ANNOUNCEMENT_LIMITS,
  encodeAnnouncement,
  type ValidAnnouncement
} from '../../src/discovery/announcement.js'
import { digestKey, modelKey } from '../../src/discovery/keys.js'
import type { ModelInfo } from '../../src/engine/types.js'
import { Announcement } from '../../src/protocol/generated/announce.js'
import { canonicalModelName, normalizeDigest } from '../../src/models/index.js'
import { validateModelName } from '../../src/protocol/validate.js'

const NOW = 1_750_000_000_000
const hex = (s: string): string => createHash('sha256').update(s).digest('hex')

function model (name: string, extra: Partial<ModelInfo> = {}): ModelInfo {
  return { name, digest: hex(name), size: 1000, family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', contextLength: 8192, ...extra }
}

function ann (extra: Partial<ValidAnnouncement> = {}): ValidAnnouncement {
  return {
    models: [model('llama3.2:1b')],
    capacity: { slots: 4, active: 1, queued: 0 },
    version: 'krill/0.1.0',
    seq: 7,
    timestampMs: NOW,
    ttlMs: 60_000,
    ...extra
  }
}

/** Encodes raw protobuf fields, bypassing our encoder's own cleaning. */
function wire (fields: Partial<Announcement> & { models?: Array<Partial<Announcement.Model>> }): Uint8Array {
  const base = ann()
  return Announcement.encode({
    version: base.version,
    seq: base.seq,
    timestampMs: base.timestampMs,
    ttlMs: base.ttlMs,
    capacity: base.capacity,
    ...fields,
    models: (fields.models ?? base.models).map(m => ({ ...base.models[0], ...m })) as Announcement.Model[]
  })
}

function reason (bytes: Uint8Array): string {
  const result = decodeAnnouncement(bytes, NOW)
  return result.ok ? 'ok' : `${result.verdict}:${result.reason}`
}

describe('DHT keys', () => {
  it('are CIDv1 raw sha2-256 of krill/model/v1/<name> and krill/digest/v1/<digest>', async () => {
    const expected = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('krill/model/v1/llama3.2:1b')))
    expect(modelKey('llama3.2:1b').equals(expected)).toBe(true)
    expect(modelKey('llama3.2:1b').version).toBe(1)
    expect(modelKey('llama3.2:1b').code).toBe(raw.code)
    const d = hex('x')
    const expectedDigest = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`krill/digest/v1/${d}`)))
    expect(digestKey(d).equals(expectedDigest)).toBe(true)
  })

  it('treat a name without a tag as :latest, and a sha256: prefix as absent', () => {
    expect(canonicalModelName('llama3')).toBe('llama3:latest')
    expect(canonicalModelName('hf.co/org/model')).toBe('hf.co/org/model:latest')
    expect(canonicalModelName('hf.co/org/model:q4')).toBe('hf.co/org/model:q4')
    expect(modelKey('llama3').equals(modelKey('llama3:latest'))).toBe(true)
    expect(digestKey(`sha256:${hex('x')}`).equals(digestKey(hex('x')))).toBe(true)
    expect(modelKey('a:1').equals(modelKey('a:2'))).toBe(false)
  })
})

describe('model identity: one rule for keys, announcements and the chat protocol', () => {
  it('looks "Llama3" up under the DHT key of llama3:latest (case-insensitive, like gossip)', () => {
    expect(modelKey('Llama3').equals(modelKey('llama3:latest'))).toBe(true)
    expect(modelKey('LLAMA3:Latest').equals(modelKey('llama3:latest'))).toBe(true)
    // Ollama's defaults: registry.ollama.ai/library/ is the same model as no prefix
    expect(modelKey('registry.ollama.ai/library/llama3').equals(modelKey('llama3:latest'))).toBe(true)
    expect(modelKey('Llama3').equals(modelKey('llama3:8b'))).toBe(false)
  })

  it('refuses at announcement validation exactly the names the chat protocol refuses', () => {
    expect(reason(wire({ models: [{ name: '-x' }] }))).toBe('reject:bad-model-name')
    expect(reason(wire({ models: [{ name: '..' }] }))).toBe('reject:bad-model-name')
    const served = (name: string): boolean => { try { validateModelName(name); return true } catch { return false } }
    const names = ['-x', '..', 'a/../b', '../x', 'x/..', '.x', 'x:-1', 'a//b', '/x', 'x:', 'a/b/c/d', 'ns.x/m', 'a:b:c',
      'ok:1', 'llama3', 'Llama3.2:1B', '_x', 'hf.co/org/model:q4', 'host:5000/ns/m:t', 'library/qwen:7b-q4_K_M', 'x'.repeat(80), 'x'.repeat(81)]
    for (const name of names) {
      expect(reason(wire({ models: [{ name }] })) === 'ok', name).toBe(served(name))
    }
    // and our own encoder leaves such a model out instead of announcing what nobody can serve
    expect(encodeAnnouncement(ann({ models: [model('-x')] })).skipped).toHaveLength(1)
  })
})

describe('announcement encode/decode', () => {
  it('round-trips a valid announcement', () => {
    const { bytes, skipped } = encodeAnnouncement(ann())
    expect(skipped).toEqual([])
    const result = decodeAnnouncement(bytes, NOW)
    expect(result).toEqual({ ok: true, announcement: ann() })
  })

  it('accepts an empty list (a withdrawal) without capacity', () => {
    const result = decodeAnnouncement(wire({ models: [], capacity: undefined }), NOW)
    expect(result.ok && result.announcement.models).toEqual([])
  })

  it('normalizes digests: sha256: prefix and upper case', () => {
    expect(normalizeDigest(`sha256:${hex('a').toUpperCase()}`)).toBe(hex('a'))
    const result = decodeAnnouncement(wire({ models: [{ digest: `sha256:${hex('llama3.2:1b')}` }] }), NOW)
    expect(result.ok && result.announcement.models[0].digest).toBe(hex('llama3.2:1b'))
  })

  it('rejects what no honest node sends', () => {
    expect(reason(new Uint8Array(DEFAULT_ANNOUNCEMENT_LIMITS.maxBytes + 1))).toBe('reject:too-large')
    expect(reason(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]))).toBe('reject:malformed')
    expect(reason(new TextEncoder().encode('{"models":[]}'))).toBe('reject:malformed')
    const many = Array.from({ length: 257 }, (_, i) => ({ name: `m${i}:1b`, digest: hex(String(i)) }))
    expect(reason(wire({ models: many }))).toBe('reject:too-many-models')
    expect(reason(wire({ models: [{ name: 'bad name' }] }))).toBe('reject:bad-model-name')
    expect(reason(wire({ models: [{ name: 'x'.repeat(201) }] }))).toBe('reject:bad-model-name')
    expect(reason(wire({ models: [{ name: '' }] }))).toBe('reject:bad-model-name')
    expect(reason(wire({ models: [{ digest: 'abc' }] }))).toBe('reject:bad-digest')
    expect(reason(wire({ models: [{ digest: 'g'.repeat(64) }] }))).toBe('reject:bad-digest')
    expect(reason(wire({ models: [{ name: 'a:1' }, { name: 'A:1' }] }))).toBe('reject:duplicate-model')
    expect(reason(wire({ models: [{ family: 'f'.repeat(65) }] }))).toBe('reject:bad-field')
    expect(reason(wire({ models: [{ quantization: 'Q4\n' }] }))).toBe('reject:bad-field')
    expect(reason(wire({ models: [{ contextLength: 2 ** 31 }] }))).toBe('reject:bad-field')
    expect(reason(wire({ capacity: undefined }))).toBe('reject:bad-capacity')
    expect(reason(wire({ capacity: { slots: 100_000, active: 0, queued: 0 } }))).toBe('reject:bad-capacity')
    expect(reason(wire({ capacity: { slots: 1, active: 0, queued: 10_000_000 } }))).toBe('reject:bad-capacity')
    expect(reason(wire({ version: '' }))).toBe('reject:bad-field')
    expect(reason(wire({ version: 'v'.repeat(65) }))).toBe('reject:bad-field')
    expect(reason(wire({ seq: 0 }))).toBe('reject:bad-seq')
    expect(reason(wire({ ttlMs: 100 }))).toBe('reject:bad-ttl')
    expect(reason(wire({ ttlMs: 24 * 3_600_000 }))).toBe('reject:bad-ttl')
    expect(reason(wire({ timestampMs: 0 }))).toBe('reject:bad-timestamp')
    expect(reason(wire({ timestampMs: NOW + 3_600_000 }))).toBe('reject:future-timestamp')
  })

  it('tolerates clock skew, and ignores (does not reject) expired copies', () => {
    expect(reason(wire({ timestampMs: NOW + 60_000 }))).toBe('ok')
    expect(reason(wire({ timestampMs: NOW - 60_000 - 60_000 }))).toBe('ok')
    expect(reason(wire({ timestampMs: NOW - 60_000 - DEFAULT_ANNOUNCEMENT_LIMITS.maxClockSkewMs - 1 }))).toBe('ignore:expired')
  })

  it('leaves out our own models that receivers would reject, and cuts the list to fit', () => {
    const { bytes, skipped } = encodeAnnouncement(ann({ models: [model('ok:1'), model('not ok'), model('bad-digest:1', { digest: 'xyz' })] }))
    expect(skipped).toHaveLength(2)
    const result = decodeAnnouncement(bytes, NOW)
    expect(result.ok && result.announcement.models.map(m => m.name)).toEqual(['ok:1'])

    const many = Array.from({ length: 300 }, (_, i) => model(`${'h'.repeat(90)}/${'s'.repeat(70)}/n-${i}:tag`, { family: 'f'.repeat(60) }))
    const fitted = encodeAnnouncement(ann({ models: many }))
    expect(fitted.bytes.byteLength).toBeLessThanOrEqual(DEFAULT_ANNOUNCEMENT_LIMITS.maxBytes)
    expect(fitted.skipped.length).toBeGreaterThanOrEqual(300 - 256)
    const decoded = decodeAnnouncement(fitted.bytes, NOW)
    expect(decoded.ok).toBe(true)
  })
})
