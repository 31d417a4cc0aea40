/**
 * The local endpoint routing across a real loopback swarm. Node 0 is the consumer
 * (its Ollama is a dead port); nodes 1 and 2 serve the same model from their own
 * stand-ins. Clients are the real `openai` and `ollama` npm packages.
 */
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import OpenAI from 'openai'
import { Ollama } from 'ollama'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
import { startSwarm, tempDir, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'
const SCRIPT = DEFAULT_TOKENS.join('')

interface Network {
  swarm: Swarm
  consumer: TestDaemon
  standins: OllamaStandin[]
  stop: () => Promise<void>
}

/** node 0 consumes; nodes 1 and 2 serve MODEL from standins[0] and standins[1] */
async function startNetwork (): Promise<Network> {
  const standins = [await OllamaStandin.start({ models: [{ name: MODEL }] }), await OllamaStandin.start({ models: [{ name: MODEL }] })]
  const swarm = await startSwarm(3, i => i === 0 ? {} : { ollama: standins[i - 1].url, modelRefreshMs: 200 })
  const consumer = swarm.nodes[0]
  await waitFor(() => consumer.daemon.providers.providersFor(MODEL).length === 2, 'the consumer to learn both providers')
  return {
    swarm,
    consumer,
    standins,
    stop: async () => {
      await swarm.stop()
      await Promise.allSettled(standins.map(async s => { await s.stop() }))
    }
  }
}

const openaiAt = (api: string): OpenAI => new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 })

/** the index of the stand-in that received a chat, once one has */
async function servingIndex (standins: OllamaStandin[]): Promise<number> {
  return await waitFor(() => {
    const i = standins.findIndex(s => s.requests.length > 0)
    return i >= 0 ? i + 1 : undefined
  }, 'a provider to receive the chat') - 1
}

describe('the local API over a 3-node swarm', () => {
  let net: Network

  beforeAll(async () => { net = await startNetwork() })
  afterAll(async () => { await net?.stop() })
  afterEach(() => {
    for (const s of net.standins) {
      s.knobs = { tokens: [...DEFAULT_TOKENS], tokensPerSecond: 0, firstTokenDelayMs: 0 }
      s.requests = []
    }
  })

  it('lists the network model through both APIs', async () => {
    const api = net.consumer.daemon.apiUrl
    const list = await openaiAt(api).models.list()
    expect(list.data.map(m => m.id)).toEqual([MODEL])
    const { models } = await new Ollama({ host: api }).list()
    expect(models).toHaveLength(1)
    expect(models[0]).toMatchObject({ name: MODEL, details: { family: 'llama', parameter_size: '1.2B', quantization_level: 'Q8_0' } })
    expect(models[0].digest).toMatch(/^[0-9a-f]{64}$/)
  })

  it('answers streaming and non-streaming chats from a provider, with usage', async () => {
    const client = openaiAt(net.consumer.daemon.apiUrl)
    const whole = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'say hello' }] })
    expect(whole.choices[0].message.content).toBe(SCRIPT)
    expect(whole.usage).toEqual({ prompt_tokens: 2, completion_tokens: DEFAULT_TOKENS.length, total_tokens: 2 + DEFAULT_TOKENS.length })

    const stream = await client.chat.completions.create({ model: MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'say hello' }] })
    let text = ''
    let usage: OpenAI.CompletionUsage | undefined | null
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      usage = chunk.usage ?? usage
    }
    expect(text).toBe(SCRIPT)
    expect(usage).toEqual({ prompt_tokens: 2, completion_tokens: DEFAULT_TOKENS.length, total_tokens: 2 + DEFAULT_TOKENS.length })
    // the consumer's own Ollama is dead: both answers came from the providers
    expect(net.standins.flatMap(s => s.requests)).toHaveLength(2)
  })

  it('answers through the ollama client, streamed and not', async () => {
    const ollama = new Ollama({ host: net.consumer.daemon.apiUrl })
    const whole = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'say hello' }] })
    expect(whole).toMatchObject({ message: { content: SCRIPT }, done: true, done_reason: 'stop', eval_count: DEFAULT_TOKENS.length, prompt_eval_count: 2 })
    let text = ''
    for await (const part of await ollama.generate({ model: MODEL, prompt: 'say hello', stream: true })) text += part.response
    expect(text).toBe(SCRIPT)
  })

  it('passes tool calls through the network', async () => {
    for (const s of net.standins) s.knobs.toolCalls = [{ function: { name: 'weather', arguments: { city: 'Oslo' } } }]
    const res = await openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({
      model: MODEL,
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      messages: [{ role: 'user', content: 'weather in Oslo?' }]
    })
    expect(res.choices[0].finish_reason).toBe('tool_calls')
    expect(res.choices[0].message.tool_calls?.[0]).toMatchObject({ type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } })
    const served = net.standins.flatMap(s => s.requests)
    expect(served[0].body.tools).toEqual([{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }])
  })

  it('answers an unknown model with 404', async () => {
    const err = await openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }).catch(e => e)
    expect(err).toBeInstanceOf(OpenAI.NotFoundError)
    const ollamaErr = await new Ollama({ host: net.consumer.daemon.apiUrl }).chat({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] }).catch(e => e)
    expect(ollamaErr.status_code).toBe(404)
  })

  it('spreads concurrent chats over both providers by free capacity', async () => {
    for (const s of net.standins) s.knobs.firstTokenDelayMs = 300
    const client = openaiAt(net.consumer.daemon.apiUrl)
    const answers = await Promise.all(Array.from({ length: 6 }, async () =>
      await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] })))
    expect(answers.map(a => a.choices[0].message.content)).toEqual(Array(6).fill(SCRIPT))
    // each chat running on a provider takes one of its free slots, so the next tends to
    // go to the other (announcements racing the chats make an exact 3/3 split unsure)
    for (const s of net.standins) expect(s.requests.length).toBeGreaterThanOrEqual(2)
  })

  it('carries a client abort through the network to the provider\'s Ollama', async () => {
    for (const s of net.standins) s.knobs.tokensPerSecond = 10
    const ac = new AbortController()
    const stream = await openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'x' }] }, { signal: ac.signal })
    let got = 0
    for await (const chunk of stream) {
      if ((chunk.choices[0]?.delta.content ?? '') !== '') got++
      if (got === 2) ac.abort()
    }
    const i = await servingIndex(net.standins)
    const aborted = await net.standins[i].waitForAbort(5_000)
    expect(aborted.tokensSent).toBeLessThan(DEFAULT_TOKENS.length)
  })

  it('continues mid-stream on the other provider when Ollama dies under the first', async () => {
    for (const s of net.standins) s.knobs.tokensPerSecond = 5
    const stream = await openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'say hello' }] })
    const pieces: string[] = []
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content ?? ''
      if (piece !== '') pieces.push(piece)
      if (pieces.length === 4) {
        const i = await servingIndex(net.standins)
        const other = net.standins[1 - i]
        // the stand-in has no continuation of its own: give the other provider the rest
        other.knobs.tokens = DEFAULT_TOKENS.slice(4)
        other.knobs.tokensPerSecond = 0
        await net.standins[i].goDown()
      }
    }
    expect(pieces.join('')).toBe(SCRIPT)
    expect(pieces).toEqual(DEFAULT_TOKENS)
    const continued = net.standins.flatMap(s => s.requests).find(r => r.body.messages.length === 2)
    expect(continued?.body.messages[1]).toEqual({ role: 'assistant', content: DEFAULT_TOKENS.slice(0, 4).join('') })
    for (const s of net.standins) await s.comeUp()
  })
})

