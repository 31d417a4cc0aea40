import { Ollama } from 'ollama'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OllamaStandin, STANDIN_KINDS, float32Text, standinEmbedding } from '../fixtures/ollama-standin.js'

// Embeddings, /api/show and models of each kind, driven with the official client.
describe('OllamaStandin: embeddings, capabilities and model kinds', () => {
  let standin: OllamaStandin
  let client: Ollama
  const EMBED = STANDIN_KINDS.embedding.name
  const CHAT = STANDIN_KINDS.chat.name

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: Object.values(STANDIN_KINDS).filter(k => k !== STANDIN_KINDS.plain) })
    client = new Ollama({ host: standin.url })
  })
  afterAll(async () => { await standin?.stop() })

  it('embeds one input and a batch with deterministic, normalized float32 vectors', async () => {
    const one = await client.embed({ model: EMBED, input: 'why is the sky blue?' })
    expect(one.model).toBe(EMBED)
    expect(one.embeddings).toHaveLength(1)
    expect(one.embeddings[0]).toHaveLength(768)
    expect(one.embeddings[0]).toEqual(standinEmbedding(EMBED, 'why is the sky blue?', 768).map(v => Number(float32Text(v))))
    const norm = Math.sqrt(one.embeddings[0].reduce((s, x) => s + x * x, 0))
    expect(norm).toBeCloseTo(1, 5)
    for (const v of one.embeddings[0]) expect(Math.fround(v)).toBe(Math.fround(Number(float32Text(v))))
    expect(one.prompt_eval_count).toBe(5)
    expect(one.total_duration).toBeGreaterThan(0)

    const batch = await client.embed({ model: EMBED, input: ['why is the sky blue?', 'why is grass green?'] })
    expect(batch.embeddings).toHaveLength(2)
    expect(batch.embeddings[0]).toEqual(one.embeddings[0])
    expect(batch.embeddings[1]).not.toEqual(one.embeddings[0])
    // the same text gives the same vector every time
    expect((await client.embed({ model: EMBED, input: 'why is grass green?' })).embeddings[0]).toEqual(batch.embeddings[1])
  })

  it('cuts vectors to `dimensions` and normalizes them again', async () => {
    const res = await client.embed({ model: EMBED, input: 'hello', dimensions: 64 })
    expect(res.embeddings[0]).toHaveLength(64)
    expect(Math.sqrt(res.embeddings[0].reduce((s, x) => s + x * x, 0))).toBeCloseTo(1, 5)
  })

  it('truncates long inputs unless truncate is false, then answers 400 like Ollama', async () => {
    const long = Array.from({ length: 3000 }, (_, i) => `w${i}`).join(' ')
    const cut = await client.embed({ model: EMBED, input: long })
    expect(cut.prompt_eval_count).toBe(2048)
    await expect(client.embed({ model: EMBED, input: long, truncate: false }))
      .rejects.toMatchObject({ status_code: 400, error: 'the input length exceeds the context length' })
    // num_ctx lowers the limit
    await expect(client.embed({ model: EMBED, input: 'a b c d', truncate: false, options: { num_ctx: 2 } }))
      .rejects.toMatchObject({ status_code: 400 })
  })

  it('answers empty input with no vectors, bad input types with 400 and unknown models with 404', async () => {
    expect(await client.embed({ model: EMBED, input: '' })).toEqual({ model: EMBED, embeddings: [] })
    expect(await client.embed({ model: EMBED, input: [] })).toEqual({ model: EMBED, embeddings: [] })
    const bad = await fetch(`${standin.url}/api/embed`, { method: 'POST', body: JSON.stringify({ model: EMBED, input: [1, 2] }) })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toEqual({ error: 'invalid input type' })
    await expect(client.embed({ model: 'nope', input: 'x' })).rejects.toMatchObject({ status_code: 404, error: "model 'nope' not found" })
  })

  it('embeds with a chat model too, as Ollama does', async () => {
    const res = await client.embed({ model: CHAT, input: 'x' })
    expect(res.embeddings[0]).toHaveLength(2048)
  })

  it('answers the older /api/embeddings with one float64 vector', async () => {
    const res = await client.embeddings({ model: EMBED, prompt: 'why is the sky blue?' })
    const viaEmbed = (await client.embed({ model: EMBED, input: 'why is the sky blue?' })).embeddings[0]
    expect(res.embedding).toHaveLength(768)
    expect(res.embedding.map(v => Math.fround(v))).toEqual(viaEmbed.map(v => Math.fround(v)))
    expect((await client.embeddings({ model: EMBED, prompt: '' })).embedding).toEqual([])
    await expect(client.embeddings({ model: 'nope', prompt: 'x' })).rejects.toMatchObject({ status_code: 404 })
    expect(standin.embedRequests.at(-1)).toMatchObject({ path: '/api/embeddings', status: 404 })
  })

  it('refuses chat and generate on an embedding-only model, like Ollama', async () => {
    await expect(client.chat({ model: EMBED, messages: [{ role: 'user', content: 'x' }] }))
      .rejects.toMatchObject({ status_code: 400, error: `"${EMBED}" does not support chat` })
    await expect(client.generate({ model: EMBED, prompt: 'x' }))
      .rejects.toMatchObject({ status_code: 400, error: `"${EMBED}" does not support generate` })
  })

  it('accepts a suffix only from an insert-capable model, and raw only without system', async () => {
    const fim = await client.generate({ model: STANDIN_KINDS.insert.name, prompt: 'def add(a, b):', suffix: '\n  return c' })
    expect(fim.done).toBe(true)
    await expect(client.generate({ model: CHAT, prompt: 'def f():', suffix: 'x' }))
      .rejects.toMatchObject({ status_code: 400, error: `registry.ollama.ai/library/${CHAT} does not support insert` })
    await expect(client.generate({ model: CHAT, prompt: 'x', raw: true, system: 'be brief' }))
      .rejects.toMatchObject({ status_code: 400, error: 'raw mode does not support template, system, or context' })
  })

  it('shows real-looking facts per kind', async () => {
    const embed = await client.show({ model: EMBED })
    expect(embed.capabilities).toEqual(['embedding'])
    const info = embed.model_info as unknown as Record<string, unknown>
    expect(info['nomic-bert.context_length']).toBe(2048)
    expect(info['nomic-bert.embedding_length']).toBe(768)
    expect(embed.details).toMatchObject({ family: 'nomic-bert', parameter_size: '137M', quantization_level: 'F16' })
    const vision = await client.show({ model: STANDIN_KINDS.vision.name })
    expect(vision.capabilities).toEqual(['completion', 'vision'])
    expect(vision.license).toContain('gemma3')
    expect(vision.template).toContain('.Messages')
    expect(vision.modelfile).toContain('FROM /root/.ollama/models/blobs/sha256-')
    expect(new Date(vision.modified_at).getTime()).toBeLessThan(Date.now())
    expect((await client.show({ model: STANDIN_KINDS.insert.name })).template).toContain('.Suffix')
    // /api/tags carries the same modified_at
    const listed = (await client.list()).models.find(m => m.name === EMBED)
    expect(new Date(listed!.modified_at).toISOString()).toBe(new Date(embed.modified_at).toISOString())
  })
})
