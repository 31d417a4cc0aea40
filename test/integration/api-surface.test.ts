/**
 * The HTTP surface on one daemon serving its own stand-in: OpenAI and Ollama
 * shapes, streaming formats, errors, limits, and client aborts reaching Ollama.
 * Routing across peers is covered by api-network.test.ts.
 */
import { rm } from 'node:fs/promises'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'
const SCRIPT = DEFAULT_TOKENS.join('')
/** the daemon's body limit is 8 MiB */
const HUGE = 'x'.repeat(9 * 1024 * 1024)

let standin: OllamaStandin
let node: TestDaemon
let api: string

beforeAll(async () => {
  // a model that can do all a chat may ask (tools, thinking, images): these tests check the mapping, not the routing
  standin = await OllamaStandin.start({ models: [{ name: MODEL, capabilities: ['completion', 'tools', 'thinking', 'vision'] }] })
  node = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200 })
  api = node.daemon.apiUrl
  await waitFor(() => node.daemon.localModels().length === 1, 'the daemon to see its Ollama model')
})

afterAll(async () => {
  await node?.daemon.stop()
  if (node != null) await rm(node.config.dataDir, { recursive: true, force: true })
  await standin?.stop()
})

beforeEach(() => {
  standin.knobs = { tokens: [...DEFAULT_TOKENS], tokensPerSecond: 0, firstTokenDelayMs: 0 }
})

const openai = (): OpenAI => new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0 })
const ollama = (): Ollama => new Ollama({ host: api })

async function post (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number, json: any, text: string }> {
  const res = await fetch(`${api}${path}`, { method: 'POST', headers, body })
  const text = await res.text()
  let json: any
  try { json = JSON.parse(text) } catch { json = undefined }
  return { status: res.status, json, text }
}

