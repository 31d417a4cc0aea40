import { createHash } from 'node:crypto'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { Ollama } from 'ollama'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'

// The stand-in is driven with the official client: if the client accepts it, it speaks Ollama.
describe('OllamaStandin', () => {
  let standin: OllamaStandin
  let client: Ollama

  beforeEach(async () => {
    standin = await OllamaStandin.start({
      models: [
        { name: 'llama3.2:1b' },
        { name: 'qwen3:8b', family: 'qwen3', parameterSize: '8.2B', quantization: 'Q4_K_M', contextLength: 40960, digest: 'a'.repeat(64) }
      ]
    })
    client = new Ollama({ host: standin.url })
  })

  afterEach(async () => {
    await standin.stop()
  })

  it('listens on 127.0.0.1 and reports a version', async () => {
    expect(standin.url).toBe(`http://127.0.0.1:${standin.port}`)
    expect((await client.version()).version).toMatch(/^0\.\d+\.\d+$/)
  })

  it('lists models with digests and details', async () => {
    const { models } = await client.list()
    expect(models.map(m => m.name)).toEqual(['llama3.2:1b', 'qwen3:8b'])
    const llama = models[0]
    expect(llama.model).toBe('llama3.2:1b')
    expect(llama.digest).toBe(createHash('sha256').update('llama3.2:1b').digest('hex'))
    expect(llama.size).toBeGreaterThan(0)
    expect(new Date(llama.modified_at).getTime()).not.toBeNaN()
    expect(models[1].digest).toBe('a'.repeat(64))
    expect(models[1].details).toEqual({
      parent_model: '', format: 'gguf', family: 'qwen3', families: ['qwen3'], parameter_size: '8.2B', quantization_level: 'Q4_K_M'
    })
  })

  it('adds and removes models at runtime', async () => {
    standin.addModel({ name: 'gemma3' })
    expect((await client.list()).models.map(m => m.name)).toContain('gemma3')
    standin.removeModel('gemma3')
    expect((await client.list()).models.map(m => m.name)).not.toContain('gemma3')
  })

  it('streams a chat token by token and ends with done and counters', async () => {
    const parts = []
    const stream = await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'say hello to me' }] })
    for await (const part of stream) parts.push(part)
    const last = parts.at(-1)!
    expect(parts.slice(0, -1).map(p => p.message.content)).toEqual(DEFAULT_TOKENS)
    expect(parts.slice(0, -1).every(p => !p.done && p.message.role === 'assistant')).toBe(true)
    expect(last.done).toBe(true)
    expect(last.done_reason).toBe('stop')
    expect(last.message.content).toBe('')
    expect(last.eval_count).toBe(DEFAULT_TOKENS.length)
    expect(last.prompt_eval_count).toBe(4)
    for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'] as const) expect(last[k]).toBeGreaterThan(0)
    expect(standin.requests).toHaveLength(1)
    expect(standin.requests[0]).toMatchObject({ path: '/api/chat', completed: true, aborted: false, tokensSent: DEFAULT_TOKENS.length, status: 200 })
  })

  it('continues a trailing partial assistant message instead of starting over, like Ollama', async () => {
    const partial = DEFAULT_TOKENS.slice(0, 5).join('')
    const res = await client.chat({
      model: 'llama3.2:1b',
      stream: false,
      messages: [{ role: 'user', content: 'say hello' }, { role: 'assistant', content: partial }]
    })
    expect(res.message.content).toBe(DEFAULT_TOKENS.slice(5).join(''))
    expect(res.eval_count).toBe(DEFAULT_TOKENS.length - 5)
    // an assistant message that is not a prefix of the script gets the whole script
    const other = await client.chat({ model: 'llama3.2:1b', stream: false, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'unrelated' }] })
    expect(other.message.content).toBe(DEFAULT_TOKENS.join(''))
  })

  it('streams unless stream is false, like Ollama', async () => {
    const res = await fetch(`${standin.url}/api/chat`, { method: 'POST', body: JSON.stringify({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(res.headers.get('content-type')).toBe('application/x-ndjson')
    const lines = (await res.text()).trim().split('\n').map(l => JSON.parse(l))
    expect(lines).toHaveLength(DEFAULT_TOKENS.length + 1)
    expect(lines.at(-1).done).toBe(true)
  })

  it('answers stream:false with one object', async () => {
    const res = await client.chat({ model: 'llama3.2:1b', stream: false, messages: [{ role: 'user', content: 'hi there' }] })
    expect(res.message).toEqual({ role: 'assistant', content: DEFAULT_TOKENS.join('') })
    expect(res.done).toBe(true)
    expect(res.eval_count).toBe(DEFAULT_TOKENS.length)
    expect(res.prompt_eval_count).toBe(2)
  })

  it('cuts the script at num_predict with done_reason length', async () => {
    const res = await client.chat({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 3 } })
    expect(res.message.content).toBe(DEFAULT_TOKENS.slice(0, 3).join(''))
    expect(res.done_reason).toBe('length')
    expect(res.eval_count).toBe(3)
  })

  it('streams /api/generate with response tokens and context', async () => {
    const parts = []
    for await (const p of await client.generate({ model: 'llama3.2:1b', prompt: 'one two three', stream: true })) parts.push(p)
    expect(parts.slice(0, -1).map(p => p.response)).toEqual(DEFAULT_TOKENS)
    const last = parts.at(-1)!
    expect(last).toMatchObject({ done: true, done_reason: 'stop', response: '', prompt_eval_count: 3, eval_count: DEFAULT_TOKENS.length })
    expect(last.context).toHaveLength(3 + DEFAULT_TOKENS.length)
    const whole = await client.generate({ model: 'llama3.2:1b', prompt: 'x' })
    expect(whole.response).toBe(DEFAULT_TOKENS.join(''))
  })

  it('streams thinking before content and tool calls when asked', async () => {
    standin.knobs.thinking = ['Let', ' me', ' think']
    standin.knobs.tokens = ['Calling', ' a', ' tool']
    standin.knobs.toolCalls = [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }]
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
    const parts = []
    for await (const p of await client.chat({ model: 'qwen3:8b', stream: true, think: true, tools, messages: [{ role: 'user', content: 'weather?' }] })) parts.push(p)
    expect(parts.slice(0, 3).map(p => p.message.thinking)).toEqual(['Let', ' me', ' think'])
    expect(parts.slice(3, 6).map(p => p.message.content)).toEqual(['Calling', ' a', ' tool'])
    expect(parts[5].message.tool_calls?.map(t => t.function)).toEqual([{ index: 0, name: 'get_weather', arguments: { city: 'Paris' } }])
    expect(parts.slice(0, 5).some(p => p.message.tool_calls != null)).toBe(false)
    expect(parts.at(-1)!.eval_count).toBe(6)

    // without think and tools: neither thinking nor tool calls
    const plain = await client.chat({ model: 'qwen3:8b', messages: [{ role: 'user', content: 'x' }] })
    expect(plain.message).toEqual({ role: 'assistant', content: 'Calling a tool' })
  })

  it('rejects thinking or tools for a model without the capability, like Ollama', async () => {
    standin.addModel({ name: 'tiny', capabilities: ['completion'] })
    await expect(client.chat({ model: 'tiny', think: true, messages: [{ role: 'user', content: 'x' }] }))
      .rejects.toMatchObject({ status_code: 400, error: '"tiny" does not support thinking' })
  })

  it('answers an unknown model with 404 and Ollama wording', async () => {
    await expect(client.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }))
      .rejects.toMatchObject({ name: 'ResponseError', status_code: 404, error: 'model "nope" not found, try pulling it first' })
    expect(standin.requests[0]).toMatchObject({ status: 404, completed: false, aborted: false })
  })

  it('matches model names without tag and in any case like Ollama', async () => {
    standin.addModel({ name: 'mistral:latest' })
    const res = await client.chat({ model: 'Mistral', messages: [{ role: 'user', content: 'x' }] })
    expect(res.model).toBe('Mistral')
    expect(res.done).toBe(true)
  })

  it('answers bad JSON with 400 and an error body, unknown paths with 404', async () => {
    const bad = await fetch(`${standin.url}/api/chat`, { method: 'POST', body: '{nope' })
    expect(bad.status).toBe(400)
    expect(typeof ((await bad.json()) as { error?: unknown }).error).toBe('string')
    expect(standin.requests[0].body).toBe('{nope')
    const missing = await fetch(`${standin.url}/api/chat`, { method: 'POST', body: JSON.stringify({ messages: [] }) })
    expect(missing.status).toBe(400)
    expect(await missing.json()).toEqual({ error: 'model is required' })
    expect((await fetch(`${standin.url}/api/nothing`)).status).toBe(404)
    expect((await fetch(`${standin.url}/api/chat`)).status).toBe(405)
  })

  it('fails on demand with failWith', async () => {
    standin.knobs.failWith = { status: 503, error: 'server busy, please try again.  maximum pending requests exceeded' }
    await expect(client.chat({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'x' }] }))
      .rejects.toMatchObject({ status_code: 503, error: 'server busy, please try again.  maximum pending requests exceeded' })
  })

  it('shows model info with the context length and capabilities', async () => {
    const show = await client.show({ model: 'qwen3:8b' })
    const info = show.model_info as unknown as Record<string, unknown>
    expect(info['general.architecture']).toBe('qwen3')
    expect(info['qwen3.context_length']).toBe(40960)
    expect(info['general.parameter_count']).toBe(8_200_000_000)
    expect(show.capabilities).toContain('completion')
    expect(show.details.family).toBe('qwen3')
    expect(typeof show.modelfile).toBe('string')
    expect(typeof show.template).toBe('string')
    expect(typeof show.parameters).toBe('string')
    await expect(client.show({ model: 'nope' })).rejects.toMatchObject({ status_code: 404 })
  })

  it('lists loaded models in /api/ps after use, and unloads with keep_alive 0', async () => {
    expect((await client.ps()).models).toEqual([])
    await client.chat({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'x' }] })
    const ps = (await client.ps()).models
    expect(ps.map(m => m.name)).toEqual(['llama3.2:1b'])
    expect(new Date(ps[0].expires_at).getTime()).toBeGreaterThan(Date.now())
    const unload = await client.chat({ model: 'llama3.2:1b', messages: [], keep_alive: 0 })
    expect(unload.done_reason).toBe('unload')
    expect((await client.ps()).models).toEqual([])
  })

  it('records a client abort and stops emitting tokens at once', async () => {
    standin.knobs.tokensPerSecond = 50
    standin.knobs.tokens = Array.from({ length: 100 }, (_, i) => ` t${i}`)
    const stream = await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })
    let seen = 0
    await expect((async () => {
      for await (const _part of stream) {
        if (++seen === 3) stream.abort()
      }
    })()).rejects.toThrow()
    const rec = await standin.waitForAbort(1000)
    expect(rec.aborted).toBe(true)
    expect(rec.completed).toBe(false)
    expect(rec.abortedAt! - rec.startedAt).toBeLessThan(1000)
    const sentAtAbort = rec.tokensSent
    expect(sentAtAbort).toBeLessThan(10)
    await sleep(150)
    expect(rec.tokensSent).toBe(sentAtAbort)
    // each abort is handed out once
    await expect(standin.waitForAbort(50)).rejects.toThrow(/no client abort/)
  })

  it('records an abort during the first-token delay', async () => {
    standin.knobs.firstTokenDelayMs = 2000
    const ac = new AbortController()
    const c2 = new Ollama({ host: standin.url, fetch: async (url, init) => await fetch(url, { ...init, signal: ac.signal }) })
    const pending = c2.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })
    await standin.waitForRequests(1)
    ac.abort()
    await expect(pending).rejects.toThrow()
    const rec = await standin.waitForAbort(1000)
    expect(rec.tokensSent).toBe(0)
  })

  it('dies mid-stream with dieAfterTokens (not recorded as a client abort)', async () => {
    standin.knobs.dieAfterTokens = 4
    const got: string[] = []
    await expect((async () => {
      for await (const p of await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })) got.push(p.message.content)
    })()).rejects.toThrow()
    expect(got).toEqual(DEFAULT_TOKENS.slice(0, 4))
    expect(standin.requests[0]).toMatchObject({ tokensSent: 4, aborted: false, completed: false })
  })

  it('sends an NDJSON error line with errorAfterTokens', async () => {
    standin.knobs.errorAfterTokens = 2
    const got: string[] = []
    await expect((async () => {
      for await (const p of await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })) got.push(p.message.content)
    })()).rejects.toThrow(/error was encountered while running the model/)
    expect(got).toEqual(DEFAULT_TOKENS.slice(0, 2))
    // before any token, the error is an HTTP 500 like Ollama's
    standin.knobs.errorAfterTokens = 0
    await expect(client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] }))
      .rejects.toMatchObject({ status_code: 500 })
  })

  it('ends a stream cleanly without the done line with endAfterTokens', async () => {
    standin.knobs.endAfterTokens = 2
    const got: string[] = []
    await expect((async () => {
      for await (const p of await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })) got.push(p.message.content)
    })()).rejects.toThrow(/Did not receive done/)
    expect(got).toEqual(DEFAULT_TOKENS.slice(0, 2))
    expect(standin.requests[0]).toMatchObject({ aborted: false, completed: false, tokensSent: 2 })
  })

  it('logs every HTTP request in httpLog', async () => {
    await client.list()
    await client.show({ model: 'qwen3:8b' })
    await client.version()
    expect(standin.httpLog.map(h => `${h.method} ${h.path}`)).toEqual(['GET /api/tags', 'POST /api/show', 'GET /api/version'])
    expect(standin.requests).toHaveLength(0)
  })

  it('paces tokens with tokensPerSecond', async () => {
    standin.knobs.tokensPerSecond = 40
    standin.knobs.tokens = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']
    const t0 = Date.now()
    await client.chat({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'x' }] })
    // 8 gaps of 25 ms
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
  })

  it('honors backpressure when the client does not read', async () => {
    const big = 'x'.repeat(1024)
    standin.knobs.tokens = Array.from({ length: 20_000 }, () => big)
    const body = JSON.stringify({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'x' }] })
    let received = 0
    const done = new Promise<void>((resolve, reject) => {
      const req = http.request(`${standin.url}/api/chat`, { method: 'POST' }, res => {
        res.pause()
        setTimeout(() => {
          // 20 MB cannot all fit in socket buffers: the stand-in must be waiting
          try {
            expect(standin.requests[0].tokensSent).toBeLessThan(20_000)
          } catch (err) { reject(err); return }
          res.on('data', (c: Buffer) => { received += c.length })
          res.on('end', () => resolve())
          res.resume()
        }, 300)
      })
      req.on('error', reject)
      req.end(body)
    })
    await done
    expect(received).toBeGreaterThan(20_000 * 1024)
    expect(standin.requests[0].completed).toBe(true)
  })

  it('goes down (connection refused) and comes back on the same port', async () => {
    const port = standin.port
    await standin.goDown()
    await expect(client.list()).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } })
    await standin.comeUp()
    expect(standin.port).toBe(port)
    expect((await client.list()).models).toHaveLength(2)
  })

  it('kills in-flight streams when going down, without calling it a client abort', async () => {
    standin.knobs.tokensPerSecond = 20
    const stream = await client.chat({ model: 'llama3.2:1b', stream: true, messages: [{ role: 'user', content: 'x' }] })
    const consumed = (async () => { for await (const _ of stream) { /* drain */ } })()
    await sleep(80)
    await standin.goDown()
    await expect(consumed).rejects.toThrow()
    expect(standin.requests[0]).toMatchObject({ aborted: false, completed: false })
  })
})
