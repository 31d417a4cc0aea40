/**
 * /krill/embed/1.0.0 and /krill/show/1.0.0 between real libp2p nodes, the provider
 * on the real OllamaEngine in front of the stand-in.
 */
import type { Libp2p } from '@libp2p/interface'
import { Ollama } from 'ollama'
import { afterEach, describe, expect, it } from 'vitest'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import { KrillError } from '../../src/errors.js'
import { requestEmbed } from '../../src/protocol/embed-client.js'
import { EmbedServer, type EmbedServerEvent, type EmbedServerInit } from '../../src/protocol/embed-server.js'
import { EMBED_PROTOCOL, decodeEmbedFrame, encodeEmbedRequest } from '../../src/protocol/embed-wire.js'
import { FrameReader, lengthPrefixed } from '../../src/protocol/frame-io.js'
import { SlotQueue } from '../../src/protocol/slot-queue.js'
import { ShowServer, requestShow } from '../../src/protocol/show-exchange.js'
import { OllamaStandin, STANDIN_KINDS } from '../fixtures/ollama-standin.js'
import { cleanup, createNode } from './chat-protocol-helpers.js'

const EMBED = STANDIN_KINDS.embedding.name

interface EmbedProvider {
  node: Libp2p
  server: EmbedServer
  standin: OllamaStandin
  queue: SlotQueue
  events: EmbedServerEvent[]
}

async function startEmbedProvider (init: Partial<EmbedServerInit> = {}, slots = 2): Promise<EmbedProvider> {
  const standin = await OllamaStandin.start({ models: [STANDIN_KINDS.embedding, STANDIN_KINDS.chat] })
  const engine = new OllamaEngine({ host: standin.url })
  const models = await engine.listModels()
  const node = await createNode()
  const queue = new SlotQueue(slots, 4)
  const events: EmbedServerEvent[] = []
  const served = (name: string, digest?: string): boolean => models.some(m => m.name === name && (digest == null || m.digest === digest))
  const server = new EmbedServer({ registrar: node }, {
    engine,
    queue,
    isServedModel: served,
    resolveDigest: name => models.find(m => m.name === name)?.digest,
    onEvent: e => { events.push(e) },
    ...init
  })
  await server.start()
  const show = new ShowServer({ registrar: node }, { engine, isServedModel: served })
  await show.start()
  afterEachStop.push(async () => { await show.stop(); await server.stop(); await standin.stop() })
  return { node, server, standin, queue, events }
}

const afterEachStop: Array<() => Promise<void>> = []

async function client (p: EmbedProvider): Promise<Libp2p> {
  const c = await createNode()
  await c.dial(p.node.getMultiaddrs()[0])
  return c
}

