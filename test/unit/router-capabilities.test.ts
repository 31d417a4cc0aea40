import { describe, expect, it } from 'vitest'
import type { ProviderDirectory, ProviderEntry } from '../../src/discovery/types.js'
import type { ChatEvent, ChatRequest, EmbedRequest, ModelInfo } from '../../src/engine/types.js'
import { KrillError } from '../../src/errors.js'
import { Router, type RemoteEmbed } from '../../src/router/router.js'
import { splitEmbedBatch } from '../../src/router/embed-batch.js'

const MODEL = 'llama3.2:1b'
const EMBED = 'nomic-embed-text:latest'

function info (name: string, digest: string, capabilities?: string[]): ModelInfo {
  return { name, digest, size: 1, family: 'llama', parameterSize: '1B', quantization: 'Q8_0', contextLength: 8192, ...(capabilities != null ? { capabilities } : {}) }
}

function entry (peerId: string, model: ModelInfo): ProviderEntry {
  const now = Date.now()
  return { peerId, model, capacity: { slots: 4, active: 0, queued: 0 }, version: 'krill/0.1.0', source: 'gossip', receivedAt: now, expiresAt: now + 60_000 }
}

function directory (entries: ProviderEntry[]): ProviderDirectory {
  return {
    providersFor: (model, digest) => entries.filter(e => e.model.name === model && (digest == null || e.model.digest === digest)),
    catalog: () => [],
    all: () => entries
  }
}

function vec (peer: string, text: string): Float32Array {
  return Float32Array.from([peer.length, text.length, 0.5])
}

interface Fake {
  router: Router
  chats: string[]
  embeds: Array<{ peer: string, inputs: number, digest?: string }>
}

function fake (entries: ProviderEntry[], opts: { failEmbed?: Set<string>, unreachable?: Set<string>, known?: Set<string>, overBudget?: boolean } = {}): Fake {
  const chats: string[] = []
  const embeds: Fake['embeds'] = []
  const remoteChat = async function * (peerId: string, request: ChatRequest): AsyncGenerator<ChatEvent> {
    if (opts.unreachable?.has(peerId) === true) throw new KrillError('ENGINE_FAILED', `could not open a chat stream to peer ${peerId}`, { peer: peerId })
    chats.push(peerId)
    const digest = entries.find(e => e.peerId === peerId)?.model.digest ?? ''
    yield { type: 'accepted', peer: peerId, digest, queuePosition: 0 }
    yield { type: 'delta', content: `hi from ${peerId} about ${request.model}` }
    yield { type: 'done', usage: { doneReason: 'stop', promptTokens: 1, completionTokens: 1, totalDurationNs: 1, loadDurationNs: 0, promptEvalDurationNs: 0, evalDurationNs: 0 } }
  }
  const remoteEmbed: RemoteEmbed = async (peerId, request: EmbedRequest) => {
    embeds.push({ peer: peerId, inputs: request.input.length, digest: request.digest })
    if (opts.failEmbed?.has(peerId) === true || opts.unreachable?.has(peerId) === true) throw new KrillError('ENGINE_FAILED', `peer ${peerId} went away`, { peer: peerId })
    const own = entries.find(e => e.peerId === peerId)?.model.digest ?? ''
    if (request.digest != null && request.digest !== own) throw new KrillError('UNKNOWN_MODEL', 'other digest', { peer: peerId })
    return { embeddings: request.input.map(t => vec(peerId, t)), promptTokens: request.input.length, totalDurationNs: 10, loadDurationNs: 1, digest: own }
  }
  const router = new Router({
    selfId: 'self',
    providers: directory(entries),
    remoteChat,
    remoteEmbed,
    knowsPeer: p => opts.known?.has(p) === true || entries.some(e => e.peerId === p),
    budget: { refusal: () => opts.overBudget === true ? new KrillError('RATE_LIMITED', 'daily budget of 1000 tokens reached') : undefined }
  }, { backoff: { baseMs: 10, maxMs: 10 } })
  return { router, chats, embeds }
}

async function drain (gen: AsyncIterable<ChatEvent>): Promise<ChatEvent[]> {
  const out: ChatEvent[] = []
  for await (const e of gen) out.push(e)
  return out
}

const TOOLS = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }]
const hello = (over: Partial<ChatRequest> = {}): ChatRequest => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], ...over })

