import { Ollama } from 'ollama'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KrillError } from '../../src/errors.js'
import { OllamaEngine, toOllamaEmbedRequest } from '../../src/engine/ollama-engine.js'
import { chatNeeds, missingCapability, normalizeCapabilities } from '../../src/models/capabilities.js'
import { OllamaStandin, STANDIN_KINDS } from '../fixtures/ollama-standin.js'

const EMBED = STANDIN_KINDS.embedding.name

describe('OllamaEngine: embeddings, show and capabilities', () => {
  let standin: OllamaStandin
  let engine: OllamaEngine

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [STANDIN_KINDS.embedding, STANDIN_KINDS.vision, STANDIN_KINDS.chat] })
    engine = new OllamaEngine({ host: standin.url, requestTimeoutMs: 2000 })
  })
  afterAll(async () => { await standin?.stop() })

  it('lists each model with the capabilities /api/show reports', async () => {
    const models = await engine.listModels()
    const byName = Object.fromEntries(models.map(m => [m.name, m]))
    expect(byName[EMBED]).toMatchObject({ capabilities: ['embedding'], contextLength: 2048, family: 'nomic-bert' })
    expect(byName['gemma3:4b'].capabilities).toEqual(['completion', 'vision'])
    expect(byName['llama3.2:1b'].capabilities).toEqual(['completion', 'tools'])
  })

  it('embeds exactly what Ollama returns, as float32', async () => {
    const input = ['why is the sky blue?', 'why is grass green?']
    const res = await engine.embed({ model: EMBED, input }, AbortSignal.timeout(5000))
    const direct = await new Ollama({ host: standin.url }).embed({ model: EMBED, input })
    expect(res.embeddings.map(v => Array.from(v))).toEqual(direct.embeddings.map(v => v.map(x => Math.fround(x))))
    expect(res.promptTokens).toBe(direct.prompt_eval_count)
    expect(res.totalDurationNs).toBeGreaterThan(0)
  })

  it('passes truncate, dimensions, keep_alive and num_ctx, nothing else', async () => {
    await engine.embed({ model: EMBED, input: ['a b c'], truncate: true, dimensions: 32, keepAlive: '1m', options: { num_ctx: 512, evil: 1 } as any }, AbortSignal.timeout(5000))
    const body = standin.embedRequests.at(-1)!.body
    expect(body).toEqual({ model: EMBED, input: ['a b c'], truncate: true, dimensions: 32, keep_alive: '1m', options: { num_ctx: 512 } })
    expect(() => toOllamaEmbedRequest({ model: EMBED, input: [1 as any] })).toThrow(/input must be a list of strings/)
    expect(() => toOllamaEmbedRequest({ model: EMBED, input: ['x'], dimensions: -1 })).toThrow(/dimensions/)
  })

  it("reports Ollama's errors with their codes", async () => {
    const tooLong = await engine.embed({ model: EMBED, input: ['a b c'], truncate: false, options: { num_ctx: 2 } }, AbortSignal.timeout(5000)).catch(e => e)
    expect(tooLong).toBeInstanceOf(KrillError)
    expect(tooLong).toMatchObject({ code: 'BAD_REQUEST' })
    expect(tooLong.message).toContain('the input length exceeds the context length')
    const unknown = await engine.embed({ model: 'nope', input: ['x'] }, AbortSignal.timeout(5000)).catch(e => e)
    expect(unknown).toMatchObject({ code: 'UNKNOWN_MODEL' })
    const ac = new AbortController()
    ac.abort()
    expect(await engine.embed({ model: EMBED, input: ['x'] }, ac.signal).catch(e => e)).toMatchObject({ code: 'CANCELLED' })
  })

  it("returns Ollama's own /api/show answer", async () => {
    const shown = await engine.show('gemma3:4b')
    expect(shown).toEqual(await new Ollama({ host: standin.url }).show({ model: 'gemma3:4b' }))
    expect(await engine.show('nope').catch(e => e)).toMatchObject({ code: 'UNKNOWN_MODEL' })
  })
})

describe('capabilities', () => {
  it('normalizes what /api/show reports and treats garbage as unknown', () => {
    expect(normalizeCapabilities(['Completion', 'tools', 'tools', 7, 'x'.repeat(40)])).toEqual(['completion', 'tools'])
    expect(normalizeCapabilities([])).toBeUndefined()
    expect(normalizeCapabilities('tools')).toBeUndefined()
  })

  it('says what a chat needs and what a copy lacks', () => {
    expect(chatNeeds({ messages: [{}] })).toEqual(['completion'])
    expect(chatNeeds({ tools: [{}], think: 'high', messages: [{ images: ['x'] }] })).toEqual(['completion', 'tools', 'vision', 'thinking'])
    expect(missingCapability(['completion'], ['completion', 'tools'])).toBe('tools')
    expect(missingCapability(['completion', 'tools'], ['completion', 'tools'])).toBeUndefined()
    // unknown capabilities exclude nothing
    expect(missingCapability(undefined, ['embedding'])).toBeUndefined()
  })
})