describe('/krill/embed/1.0.0', () => {
  afterEach(async () => {
    for (const stop of afterEachStop.splice(0).reverse()) await stop()
    await cleanup()
  })

  it('returns exactly the vectors Ollama computed, in order, with the digest', async () => {
    const p = await startEmbedProvider()
    const c = await client(p)
    const input = ['why is the sky blue?', 'why is grass green?', 'krill']
    const answer = await requestEmbed(c, p.node.peerId, { model: EMBED, input })
    const direct = await new Ollama({ host: p.standin.url }).embed({ model: EMBED, input })
    expect(answer.embeddings.map(v => Array.from(v))).toEqual(direct.embeddings.map(v => v.map(x => Math.fround(x))))
    expect(answer.promptTokens).toBe(direct.prompt_eval_count)
    expect(answer.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(p.events.at(-1)).toMatchObject({ type: 'done', model: EMBED, inputs: 3 })
    // the slot went back
    expect(p.queue.active).toBe(0)
  })

  it('carries a batch of 256 inputs of 8k characters, split over frames', async () => {
    const p = await startEmbedProvider()
    const c = await client(p)
    const input = Array.from({ length: 256 }, (_, i) => `${i} ` + 'ab'.repeat(4096 - 2))
    expect(input.every(t => t.length >= 8190)).toBe(true)
    const answer = await requestEmbed(c, p.node.peerId, { model: STANDIN_KINDS.chat.name, input }, { timeoutMs: 60_000 })
    expect(answer.embeddings).toHaveLength(256)
    // 256 × 2048 float32 = 2 MiB: more than one 1 MiB frame
    expect(answer.embeddings.every(v => v.length === 2048)).toBe(true)
    const direct = await new Ollama({ host: p.standin.url }).embed({ model: STANDIN_KINDS.chat.name, input: [input[200]] })
    expect(Array.from(answer.embeddings[200])).toEqual(direct.embeddings[0].map(x => Math.fround(x)))
  }, 60_000)

  it('refuses bigger batches with a clear error, before sending', async () => {
    const p = await startEmbedProvider()
    const c = await client(p)
    const err = await requestEmbed(c, p.node.peerId, { model: EMBED, input: Array.from({ length: 257 }, () => 'x') }).catch(e => e)
    expect(err).toBeInstanceOf(KrillError)
    expect(err).toMatchObject({ code: 'TOO_LARGE' })
    expect(err.message).toMatch(/257 inputs exceed the limit of 256 per request; split the batch/)
  })

  it('answers an unknown model, bad options and Ollama refusals with error codes', async () => {
    const p = await startEmbedProvider()
    const c = await client(p)
    expect(await requestEmbed(c, p.node.peerId, { model: 'nope', input: ['x'] }).catch(e => e)).toMatchObject({ code: 'UNKNOWN_MODEL' })
    const tooLong = await requestEmbed(c, p.node.peerId, { model: EMBED, input: ['a b c'], truncate: false, options: { num_ctx: 2 } }).catch(e => e)
    expect(tooLong).toMatchObject({ code: 'BAD_REQUEST' })
    expect(tooLong.message).toContain('the input length exceeds the context length')
    // an unknown option field straight on the wire
    const stream = await c.dialProtocol(p.node.peerId, EMBED_PROTOCOL)
    const reader = new FrameReader(stream, { maxFrameBytes: 1 << 20 })
    const req = encodeEmbedRequest({ model: EMBED, input: ['x'] })
    // EmbedRequest.options (field 7) holding field 9 (varint 1)
    const withUnknown = new Uint8Array([...req, 0x3a, 0x02, 0x48, 0x01])
    stream.send(lengthPrefixed(withUnknown).subarray())
    const frame = decodeEmbedFrame((await reader.read(AbortSignal.timeout(5000)))!)
    expect(frame.error?.message).toMatch(/unknown option field #9/)
    stream.abort(new Error('done'))
  })

  it('shares the slots with chats: a full queue answers BUSY', async () => {
    const p = await startEmbedProvider({}, 1)
    const c = await client(p)
    // hold the one slot and every queue place, as running chats would
    const held = p.queue.enter()!
    const release = await held.ready
    const waiting = Array.from({ length: 4 }, () => p.queue.enter())
    const err = await requestEmbed(c, p.node.peerId, { model: EMBED, input: ['x'] }).catch(e => e)
    expect(err).toMatchObject({ code: 'BUSY' })
    release()
    for (const w of waiting) (await w!.ready)()
    expect((await requestEmbed(c, p.node.peerId, { model: EMBED, input: ['x'] })).embeddings).toHaveLength(1)
  })

  it('stops the engine request when the consumer cancels', async () => {
    const p = await startEmbedProvider()
    p.standin.knobs.embedDelayMs = 2000
    const c = await client(p)
    const ac = new AbortController()
    const pending = requestEmbed(c, p.node.peerId, { model: EMBED, input: ['x'] }, { signal: ac.signal, onAccepted: () => { setTimeout(() => ac.abort(), 50) } })
    expect(await pending.catch(e => e)).toMatchObject({ code: 'CANCELLED' })
    const deadline = Date.now() + 5000
    while (!p.events.some(e => e.type === 'cancelled') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    expect(p.events.some(e => e.type === 'cancelled')).toBe(true)
    expect(p.queue.active).toBe(0)
  })

  it('refuses peers the policy refuses', async () => {
    const p = await startEmbedProvider({ authorize: () => 'deny-listed' })
    const c = await client(p)
    expect(await requestEmbed(c, p.node.peerId, { model: EMBED, input: ['x'] }).catch(e => e)).toMatchObject({ code: 'FORBIDDEN' })
  })
})

describe('/krill/show/1.0.0', () => {
  afterEach(async () => {
    for (const stop of afterEachStop.splice(0).reverse()) await stop()
    await cleanup()
  })

  it("returns the provider's Ollama /api/show answer", async () => {
    const p = await startEmbedProvider()
    const c = await client(p)
    const shown = await requestShow(c, p.node.peerId, EMBED)
    expect(shown).toEqual(await new Ollama({ host: p.standin.url }).show({ model: EMBED }))
    expect(await requestShow(c, p.node.peerId, 'nope').catch(e => e)).toMatchObject({ code: 'UNKNOWN_MODEL' })
  })
})