describe('router: capabilities', () => {
  it('sends a tool request only to a copy with tools, an image request only to one with vision', async () => {
    for (let i = 0; i < 5; i++) {
      const f = fake([entry('plain', info(MODEL, 'a'.repeat(64), ['completion'])), entry('tooly', info(MODEL, 'a'.repeat(64), ['completion', 'tools'])), entry('eyes', info(MODEL, 'a'.repeat(64), ['completion', 'vision']))])
      await drain(f.router.chat(hello({ tools: TOOLS })))
      await drain(f.router.chat(hello({ messages: [{ role: 'user', content: 'what is this', images: ['aGk='] }] })))
      expect(f.chats).toEqual(['tooly', 'eyes'])
    }
  })

  it('keeps copies whose capabilities are unknown (older peers) as candidates', async () => {
    const f = fake([entry('old', info(MODEL, 'a'.repeat(64)))])
    await drain(f.router.chat(hello({ tools: TOOLS })))
    expect(f.chats).toEqual(['old'])
  })

  it('answers 400 naming the capability when no known copy has it', async () => {
    const f = fake([entry('plain', info(MODEL, 'a'.repeat(64), ['completion']))])
    const err = await drain(f.router.chat(hello({ tools: TOOLS }))).catch(e => e)
    expect(err).toMatchObject({ code: 'BAD_REQUEST' })
    expect(err.message).toMatch(/does not support tools/)
    expect(f.chats).toEqual([])
    const noEmbed = await f.router.embed({ model: MODEL, input: ['x'] }).catch(e => e)
    expect(noEmbed).toMatchObject({ code: 'BAD_REQUEST' })
    expect(noEmbed.message).toMatch(/does not support embedding/)
  })
})

describe('router: pinning a peer', () => {
  const entries = (): ProviderEntry[] => [entry('p1', info(MODEL, 'a'.repeat(64), ['completion'])), entry('p2', info(MODEL, 'a'.repeat(64), ['completion'])), entry('p3', info(EMBED, 'e'.repeat(64), ['embedding']))]

  it('sends the request to that peer only', async () => {
    for (let i = 0; i < 5; i++) {
      const f = fake(entries())
      const served: string[] = []
      await drain(f.router.chat(hello(), { peer: 'p2', onProvider: p => served.push(p) }))
      expect(f.chats).toEqual(['p2'])
      expect(served).toEqual(['p2'])
    }
  })

  it('answers UNKNOWN_MODEL when the pinned peer is known but does not serve the model', async () => {
    const f = fake(entries())
    expect(await drain(f.router.chat(hello(), { peer: 'p3' })).catch(e => e)).toMatchObject({ code: 'UNKNOWN_MODEL', message: expect.stringContaining('peer p3 does not serve') })
    expect(f.chats).toEqual([])
  })

  it('answers NO_PROVIDER when the pinned peer cannot be reached, and never fails over', async () => {
    const f = fake(entries(), { unreachable: new Set(['p1', 'p9']) })
    const err = await drain(f.router.chat(hello(), { peer: 'p1' })).catch(e => e)
    expect(err).toMatchObject({ code: 'NO_PROVIDER', message: expect.stringContaining('peer p1 could not be reached') })
    expect(f.chats).toEqual([])
    const embedErr = await f.router.embed({ model: EMBED, input: ['x'] }, { peer: 'p9' }).catch(e => e)
    expect(embedErr).toMatchObject({ code: 'NO_PROVIDER' })
  })

  it('asks an unknown pinned peer directly', async () => {
    const f = fake(entries())
    await drain(f.router.chat(hello(), { peer: 'stranger' }))
    expect(f.chats).toEqual(['stranger'])
  })
})

describe('router: embeddings', () => {
  it('splits big batches, keeps the order and fails over invisibly', async () => {
    const f = fake([entry('e1', info(EMBED, 'e'.repeat(64), ['embedding'])), entry('e2', info(EMBED, 'e'.repeat(64), ['embedding']))], { failEmbed: new Set(['e1']) })
    const input = Array.from({ length: 600 }, (_, i) => `text ${i}`)
    const out = await f.router.embed({ model: EMBED, input })
    expect(out.embeddings).toHaveLength(600)
    expect(out.embeddings.map(v => v[1])).toEqual(input.map(t => t.length))
    expect(out.providers).toEqual(['e2'])
    expect(out.digest).toBe('e'.repeat(64))
    expect(f.embeds.filter(e => e.peer === 'e2').map(e => e.inputs)).toEqual([256, 256, 88])
    // after the first piece, the rest must come from the same digest
    expect(f.embeds.filter(e => e.peer === 'e2').slice(1).every(e => e.digest === 'e'.repeat(64))).toBe(true)
  })

  it('never mixes vectors of two model copies in one answer', async () => {
    const f = fake([entry('e1', info(EMBED, 'e'.repeat(64), ['embedding'])), entry('e2', info(EMBED, 'f'.repeat(64), ['embedding']))])
    const out = await f.router.embed({ model: EMBED, input: Array.from({ length: 300 }, (_, i) => `t${i}`) })
    expect(out.providers).toHaveLength(1)
  })

  it('sends no embedding to peers past the daily budget', async () => {
    const f = fake([entry('e1', info(EMBED, 'e'.repeat(64), ['embedding']))], { overBudget: true })
    expect(await f.router.embed({ model: EMBED, input: ['x'] }).catch(e => e)).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringContaining('budget') })
    expect(f.embeds).toEqual([])
  })

  it('splits by bytes too', () => {
    const big = 'é'.repeat(30_000)
    const pieces = splitEmbedBatch({ model: EMBED, input: Array.from({ length: 256 }, () => big) })
    expect(pieces.length).toBeGreaterThan(1)
    expect(pieces.reduce((n, p) => n + p.input.length, 0)).toBe(256)
    expect(() => splitEmbedBatch({ model: EMBED, input: ['x'.repeat(40_000)] })).toThrow(/at most 32768/)
  })
})
