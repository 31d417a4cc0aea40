/**
 * All of Ollama over the network, through the real `openai` and `ollama` clients
 * against a 3-node loopback swarm. Node 0 consumes (its Ollama is a dead port);
 * nodes 1 and 2 serve from their own stand-ins:
 *   node 1: nomic-embed-text, llama3.2:1b WITHOUT tools, gemma3:4b WITH vision
 *   node 2: nomic-embed-text, llama3.2:1b WITH tools,   gemma3:4b WITHOUT vision
 */
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin, STANDIN_KINDS } from '../fixtures/ollama-standin.js'
import { startSwarm, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const EMBED = STANDIN_KINDS.embedding.name
const CHAT = 'llama3.2:1b'
const VISION = 'gemma3:4b'
const SCRIPT = DEFAULT_TOKENS.join('')
const TOOLS = [{ type: 'function' as const, function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const PNG = Buffer.from('not really a png').toString('base64')

describe('Ollama over the network: embeddings, capabilities, facts, who answers', () => {
  let swarm: Swarm
  let consumer: TestDaemon
  let standins: OllamaStandin[]
  let api: string
  let peerIds: string[]

  beforeAll(async () => {
    standins = [
      await OllamaStandin.start({
        models: [
          STANDIN_KINDS.embedding,
          { ...STANDIN_KINDS.plain, digest: '1'.repeat(64) },
          { ...STANDIN_KINDS.vision, digest: '3'.repeat(64) }
        ]
      }),
      await OllamaStandin.start({
        models: [
          STANDIN_KINDS.embedding,
          { ...STANDIN_KINDS.chat, digest: '2'.repeat(64) },
          { ...STANDIN_KINDS.vision, capabilities: ['completion'], digest: '4'.repeat(64) }
        ]
      })
    ]
    swarm = await startSwarm(3, i => i === 0 ? {} : { ollama: standins[i - 1].url, modelRefreshMs: 200 })
    consumer = swarm.nodes[0]
    api = consumer.daemon.apiUrl
    peerIds = swarm.nodes.map(n => n.daemon.peerId.toString())
    await waitFor(() => [EMBED, CHAT, VISION].every(m => consumer.daemon.providers.providersFor(m).length === 2 &&
      consumer.daemon.providers.providersFor(m).every(e => e.model.capabilities != null)), 'the consumer to learn every copy with its capabilities')
  }, 60_000)

  afterAll(async () => {
    await swarm?.stop()
    await Promise.allSettled((standins ?? []).map(async s => { await s.stop() }))
  })

  /** set by the last test, which takes a node down for good */
  let nodeDown = false

  afterEach(async () => {
    if (nodeDown) return
    for (const s of standins) {
      s.knobs = { tokens: [...DEFAULT_TOKENS], tokensPerSecond: 0, firstTokenDelayMs: 0 }
      s.requests = []
      s.embedRequests = []
      await s.comeUp()
    }
    // a stand-in that went down took its node's models with it until the next poll
    await waitFor(() => [EMBED, CHAT, VISION].every(m => consumer.daemon.providers.providersFor(m).length === 2), 'every copy to be announced again')
  })

  const openai = (headers: Record<string, string> = {}): OpenAI => new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000, defaultHeaders: headers })
  const direct = (): Ollama => new Ollama({ host: standins[0].url })
  const float32 = (v: number[]): number[] => v.map(x => Math.fround(x))
  /** index (1 or 2) of the node whose stand-in embedded last */
  const embeddedBy = (): number => standins.findIndex(s => s.embedRequests.some(r => r.status === 200)) + 1

  describe('embeddings', () => {
    it('embeddings.create returns the stand-in\'s exact vectors, one input and a batch, through a remote provider', async () => {
      const one = await openai().embeddings.create({ model: EMBED, input: 'why is the sky blue?' })
      expect(standins.flatMap(s => s.embedRequests)).toHaveLength(1)
      const want = (await direct().embed({ model: EMBED, input: 'why is the sky blue?' })).embeddings[0]
      expect(one.data).toHaveLength(1)
      expect(one.data[0]).toMatchObject({ object: 'embedding', index: 0 })
      expect(float32(one.data[0].embedding)).toEqual(float32(want))
      expect(one.model).toBe(EMBED)
      expect(one.usage.prompt_tokens).toBe(5)

      const input = Array.from({ length: 40 }, (_, i) => `chunk ${i} of a document`)
      const batch = await openai().embeddings.create({ model: EMBED, input })
      const wantBatch = (await direct().embed({ model: EMBED, input })).embeddings
      expect(batch.data.map(d => d.index)).toEqual(input.map((_, i) => i))
      expect(batch.data.map(d => float32(d.embedding))).toEqual(wantBatch.map(float32))
      const metrics = await (await fetch(`${api}/metrics`)).text()
      expect(metrics).toMatch(/^krill_embed_requests_total\{outcome="done"\} [1-9]/m)
      expect(metrics).toMatch(/^krill_embed_inputs_total \d+/m)
    })

    it('encodes base64 as float32 little-endian, and honours dimensions', async () => {
      const res = await openai().embeddings.create({ model: EMBED, input: ['a', 'b'], encoding_format: 'base64' })
      const want = (await direct().embed({ model: EMBED, input: ['a', 'b'] })).embeddings
      const decode = (b64: string): number[] => { const buf = Buffer.from(b64, 'base64'); return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4)) }
      expect(res.data.map(d => decode(d.embedding as unknown as string))).toEqual(want.map(float32))
      const cut = await openai().embeddings.create({ model: EMBED, input: 'a', dimensions: 64 })
      expect(float32(cut.data[0].embedding)).toEqual(float32((await direct().embed({ model: EMBED, input: 'a', dimensions: 64 })).embeddings[0]))
      const bad = await fetch(`${api}/v1/embeddings`, { method: 'POST', body: JSON.stringify({ model: EMBED, input: 'a', encoding_format: 'int8' }) })
      expect(bad.status).toBe(400)
      expect((await bad.json()).error.message).toMatch(/Supported values: \['float', 'base64'\]/)
    })

    it('ollama.embed and ollama.embeddings return the stand-in\'s exact vectors', async () => {
      const krill = new Ollama({ host: api })
      const input = ['why is the sky blue?', 'why is grass green?']
      const got = await krill.embed({ model: EMBED, input, truncate: true })
      const want = await direct().embed({ model: EMBED, input, truncate: true })
      expect(got.embeddings).toEqual(want.embeddings)
      expect(got.model).toBe(EMBED)
      expect(got.prompt_eval_count).toBe(want.prompt_eval_count)
      const legacy = await krill.embeddings({ model: EMBED, prompt: 'why is the sky blue?' })
      expect(float32(legacy.embedding)).toEqual(float32(want.embeddings[0]))
      expect(await krill.embed({ model: EMBED, input: [] })).toEqual({ model: EMBED, embeddings: [] })
    })

    it('carries truncate and num_ctx to the provider and passes its 400 on', async () => {
      const err = await new Ollama({ host: api }).embed({ model: EMBED, input: 'a b c d', truncate: false, options: { num_ctx: 2 } }).catch(e => e)
      expect(err.status_code).toBe(400)
      expect(err.error).toMatch(/the input length exceeds the context length/)
    })

    it('fails over when the provider dies during the request', async () => {
      for (const s of standins) s.knobs.embedDelayMs = 1_000
      const pending = new Ollama({ host: api }).embed({ model: EMBED, input: ['failover'] })
      const first = await waitFor(() => { const i = standins.findIndex(s => s.embedRequests.length > 0); return i >= 0 ? i + 1 : undefined }, 'a provider to receive the embedding')
      await standins[first - 1].goDown()
      const res = await pending
      expect(res.embeddings[0]).toEqual((await new Ollama({ host: standins[2 - first].url }).embed({ model: EMBED, input: ['failover'] })).embeddings[0])
      expect(standins[2 - first].embedRequests.some(r => r.status === 200)).toBe(true)
    })

    it('puts every embedding served by a peer in both ledgers, signed by both', async () => {
      const before = (await (await fetch(`${api}/krill/v1/ledger`)).json()).entries.filter((e: any) => e.kind === 'embed').length
      const res = await fetch(`${api}/api/embed`, { method: 'POST', body: JSON.stringify({ model: EMBED, input: ['a receipt', 'for two inputs'] }) })
      const provider = res.headers.get('x-krill-provider')
      const index = peerIds.indexOf(provider ?? '')
      expect(index).toBeGreaterThan(0)
      const mine = await waitFor(async () => {
        const entries = (await (await fetch(`${api}/krill/v1/ledger`)).json()).entries.filter((e: any) => e.kind === 'embed')
        return entries.length > before ? entries : undefined
      }, 'the consumer to keep the embedding receipt')
      expect(mine[0]).toMatchObject({ kind: 'embed', status: 'signed', role: 'consumer', model: EMBED, provider, consumer: peerIds[0], completionTokens: 0 })
      expect(mine[0].promptTokens).toBeGreaterThan(0)
      const theirs = await waitFor(async () => {
        const entries = (await (await fetch(`${swarm.nodes[index].daemon.apiUrl}/krill/v1/ledger`)).json()).entries.filter((e: any) => e.kind === 'embed' && e.signedBytes === mine[0].signedBytes)
        return entries.length > 0 ? entries : undefined
      }, 'the provider to keep the countersigned receipt')
      expect(theirs[0]).toMatchObject({ status: 'signed', role: 'provider' })
    })

    it('refuses embeddings from a model no known copy can embed with, naming the capability', async () => {
      const err = await openai().embeddings.create({ model: CHAT, input: 'x' }).catch(e => e)
      expect(err).toBeInstanceOf(OpenAI.BadRequestError)
      expect(err.message).toMatch(/does not support embedding/)
      expect(standins.flatMap(s => s.embedRequests)).toHaveLength(0)
    })
  })

  describe('capabilities', () => {
    it('sends a tool request only to the copy with tools', async () => {
      for (let i = 0; i < 4; i++) {
        const res = await openai().chat.completions.create({ model: CHAT, tools: TOOLS, messages: [{ role: 'user', content: 'weather?' }] })
        expect(res.choices[0].message.content).toBe(SCRIPT)
      }
      expect(standins[0].requests).toHaveLength(0)
      expect(standins[1].requests).toHaveLength(4)
    })

    it('sends an image request only to the copy with vision', async () => {
      for (let i = 0; i < 4; i++) {
        await new Ollama({ host: api }).chat({ model: VISION, messages: [{ role: 'user', content: 'what is this?', images: [PNG] }] })
      }
      expect(standins[0].requests).toHaveLength(4)
      expect(standins[1].requests).toHaveLength(0)
    })

    it('/api/show through krill equals the provider\'s own', async () => {
      const krill = new Ollama({ host: api })
      for (const [model, at] of [[EMBED, 0], [VISION, -1]] as const) {
        const res = await fetch(`${api}/api/show`, { method: 'POST', body: JSON.stringify({ model }) })
        const provider = res.headers.get('x-krill-provider')
        const index = peerIds.indexOf(provider ?? '')
        expect(index).toBeGreaterThan(0)
        const own = await new Ollama({ host: standins[index - 1].url }).show({ model })
        expect(await res.json()).toEqual(JSON.parse(JSON.stringify(own)))
        void at
      }
      const shown = await krill.show({ model: EMBED })
      expect(shown.capabilities).toEqual(['embedding'])
      expect(shown.template).toBe('{{ .Prompt }}')
    })

    it('lists real modification times and capabilities in /api/tags and /v1/models', async () => {
      const tags = await new Ollama({ host: api }).list()
      const own = (await direct().list()).models
      for (const m of own) {
        const listed = tags.models.find(t => t.name === m.name)
        expect(new Date(listed!.modified_at).toISOString()).toBe(new Date(m.modified_at).toISOString())
      }
      expect(tags.models.find(t => t.name === EMBED)).toMatchObject({ capabilities: ['embedding'] })
      const models = await openai().models.list()
      const embed = models.data.find(m => m.id === EMBED)!
      expect(embed.created).toBe(Math.floor(new Date(own.find(m => m.name === EMBED)!.modified_at).getTime() / 1000))
      expect(embed.created).toBeGreaterThan(1_700_000_000)
    })

    it('/api/ps leaves out what krill does not know', async () => {
      for (const s of standins) s.knobs.firstTokenDelayMs = 800
      const pending = new Ollama({ host: api }).chat({ model: CHAT, messages: [{ role: 'user', content: 'x' }] })
      await waitFor(() => standins.some(s => s.requests.length > 0), 'the chat to reach a provider')
      const ps = await (await fetch(`${api}/api/ps`)).json()
      expect(ps.models).toHaveLength(1)
      expect(ps.models[0]).toMatchObject({ name: CHAT, running: 1, context_length: 131_072 })
      expect(ps.models[0]).not.toHaveProperty('expires_at')
      expect(ps.models[0]).not.toHaveProperty('size_vram')
      await pending
    })
  })

  describe('who answers', () => {
    it('names the provider in x-krill-provider, for chats, embeddings and completions', async () => {
      const chat = await openai().chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }).withResponse()
      const chatServer = standins.findIndex(s => s.requests.length > 0) + 1
      expect(chat.response.headers.get('x-krill-provider')).toBe(peerIds[chatServer])

      const embed = await fetch(`${api}/api/embed`, { method: 'POST', body: JSON.stringify({ model: EMBED, input: 'x' }) })
      expect(embed.headers.get('x-krill-provider')).toBe(peerIds[embeddedBy()])

      const stream = await fetch(`${api}/api/chat`, { method: 'POST', body: JSON.stringify({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }) })
      expect(peerIds.slice(1)).toContain(stream.headers.get('x-krill-provider'))
      await stream.text()

      // what the node answers itself says so too
      expect((await fetch(`${api}/api/tags`)).headers.get('x-krill-provider')).toBe('local')

      // a provider's own API embeds on its own Ollama, through its slots
      const own = await fetch(`${swarm.nodes[1].daemon.apiUrl}/api/embed`, { method: 'POST', body: JSON.stringify({ model: EMBED, input: 'x' }) })
      expect(own.headers.get('x-krill-provider')).toBe('local')
      expect((await own.json()).embeddings[0]).toEqual((await direct().embed({ model: EMBED, input: 'x' })).embeddings[0])
    })

    it('x-krill-peer pins a request to one peer, 404 when it does not serve the model, 503 when unreachable', async () => {
      for (let i = 0; i < 4; i++) {
        const res = await openai({ 'x-krill-peer': peerIds[1] }).chat.completions.create({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }).withResponse()
        expect(res.response.headers.get('x-krill-provider')).toBe(peerIds[1])
      }
      expect(standins[0].requests).toHaveLength(4)
      expect(standins[1].requests).toHaveLength(0)
      // pinned embeddings
      const e = await fetch(`${api}/api/embed`, { method: 'POST', headers: { 'x-krill-peer': peerIds[2] }, body: JSON.stringify({ model: EMBED, input: 'x' }) })
      expect(e.headers.get('x-krill-provider')).toBe(peerIds[2])
      expect(standins[1].embedRequests).toHaveLength(1)
      // the consumer itself serves nothing
      const local = await fetch(`${api}/api/chat`, { method: 'POST', headers: { 'x-krill-peer': peerIds[0] }, body: JSON.stringify({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }) })
      expect(local.status).toBe(404)
      // a known peer that does not serve the model
      const notServed = await fetch(`${api}/api/chat`, { method: 'POST', headers: { 'x-krill-peer': peerIds[1] }, body: JSON.stringify({ model: 'qwen3:8b', messages: [{ role: 'user', content: 'x' }] }) })
      expect(notServed.status).toBe(404)
      expect((await notServed.json()).error).toMatch(/does not serve/)
      // a peer nobody can reach: 503, and never a failover
      const nowhere = '12D3KooWGzMSLxUGXnR3yLLhvASyXfBhRHgMwZWEWWHSq4Yny2Yg'
      const unreachable = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'x-krill-peer': nowhere }, body: JSON.stringify({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }) })
      expect(unreachable.status).toBe(503)
      expect((await unreachable.json()).error.message).toMatch(/could not be reached/)
      const garbage = await fetch(`${api}/api/chat`, { method: 'POST', headers: { 'x-krill-peer': 'not-a-peer' }, body: JSON.stringify({ model: CHAT, messages: [{ role: 'user', content: 'x' }] }) })
      expect(garbage.status).toBe(400)
      expect(standins[1].requests).toHaveLength(0)
    }, 60_000)
  })

  describe('completions and generate', () => {
    it('answers /v1/completions streamed and not', async () => {
      const whole = await openai().completions.create({ model: CHAT, prompt: 'say hello' })
      expect(whole.object).toBe('text_completion')
      expect(whole.choices[0]).toMatchObject({ text: SCRIPT, index: 0, finish_reason: 'stop' })
      expect(whole.usage?.completion_tokens).toBe(DEFAULT_TOKENS.length)
      let text = ''
      let finish: string | null = null
      for await (const chunk of await openai().completions.create({ model: CHAT, prompt: 'say hello', stream: true })) {
        text += chunk.choices[0]?.text ?? ''
        finish = chunk.choices[0]?.finish_reason ?? finish
      }
      expect(text).toBe(SCRIPT)
      expect(finish).toBe('stop')
      const prompt = standins.flatMap(s => s.requests).map(r => r.body.messages)
      expect(prompt[0]).toEqual([{ role: 'user', content: 'say hello' }])
    })

    it('handles system and images in /api/generate, refuses suffix, raw and context clearly', async () => {
      const krill = new Ollama({ host: api })
      const res = await krill.generate({ model: VISION, prompt: 'what is this?', system: 'be brief', images: [PNG] })
      expect(res.response).toBe(SCRIPT)
      expect(standins[0].requests[0].body.messages).toEqual([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'what is this?', images: [PNG] }])
      for (const extra of [{ suffix: 'end' }, { raw: true }, { context: [1, 2, 3] }]) {
        const err = await krill.generate({ model: CHAT, prompt: 'x', ...extra }).catch(e => e)
        expect(err.status_code).toBe(400)
        expect(err.error).toMatch(/not supported through krill/)
      }
    })
  })

  describe('dialects', () => {
    it('answers unknown routes in the caller\'s dialect, and model management with 501', async () => {
      const ollamaStyle = await fetch(`${api}/api/nope`, { method: 'POST' })
      expect(ollamaStyle.status).toBe(404)
      expect(typeof (await ollamaStyle.json()).error).toBe('string')
      const err = await new Ollama({ host: api }).pull({ model: 'llama3.2' }).catch(e => e)
      expect(err.status_code).toBe(501)
      expect(err.error).toMatch(/ollama pull/)
      for (const path of ['/api/push', '/api/create', '/api/copy', '/api/delete']) {
        const res = await fetch(`${api}${path}`, { method: path === '/api/delete' ? 'DELETE' : 'POST', body: '{}' })
        expect(res.status).toBe(501)
        expect((await res.json()).error).toMatch(/does not manage them/)
      }
      const openaiStyle = await fetch(`${api}/v1/nope`, { method: 'POST' })
      expect(openaiStyle.status).toBe(404)
      expect((await openaiStyle.json()).error).toMatchObject({ message: expect.any(String), type: 'invalid_request_error' })
    })
  })

  describe('a provider node that dies', () => {
    it('fails an embedding over to the other provider, invisibly', async () => {
      for (const s of standins) s.knobs.embedDelayMs = 1_000
      const pending = openai().embeddings.create({ model: EMBED, input: ['the provider dies'] }).withResponse()
      const first = await waitFor(() => { const i = standins.findIndex(s => s.embedRequests.length > 0); return i >= 0 ? i + 1 : undefined }, 'a provider to receive the embedding')
      nodeDown = true
      // as in a crash: every connection of the provider is reset at once (no drain,
      // no withdrawal), and its libp2p goes away
      const dying = swarm.nodes[first].daemon.libp2p
      for (const c of dying.getConnections()) c.abort(new Error('provider crashed'))
      void dying.stop()
      const { data, response } = await pending
      expect(response.headers.get('x-krill-provider')).toBe(peerIds[3 - first])
      standins[2 - first].knobs.embedDelayMs = 0
      const want = (await new Ollama({ host: standins[2 - first].url }).embed({ model: EMBED, input: ['the provider dies'] })).embeddings[0]
      expect(float32(data.data[0].embedding)).toEqual(float32(want))
    })
  })
})
