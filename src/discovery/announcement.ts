/**
 * Model announcements on the wire (protocols/announce.proto): encoding for our own,
 * decoding and validation for everyone else's. Whatever a peer sends is checked here
 * before anything else looks at it; the result is either a typed announcement or a
 * short reason code (used as a counter label) with a human-readable detail.
 */
import { Announcement } from '../protocol/generated/announce.js'
import type { ModelInfo } from '../engine/types.js'
import { modelId, modelNameProblem, normalizeDigest } from '../models/index.js'
import type { Capacity } from './types.js'
import { CAPABILITY_PATTERN, MAX_CAPABILITIES } from '../models/capabilities.js'

export interface AnnouncementLimits {
  /** encoded message size */
  maxBytes: number
  maxModels: number
  minTtlMs: number
  maxTtlMs: number
  /** how far an author's clock may run ahead of ours */
  maxClockSkewMs: number
}

export const DEFAULT_ANNOUNCEMENT_LIMITS: AnnouncementLimits = {
  maxBytes: 64 * 1024,
  maxModels: 256,
  // an author re-announces at ttl/3; below 3 s that would beat the per-peer rate limit
  minTtlMs: 3_000,
  // krill.json allows up to 1 h
  maxTtlMs: 3_600_000,
  maxClockSkewMs: 5 * 60_000
}

/** Field bounds: generous for real models, small enough that nobody can bloat our tables. */
const PRINTABLE = /^[\x20-\x7e]*$/
const MAX_CONTEXT_LENGTH = 1 << 24
const MAX_SLOTS = 4096
const MAX_QUEUED = 100_000
/** year 9999: anything later is garbage */
const MAX_MODIFIED_MS = 253_402_300_799_999
const STRING_LIMITS = { family: 64, parameterSize: 32, quantization: 32, version: 64 } as const

/** An announcement that passed every check, in krill's own shapes. */
export interface ValidAnnouncement {
  models: ModelInfo[]
  capacity: Capacity
  version: string
  seq: number
  timestampMs: number
  ttlMs: number
}

export type Verdict = 'reject' | 'ignore'

export type DecodeResult =
  | { ok: true, announcement: ValidAnnouncement }
  | { ok: false, verdict: Verdict, reason: string, detail: string }

class Invalid extends Error {
  constructor (readonly reason: string, detail: string, readonly verdict: Verdict = 'reject') {
    super(detail)
  }
}

function checkString (value: string, max: number, field: string): string {
  if (value.length > max || !PRINTABLE.test(value)) throw new Invalid('bad-field', `${field} must be at most ${max} printable ASCII characters`)
  return value
}

function checkUint (value: number, max: number, reason: string, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new Invalid(reason, `${field} ${value} is out of range 0…${max}`)
  return value
}

/** Checks one model entry and converts it; throws Invalid. */
function checkModel (m: Announcement.Model, i: number): ModelInfo {
  // the chat protocol's rule (src/models): nothing is announced that cannot be served
  const problem = modelNameProblem(m.name)
  if (problem != null) throw new Invalid('bad-model-name', `models[${i}]: ${problem}`)
  const digest = normalizeDigest(m.digest)
  if (digest === undefined) throw new Invalid('bad-digest', `models[${i}].digest must be 64 hex digits`)
  const info: ModelInfo = {
    name: m.name,
    digest,
    size: checkUint(m.size, Number.MAX_SAFE_INTEGER, 'bad-field', `models[${i}].size`),
    family: checkString(m.family, STRING_LIMITS.family, `models[${i}].family`),
    parameterSize: checkString(m.parameterSize, STRING_LIMITS.parameterSize, `models[${i}].parameter_size`),
    quantization: checkString(m.quantization, STRING_LIMITS.quantization, `models[${i}].quantization`),
    contextLength: checkUint(m.contextLength, MAX_CONTEXT_LENGTH, 'bad-field', `models[${i}].context_length`)
  }
  const capabilities = m.capabilities ?? []
  if (capabilities.length > MAX_CAPABILITIES) throw new Invalid('bad-field', `models[${i}].capabilities has more than ${MAX_CAPABILITIES} entries`)
  for (const c of capabilities) {
    if (!CAPABILITY_PATTERN.test(c)) throw new Invalid('bad-field', `models[${i}].capabilities: "${c.slice(0, 40)}" is not a capability name`)
  }
  if (capabilities.length > 0) info.capabilities = [...new Set(capabilities)]
  const modified = checkUint(m.modifiedMs ?? 0, MAX_MODIFIED_MS, 'bad-field', `models[${i}].modified_ms`)
  if (modified > 0) info.modifiedAt = new Date(modified).toISOString()
  return info
}

function checkCapacity (c: Announcement.Capacity | undefined, hasModels: boolean): Capacity {
  if (c == null) {
    if (hasModels) throw new Invalid('bad-capacity', 'capacity is required when models are announced')
    return { slots: 0, active: 0, queued: 0 }
  }
  return {
    slots: checkUint(c.slots, MAX_SLOTS, 'bad-capacity', 'capacity.slots'),
    active: checkUint(c.active, MAX_SLOTS, 'bad-capacity', 'capacity.active'),
    queued: checkUint(c.queued, MAX_QUEUED, 'bad-capacity', 'capacity.queued')
  }
}