describe('failover when a provider daemon goes away', () => {
  let net: Network

  beforeAll(async () => { net = await startNetwork() })
  afterAll(async () => { await net?.stop() })

  it('moves to the other provider invisibly when the serving daemon stops before the first token', async () => {
    // longer than the 5 s a stopping daemon gives running chats to finish
    for (const s of net.standins) s.knobs.firstTokenDelayMs = 15_000
    const pending = openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'say hello' }] })
    const i = await servingIndex(net.standins)
    net.standins[1 - i].knobs.firstTokenDelayMs = 0
    await net.swarm.nodes[i + 1].daemon.stop()
    const res = await pending
    expect(res.choices[0].message.content).toBe(SCRIPT)
    expect(net.standins[1 - i].requests).toHaveLength(1)
    expect(net.consumer.daemon.router.stats.failovers).toBeGreaterThanOrEqual(1)
  })
})

describe('failover when a provider process is SIGKILLed mid-stream', () => {
  let net: Network
  let victim: DaemonProcess | undefined
  let victimStandin: OllamaStandin | undefined
  let dir: string | undefined

  beforeAll(async () => { net = await startNetwork() })
  afterAll(async () => {
    await victim?.stop('SIGKILL')
    await victimStandin?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
    await net?.stop()
  })

  it('continues the answer on another provider: the full script, exactly once', async () => {
    // a real `krill daemon` process serving the model; its 8 free slots make it the
    // best candidate, so the chat starts there
    dir = await tempDir()
    await writeFile(join(dir, 'krill.json'), JSON.stringify({ modelRefreshMs: 200, slots: 8 }))
    victimStandin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokensPerSecond: 5 } })
    victim = await spawnDaemon([
      '--data-dir', dir, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0',
      '--ollama', victimStandin.url, '--bootstrap', net.consumer.daemon.addrs()[0]
    ], { env: { KRILL_LOG: 'warn' } })
    const victimId = victim.ready.peerId
    await waitFor(() => net.consumer.daemon.providers.providersFor(MODEL).some(e => e.peerId === victimId && e.capacity.slots === 8), 'the consumer to learn the process provider')

    const stream = await openaiAt(net.consumer.daemon.apiUrl).chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'say hello' }] })
    const pieces: string[] = []
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content ?? ''
      if (piece !== '') pieces.push(piece)
      if (pieces.length === 5) {
        // nothing more is on its way: the 6th token is 200 ms out
        expect(victimStandin.requests[0].tokensSent).toBe(5)
        for (const s of net.standins) s.knobs.tokens = DEFAULT_TOKENS.slice(5)
        victim.child.kill('SIGKILL')
      }
    }
    expect(pieces).toEqual(DEFAULT_TOKENS)
    expect(pieces.join('')).toBe(SCRIPT)
    const continued = net.standins.flatMap(s => s.requests)
    expect(continued).toHaveLength(1)
    expect(continued[0].body.messages.at(-1)).toEqual({ role: 'assistant', content: DEFAULT_TOKENS.slice(0, 5).join('') })
    expect(net.consumer.daemon.router.stats.continuations).toBe(1)
  })
})