describe('OpenAI-compatible API', () => {
  it('lists models', async () => {
    const list = await openai().models.list()
    expect(list.data.map(m => m.id)).toEqual([MODEL])
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'krill' })
    expect((await openai().models.retrieve(MODEL)).id).toBe(MODEL)
    await expect(openai().models.retrieve('nope:1b')).rejects.toBeInstanceOf(OpenAI.NotFoundError)
  })

  it('answers without streaming, with usage', async () => {
    const res = await openai().chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'say hello to me' }] })
    expect(res.object).toBe('chat.completion')
    expect(res.id).toMatch(/^chatcmpl-/)
    expect(res.choices[0].message).toMatchObject({ role: 'assistant', content: SCRIPT })
    expect(res.choices[0].finish_reason).toBe('stop')
    expect(res.usage).toEqual({ prompt_tokens: 4, completion_tokens: DEFAULT_TOKENS.length, total_tokens: 4 + DEFAULT_TOKENS.length })
  })

  it('streams SSE chunks like OpenAI: role first, deltas, finish, usage, [DONE]', async () => {
    const res = await fetch(`${api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] })
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const events = (await res.text()).split('\n\n').filter(s => s !== '')
    expect(events.every(e => e.startsWith('data: '))).toBe(true)
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events.slice(0, -1).map(e => JSON.parse(e.slice(6)))
    expect(chunks[0]).toMatchObject({ object: 'chat.completion.chunk', model: MODEL, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })
    expect(chunks[0].id).toMatch(/^chatcmpl-/)
    expect(typeof chunks[0].created).toBe('number')
    expect(chunks[0].system_fingerprint).toMatch(/^fp_/)
    expect(new Set(chunks.map(c => c.id)).size).toBe(1)
    const content = chunks.slice(1, -2).map(c => c.choices[0].delta.content)
    expect(content).toEqual(DEFAULT_TOKENS)
    // a token's chunk is the role chunk with the token for its delta, key for key (it is made from a template)
    for (const [i, c] of chunks.slice(1, -2).entries()) {
      const expected = { ...chunks[0], choices: [{ ...chunks[0].choices[0], delta: { content: DEFAULT_TOKENS[i] } }] }
      expect(JSON.stringify(c)).toBe(JSON.stringify(expected))
    }
    expect(chunks.at(-2)).toMatchObject({ choices: [{ delta: {}, finish_reason: 'stop' }], usage: null })
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 1, completion_tokens: DEFAULT_TOKENS.length, total_tokens: 1 + DEFAULT_TOKENS.length } })
  })

  it('streams through the openai client', async () => {
    const stream = await openai().chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    let finish: string | null = null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(text).toBe(SCRIPT)
    expect(finish).toBe('stop')
  })

  it('maps options, stop, max tokens, response_format, images and tools to the Ollama request', async () => {
    const png = Buffer.from('not really a png').toString('base64')
    await openai().chat.completions.create({
      model: MODEL,
      temperature: 0.2,
      top_p: 0.9,
      seed: 7,
      stop: 'END',
      max_completion_tokens: 3,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      response_format: { type: 'json_object' },
      tool_choice: 'auto',
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'rain' }
      ]
    })
    const body = standin.requests.at(-1)?.body
    expect(body.options).toEqual({ temperature: 0.2, top_p: 0.9, seed: 7, stop: ['END'], num_predict: 3, presence_penalty: 0.5, frequency_penalty: 0.25 })
    expect(body.format).toBe('json')
    expect(body.tools).toHaveLength(1)
    expect(body.messages).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'what is this?', images: [png] },
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'weather', arguments: { city: 'Oslo' } } }] },
      { role: 'tool', content: 'rain', tool_name: 'weather' }
    ])
  })

  it('passes a json_schema response format as the format, and drops tools for tool_choice none', async () => {
    const schema = { type: 'object', properties: { a: { type: 'number' } } }
    await openai().chat.completions.create({
      model: MODEL,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
      tool_choice: 'none',
      tools: [{ type: 'function', function: { name: 'weather' } }],
      messages: [{ role: 'user', content: 'hi' }]
    })
    const body = standin.requests.at(-1)?.body
    expect(body.format).toEqual(schema)
    expect(body.tools).toBeUndefined()
  })

  it('returns tool calls, streamed and not', async () => {
    standin.knobs.toolCalls = [{ function: { name: 'weather', arguments: { city: 'Oslo' } } }]
    const tools = [{ type: 'function' as const, function: { name: 'weather', parameters: { type: 'object' } } }]
    const res = await openai().chat.completions.create({ model: MODEL, tools, messages: [{ role: 'user', content: 'weather?' }] })
    expect(res.choices[0].finish_reason).toBe('tool_calls')
    const call = res.choices[0].message.tool_calls?.[0]
    expect(call).toMatchObject({ type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } })
    expect(call?.id).toMatch(/^call_/)

    const stream = await openai().chat.completions.create({ model: MODEL, tools, stream: true, messages: [{ role: 'user', content: 'weather?' }] })
    const calls: any[] = []
    let finish: string | null = null
    for await (const chunk of stream) {
      calls.push(...(chunk.choices[0]?.delta.tool_calls ?? []))
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(finish).toBe('tool_calls')
    expect(calls).toEqual([{ index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }])
  })

  it('reports length as the finish reason when max_tokens cuts the answer', async () => {
    const res = await openai().chat.completions.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] })
    expect(res.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: DEFAULT_TOKENS.slice(0, 2).join('') } })
  })

  it('answers an unknown model with 404 model_not_found', async () => {
    const err = await openai().chat.completions.create({ model: 'nope:1b', messages: [{ role: 'user', content: 'hi' }] }).catch(e => e)
    expect(err).toBeInstanceOf(OpenAI.NotFoundError)
    expect(err.code).toBe('model_not_found')
    expect(err.error).toMatchObject({ type: 'invalid_request_error', param: 'model' })
  })

  it('answers bad requests with 400 naming the field, in OpenAI shape', async () => {
    const missing = await post('/v1/chat/completions', JSON.stringify({ model: MODEL }))
    expect(missing.status).toBe(400)
    expect(missing.json.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' })
    expect(missing.json.error.message).toMatch(/^messages: /)

    const role = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }))
    expect(role.status).toBe(400)
    expect(role.json.error.param).toBe('messages[0].role')

    const remote = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://example.com/a.png' } }] }] }))
    expect(remote.status).toBe(400)
    expect(remote.json.error.message).toMatch(/data: URLs/)

    const n = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, n: 2, messages: [{ role: 'user', content: 'x' }] }))
    expect(n.status).toBe(400)
    expect(n.json.error.param).toBe('n')

    const badName = await post('/v1/chat/completions', JSON.stringify({ model: '../etc', messages: [{ role: 'user', content: 'x' }] }))
    expect(badName.status).toBe(400)
    expect(badName.json.error.message).toMatch(/model name/)
  })

  it('answers malformed JSON with 400 and a huge body with 413, and keeps serving', async () => {
    const bad = await post('/v1/chat/completions', '{"model": "x", "messages": [')
    expect(bad.status).toBe(400)
    expect(bad.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' })

    const huge = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: HUGE }] }))
    expect(huge.status).toBe(413)
    expect(huge.json.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' })

    const res = await openai().chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }] })
    expect(res.choices[0].message.content).toBe(SCRIPT)
  })

  it('parses JSON bodies sent without a JSON content type (curl -d)', async () => {
    const res = await post('/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(res.status).toBe(200)
    expect(res.json.choices[0].message.content).toBe(SCRIPT)
  })

  it('answers unknown /v1 paths with a 404 in OpenAI shape', async () => {
    const res = await post('/v1/images/generations', '{}')
    expect(res.status).toBe(404)
    expect(res.json.error.code).toBe('unknown_url')
  })

  it('aborts the Ollama request when the client goes away mid-stream', async () => {
    standin.knobs.tokensPerSecond = 10
    const ac = new AbortController()
    const stream = await openai().chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { signal: ac.signal })
    let got = 0
    // the openai client ends the iteration quietly on abort
    for await (const chunk of stream) {
      if ((chunk.choices[0]?.delta.content ?? '') !== '') got++
      if (got === 2) ac.abort()
    }
    expect(got).toBe(2)
    const aborted = await standin.waitForAbort(3_000)
    expect(aborted.tokensSent).toBeLessThan(DEFAULT_TOKENS.length)
  })

  it('aborts the Ollama request when a non-streaming client goes away before the first token', async () => {
    standin.knobs.firstTokenDelayMs = 5_000
    const ac = new AbortController()
    const pending = openai().chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, { signal: ac.signal })
    await standin.waitForRequests(standin.requests.length + 1, 3_000).catch(() => {})
    setTimeout(() => ac.abort(), 200)
    await expect(pending).rejects.toThrow()
    const aborted = await standin.waitForAbort(3_000)
    expect(aborted.tokensSent).toBe(0)
  })

  it('sends an error after streaming started as an SSE error event', async () => {
    standin.knobs.errorAfterTokens = 3
    const stream = await openai().chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().then(() => undefined, (e: unknown) => e)
    expect(text).toBe(DEFAULT_TOKENS.slice(0, 3).join(''))
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect((err as Error).message).toMatch(/unexpected EOF|no provider/)
  })
})

describe('Ollama-compatible API', () => {
  it('answers the probe on / and /api/version', async () => {
    const res = await fetch(`${api}/`)
    expect(await res.text()).toBe('Ollama is running')
    expect((await fetch(`${api}/`, { method: 'HEAD' })).status).toBe(200)
    expect((await ollama().version()).version).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('lists models with digests and details', async () => {
    const { models } = await ollama().list()
    expect(models).toHaveLength(1)
    expect(models[0]).toMatchObject({ name: MODEL, model: MODEL, details: { family: 'llama', parameter_size: '1.2B', quantization_level: 'Q8_0', format: 'gguf' } })
    expect(models[0].digest).toMatch(/^[0-9a-f]{64}$/)
  })

  it('streams /api/chat as NDJSON and answers stream:false with one object', async () => {
    const parts: string[] = []
    let last: any
    for await (const part of await ollama().chat({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'say hi' }] })) {
      parts.push(part.message.content)
      last = part
    }
    expect(parts.join('')).toBe(SCRIPT)
    expect(last).toMatchObject({ done: true, done_reason: 'stop', eval_count: DEFAULT_TOKENS.length, prompt_eval_count: 2 })
    expect(last.total_duration).toBeGreaterThan(0)

    const whole = await ollama().chat({ model: MODEL, messages: [{ role: 'user', content: 'say hi' }] })
    expect(whole).toMatchObject({ model: MODEL, done: true, done_reason: 'stop', message: { role: 'assistant', content: SCRIPT }, eval_count: DEFAULT_TOKENS.length })
  })

  it('passes tool calls through /api/chat', async () => {
    standin.knobs.toolCalls = [{ function: { name: 'weather', arguments: { city: 'Oslo' } } }]
    const res = await ollama().chat({ model: MODEL, messages: [{ role: 'user', content: 'weather?' }], tools: [{ type: 'function', function: { name: 'weather', description: 'w', parameters: { type: 'object', properties: {} } } }] })
    expect(res.message.tool_calls).toEqual([{ function: { name: 'weather', arguments: { city: 'Oslo' } } }])
  })

  it('serves /api/generate from prompt and system', async () => {
    const res = await ollama().generate({ model: MODEL, prompt: 'say hi', system: 'be kind', options: { temperature: 0, bogus_option: 1 } as any })
    expect(res).toMatchObject({ response: SCRIPT, done: true, done_reason: 'stop' })
    const body = standin.requests.at(-1)?.body
    expect(body.messages).toEqual([{ role: 'system', content: 'be kind' }, { role: 'user', content: 'say hi' }])
    expect(body.options).toEqual({ temperature: 0 })
    let text = ''
    for await (const part of await ollama().generate({ model: MODEL, prompt: 'say hi', stream: true })) text += part.response
    expect(text).toBe(SCRIPT)
  })

  it('shows a model and lists running requests', async () => {
    const show = await ollama().show({ model: MODEL })
    expect(show.details).toMatchObject({ family: 'llama' })
    expect(show.model_info).toMatchObject({ 'llama.context_length': 131_072 })

    standin.knobs.firstTokenDelayMs = 500
    // /api/ps lists what the local Ollama has loaded, as Ollama does: keep_alive 0
    // unloads the model at once, so only the running request keeps it listed
    const pending = ollama().chat({ model: MODEL, keep_alive: 0, messages: [{ role: 'user', content: 'x' }] })
    await standin.waitForRequests(standin.requests.length + 1, 3_000)
    const ps = await ollama().ps()
    expect(ps.models.map(m => m.name)).toEqual([MODEL])
    await pending
    expect((await ollama().ps()).models).toEqual([])
  })

  it('answers an unknown model with 404 in Ollama wording', async () => {
    const err = await ollama().chat({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }).catch(e => e)
    expect(err.status_code).toBe(404)
    expect(err.error).toBe('model "nope:1b" not found, try pulling it first')
    const show = await post('/api/show', JSON.stringify({ model: 'nope:1b' }))
    expect(show.status).toBe(404)
    expect(show.json).toEqual({ error: "model 'nope:1b' not found" })
  })

  it('answers malformed JSON, missing fields and huge bodies in Ollama shape, and keeps serving', async () => {
    const bad = await post('/api/chat', '{"model":')
    expect(bad.status).toBe(400)
    expect(typeof bad.json.error).toBe('string')
    const missing = await post('/api/chat', JSON.stringify({ messages: [] }))
    expect(missing.status).toBe(400)
    expect(missing.json.error).toMatch(/^model: /)
    const huge = await post('/api/generate', JSON.stringify({ model: MODEL, prompt: HUGE }))
    expect(huge.status).toBe(413)
    expect(typeof huge.json.error).toBe('string')
    const res = await ollama().generate({ model: MODEL, prompt: 'still there?' })
    expect(res.response).toBe(SCRIPT)
  })

  it('loads a model on an empty chat, like Ollama', async () => {
    const res = await post('/api/chat', JSON.stringify({ model: MODEL, messages: [] }))
    expect(res.json).toMatchObject({ model: MODEL, done: true, done_reason: 'load' })
  })

  it('sends a mid-stream failure as an error line', async () => {
    standin.knobs.errorAfterTokens = 2
    const res = await post('/api/chat', JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }))
    const lines = res.text.trim().split('\n').map(l => JSON.parse(l))
    expect(lines.slice(0, 2).map(l => l.message.content)).toEqual(DEFAULT_TOKENS.slice(0, 2))
    expect(lines.at(-1)).toEqual({ error: expect.any(String) })
  })
})

describe('a daemon that stops while it streams', () => {
  it('lets the stream run for the grace time, then ends it with an error instead of hanging', async () => {
    const slow = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokensPerSecond: 2 } })
    const d = await startTestDaemon({ ollama: slow.url, modelRefreshMs: 200 })
    try {
      await waitFor(() => d.daemon.localModels().length === 1, 'the daemon to see its Ollama model')
      const client = new OpenAI({ baseURL: `${d.daemon.apiUrl}/v1`, apiKey: 'x', maxRetries: 0 })
      const stream = await client.chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] })
      const failure = (async () => {
        for await (const chunk of stream) expect(chunk.object).toBe('chat.completion.chunk')
      })().then(() => undefined, (e: unknown) => e)
      const started = Date.now()
      await d.daemon.stop()
      const stoppedAfter = Date.now() - started
      // the grace is 5 s, then the API, libp2p and the datastore close; a socket the
      // stream's end left idle once held the API's close for its 5 s keep-alive
      expect(stoppedAfter).toBeLessThan(8_000)
      const err = await failure
      expect(err).toBeInstanceOf(OpenAI.APIError)
      expect((err as Error).message).toMatch(/shutting down/)
      await slow.waitForAbort(2_000)
    } finally {
      await d.daemon.stop()
      await rm(d.config.dataDir, { recursive: true, force: true })
      await slow.stop()
    }
  })
})