function check (bytes: Uint8Array, now: number, limits: AnnouncementLimits): ValidAnnouncement {
  if (bytes.byteLength > limits.maxBytes) throw new Invalid('too-large', `${bytes.byteLength} bytes exceeds ${limits.maxBytes}`)
  let raw: Announcement
  try {
    raw = Announcement.decode(bytes, { limits: { models: limits.maxModels } })
  } catch (err: any) {
    if (err?.name === 'MaxLengthError') throw new Invalid('too-many-models', `more than ${limits.maxModels} models`)
    throw new Invalid('malformed', `not an Announcement: ${String(err?.message ?? err)}`)
  }

  const models = raw.models.map(checkModel)
  const names = new Set<string>()
  for (const m of models) {
    const key = modelId(m.name)
    if (names.has(key)) throw new Invalid('duplicate-model', `model ${m.name} is listed twice`)
    names.add(key)
  }
  const capacity = checkCapacity(raw.capacity, models.length > 0)
  const version = checkString(raw.version, STRING_LIMITS.version, 'version')
  if (version === '') throw new Invalid('bad-field', 'version is required')
  if (!Number.isSafeInteger(raw.seq) || raw.seq <= 0) throw new Invalid('bad-seq', 'seq must be a positive integer below 2^53')
  if (raw.ttlMs < limits.minTtlMs || raw.ttlMs > limits.maxTtlMs) {
    throw new Invalid('bad-ttl', `ttl ${raw.ttlMs} ms is outside ${limits.minTtlMs}…${limits.maxTtlMs} ms`)
  }
  if (!Number.isSafeInteger(raw.timestampMs) || raw.timestampMs <= 0) throw new Invalid('bad-timestamp', 'timestamp is missing')
  if (raw.timestampMs > now + limits.maxClockSkewMs) {
    throw new Invalid('future-timestamp', `timestamp is ${raw.timestampMs - now} ms in the future`)
  }
  // an honest message delayed in the network, or a replay of an old one: drop quietly
  if (raw.timestampMs + raw.ttlMs + limits.maxClockSkewMs < now) {
    throw new Invalid('expired', `expired ${now - raw.timestampMs - raw.ttlMs} ms ago`, 'ignore')
  }
  return { models, capacity, version, seq: raw.seq, timestampMs: raw.timestampMs, ttlMs: raw.ttlMs }
}

/** Decodes and validates a peer's announcement. Never throws. */
export function decodeAnnouncement (bytes: Uint8Array, now = Date.now(), limits: AnnouncementLimits = DEFAULT_ANNOUNCEMENT_LIMITS): DecodeResult {
  try {
    return { ok: true, announcement: check(bytes, now, limits) }
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, verdict: err.verdict, reason: err.reason, detail: err.message }
    return { ok: false, verdict: 'reject', reason: 'malformed', detail: String(err) }
  }
}

function modifiedMs (at: string | undefined): number {
  const ms = at != null ? Date.parse(at) : NaN
  return Number.isSafeInteger(ms) && ms > 0 && ms <= MAX_MODIFIED_MS ? ms : 0
}

/** The wire form of one of our models, or why receivers would reject it. */
export function toWireModel (m: ModelInfo): Announcement.Model | string {
  const wire: Announcement.Model = {
    name: m.name,
    digest: normalizeDigest(m.digest) ?? m.digest,
    size: Number.isSafeInteger(m.size) && m.size > 0 ? m.size : 0,
    family: m.family,
    parameterSize: m.parameterSize,
    quantization: m.quantization,
    contextLength: Number.isSafeInteger(m.contextLength) && m.contextLength > 0 ? Math.min(m.contextLength, MAX_CONTEXT_LENGTH) : 0,
    capabilities: (m.capabilities ?? []).filter(c => CAPABILITY_PATTERN.test(c)).slice(0, MAX_CAPABILITIES),
    modifiedMs: modifiedMs(m.modifiedAt)
  }
  try {
    checkModel(wire, 0)
    return wire
  } catch (err) {
    return `${m.name}: ${(err as Error).message}`
  }
}

export interface EncodeResult {
  bytes: Uint8Array
  /** models left out, each with why (invalid for receivers, or no room) */
  skipped: string[]
}

/**
 * Encodes our own announcement so that every receiver accepts it: models receivers
 * would reject are left out, and the list is cut to fit the count and size limits.
 */
export function encodeAnnouncement (ann: ValidAnnouncement, limits: AnnouncementLimits = DEFAULT_ANNOUNCEMENT_LIMITS): EncodeResult {
  const skipped: string[] = []
  let models: Announcement.Model[] = []
  for (const m of ann.models) {
    const wire = toWireModel(m)
    if (typeof wire === 'string') skipped.push(wire)
    else models.push(wire)
  }
  if (models.length > limits.maxModels) {
    skipped.push(...models.slice(limits.maxModels).map(m => `${m.name}: more than ${limits.maxModels} models`))
    models = models.slice(0, limits.maxModels)
  }
  const encode = (list: Announcement.Model[]): Uint8Array => Announcement.encode({
    models: list,
    capacity: {
      slots: Math.min(ann.capacity.slots, MAX_SLOTS),
      active: Math.min(ann.capacity.active, MAX_SLOTS),
      queued: Math.min(ann.capacity.queued, MAX_QUEUED)
    },
    version: ann.version.slice(0, STRING_LIMITS.version),
    seq: ann.seq,
    timestampMs: ann.timestampMs,
    ttlMs: ann.ttlMs
  })
  let bytes = encode(models)
  while (bytes.byteLength > limits.maxBytes && models.length > 0) {
    const dropped = models.pop() as Announcement.Model
    skipped.push(`${dropped.name}: announcement larger than ${limits.maxBytes} bytes`)
    bytes = encode(models)
  }
  return { bytes, skipped }
}
