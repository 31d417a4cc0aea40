import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { KrillError } from '../../src/errors.js'
import { ModelWatcher, shareMatcher } from '../../src/engine/model-watcher.js'
import { OllamaEngine, toOllamaChatRequest } from '../../src/engine/ollama-engine.js'
import type { ChatEvent, ChatRequest, ModelInfo } from '../../src/engine/types.js'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'

type StreamEvent = Exclude<ChatEvent, { type: 'accepted' }>

const MODELS = [
  { name: 'llama3.2:1b', family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', size: 1_321_098_329, contextLength: 131072 },
  { name: 'qwen3:8b', family: 'qwen3', parameterSize: '8.2B', quantization: 'Q4_K_M', size: 5_225_388_164, contextLength: 40960, digest: 'b'.repeat(64) }
]

const hello: ChatRequest = { model: 'llama3.2:1b', messages: [{ role: 'user', content: 'why is the sky blue' }] }

async function collect (it: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = []
  for await (const ev of it) out.push(ev)
  return out
}

async function failure (p: Promise<unknown>): Promise<KrillError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(KrillError)
    return err as KrillError
  }
  throw new Error('expected a KrillError, got success')
}

describe('OllamaEngine', () => {
  let standin: OllamaStandin
  let engine: OllamaEngine

  beforeEach(async () => {
    standin = await OllamaStandin.start({ models: MODELS })
    engine = new OllamaEngine({ host: standin.url, requestTimeoutMs: 2000 })
  })

  afterEach(async () => {
    await standin.stop()
  })

  it('lists models with digests, details and context length', async () => {
    const models = await engine.listModels()
    expect(models).toHaveLength(2)
    const [llama, qwen] = models
    expect(llama).toMatchObject({
      name: 'llama3.2:1b', family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', size: 1_321_098_329, contextLength: 131072, format: 'gguf', families: ['llama']
    })
    expect(llama.digest).toMatch(/^[0-9a-f]{64}$/)
    expect(new Date(llama.modifiedAt!).getTime()).not.toBeNaN()
    expect(qwen).toMatchObject({ name: 'qwen3:8b', digest: 'b'.repeat(64), family: 'qwen3', contextLength: 40960 })
  })

  it('asks /api/show once per digest, not on every refresh', async () => {
    await engine.listModels()
    await engine.listModels()
    await engine.listModels()
    const shows = (): number => standin.httpLog.filter(h => h.path === '/api/show').length
    expect(shows()).toBe(2)
    // same name, new digest (re-pulled): asked again, once
    standin.removeModel('qwen3:8b')
    standin.addModel({ ...MODELS[1], digest: 'c'.repeat(64), contextLength: 32768 })
    const again = await engine.listModels()
    await engine.listModels()
    expect(shows()).toBe(3)
    expect(again.find(m => m.name === 'qwen3:8b')?.contextLength).toBe(32768)
  })

  it('streams a chat: tokens in order, then one done with the stand-in counters', async () => {
    const events = await collect(engine.chat(hello, new AbortController().signal))
    const deltas = events.slice(0, -1)
    expect(deltas.every(e => e.type === 'delta')).toBe(true)
    expect(deltas.map(e => e.type === 'delta' ? e.content : '')).toEqual(DEFAULT_TOKENS)
    const done = events.at(-1)!
    expect(done.type).toBe('done')
    if (done.type !== 'done') return
    expect(done.usage).toMatchObject({ doneReason: 'stop', promptTokens: 5, completionTokens: DEFAULT_TOKENS.length })
    expect(done.usage.evalDurationNs).toBeGreaterThan(0)
    expect(done.usage.totalDurationNs).toBeGreaterThanOrEqual(done.usage.evalDurationNs)
    expect(standin.requests[0]).toMatchObject({ completed: true, aborted: false })
  })

  it('reports done_reason length and thinking and tool calls', async () => {
    standin.knobs.thinking = ['hmm', ' ok']
    standin.knobs.tokens = ['a', 'b', 'c']
    standin.knobs.toolCalls = [{ function: { name: 'lookup', arguments: { q: 'x' } } }]
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }]
    const events = await collect(engine.chat({ ...hello, think: true, tools }, new AbortController().signal))
    expect(events.filter(e => e.type === 'delta' && e.thinking !== undefined).map(e => e.type === 'delta' && e.thinking)).toEqual(['hmm', ' ok'])
    expect(events.flatMap(e => e.type === 'delta' && e.toolCalls != null ? e.toolCalls : [])).toEqual([{ function: { name: 'lookup', arguments: { q: 'x' } } }])

    const cut = await collect(engine.chat({ ...hello, options: { num_predict: 2 } }, new AbortController().signal))
    expect(cut.at(-1)).toMatchObject({ type: 'done', usage: { doneReason: 'length', completionTokens: 2 } })
  })

  it('sends only whitelisted keys to Ollama', async () => {
    const junk = {
      model: 'llama3.2:1b',
      digest: 'd'.repeat(64),
      messages: [
        { role: 'system', content: 'be brief', junk: 1 },
        { role: 'user', content: 'look', images: [Buffer.from('png bytes').toString('base64')], raw: true },
        { role: 'assistant', content: '', toolCalls: [{ function: { name: 'f', arguments: { a: 1 }, extra: 2 } }], thinking: 'hm' },
        { role: 'tool', content: '42', toolName: 'f' }
      ],
      options: { temperature: 0.2, num_predict: 50, stop: ['\n\n'], num_gpu: 99, use_mmap: false, main_gpu: 1, junk: 'x' },
      format: 'json',
      tools: [{ type: 'function', function: { name: 'f', description: 'does f', parameters: { type: 'object' }, strict: true }, cache_control: {} }],
      think: false,
      keepAlive: '10m',
      raw: true,
      template: '{{ .Prompt }}',
      system: 'override',
      context: [1, 2, 3],
      suffix: 'x',
      stream: false
    } as unknown as ChatRequest
    await collect(engine.chat(junk, new AbortController().signal))
    const body = standin.requests[0].body
    const allowedTop = ['model', 'messages', 'options', 'format', 'tools', 'think', 'keep_alive', 'stream']
    expect(Object.keys(body).filter(k => !allowedTop.includes(k))).toEqual([])
    // the client always sets stream; ours is always true, whatever the request said
    expect(body.stream).toBe(true)
    expect(Object.keys(body.options).sort()).toEqual(['num_predict', 'stop', 'temperature'])
    const allowedMsg = ['role', 'content', 'images', 'thinking', 'tool_calls', 'tool_name']
    for (const m of body.messages) expect(Object.keys(m).filter((k: string) => !allowedMsg.includes(k))).toEqual([])
    expect(body.messages[1].images).toEqual([Buffer.from('png bytes').toString('base64')])
    expect(body.messages[2].tool_calls).toEqual([{ function: { name: 'f', arguments: { a: 1 } } }])
    expect(body.messages[2].thinking).toBe('hm')
    expect(body.messages[3].tool_name).toBe('f')
    expect(body).toMatchObject({ model: 'llama3.2:1b', format: 'json', think: false, keep_alive: '10m' })
    expect(body.tools).toEqual([{ type: 'function', function: { name: 'f', description: 'does f', parameters: { type: 'object' } } }])
  })

  it('refuses an image that is not base64 (the client would read it as a file path)', async () => {
    const req: ChatRequest = { model: 'llama3.2:1b', messages: [{ role: 'user', content: 'x', images: ['/etc/passwd'] }] }
    const err = await failure(collect(engine.chat(req, new AbortController().signal)))
    expect(err.code).toBe('BAD_REQUEST')
    expect(standin.requests).toHaveLength(0)
    expect(() => toOllamaChatRequest({ ...hello, options: { temperature: 'hot' as unknown as number } })).toThrow(/temperature/)
    expect(() => toOllamaChatRequest({ ...hello, tools: [{ type: 'retrieval' }] })).toThrow(/tools\[0\]/)
    expect(() => toOllamaChatRequest({ ...hello, messages: [{ role: 'root' as 'user', content: 'x' }] })).toThrow(/role/)
  })

  it('aborting after 3 tokens aborts the request at Ollama within 1 s', async () => {
    standin.knobs.tokensPerSecond = 20
    standin.knobs.tokens = Array.from({ length: 100 }, (_, i) => ` w${i}`)
    const ac = new AbortController()
    const it = engine.chat(hello, ac.signal)[Symbol.asyncIterator]()
    for (let i = 0; i < 3; i++) expect((await it.next()).value).toMatchObject({ type: 'delta' })
    const t0 = Date.now()
    // abort while nobody is pulling: the socket must still close right away
    ac.abort()
    const rec = await standin.waitForAbort(1000)
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(rec.tokensSent).toBeLessThan(10)
    const err = await failure(it.next())
    expect(err.code).toBe('CANCELLED')
  })

  it('aborting before the first token (model loading) aborts at Ollama too', async () => {
    standin.knobs.firstTokenDelayMs = 3000
    const ac = new AbortController()
    const pending = collect(engine.chat(hello, ac.signal))
    await standin.waitForRequests(1)
    ac.abort()
    expect((await failure(pending)).code).toBe('CANCELLED')
    expect((await standin.waitForAbort(1000)).tokensSent).toBe(0)
  })

  it('a consumer that stops reading early closes the request', async () => {
    standin.knobs.tokensPerSecond = 50
    standin.knobs.tokens = Array.from({ length: 100 }, (_, i) => ` w${i}`)
    let n = 0
    for await (const _ev of engine.chat(hello, new AbortController().signal)) if (++n === 2) break
    const rec = await standin.waitForAbort(1000)
    expect(rec.completed).toBe(false)
  })

  it('an already aborted signal fails with CANCELLED without calling Ollama', async () => {
    const ac = new AbortController()
    ac.abort()
    expect((await failure(collect(engine.chat(hello, ac.signal)))).code).toBe('CANCELLED')
    expect(standin.requests).toHaveLength(0)
  })

  it('Ollama dying mid-stream → ENGINE_FAILED', async () => {
    standin.knobs.dieAfterTokens = 3
    const seen: StreamEvent[] = []
    const err = await failure((async () => { for await (const ev of engine.chat(hello, new AbortController().signal)) seen.push(ev) })())
    expect(err.code).toBe('ENGINE_FAILED')
    expect(seen).toHaveLength(3)
  })

  it('a mid-stream error line → ENGINE_FAILED carrying Ollama\'s message', async () => {
    standin.knobs.errorAfterTokens = 2
    standin.knobs.midStreamError = 'CUDA error: out of memory'
    const err = await failure(collect(engine.chat(hello, new AbortController().signal)))
    expect(err.code).toBe('ENGINE_FAILED')
    expect(err.message).toContain('CUDA error: out of memory')
  })

  it('a stream that ends without done → ENGINE_FAILED, never a silent end', async () => {
    standin.knobs.endAfterTokens = 4
    const err = await failure(collect(engine.chat(hello, new AbortController().signal)))
    expect(err.code).toBe('ENGINE_FAILED')
  })

  it('unknown model (404) → UNKNOWN_MODEL', async () => {
    const err = await failure(collect(engine.chat({ ...hello, model: 'nope:7b' }, new AbortController().signal)))
    expect(err.code).toBe('UNKNOWN_MODEL')
    expect(err.message).toContain('nope:7b')
  })

  it('HTTP errors map to BUSY and ENGINE_FAILED', async () => {
    standin.knobs.failWith = { status: 503, error: 'server busy, please try again.  maximum pending requests exceeded' }
    expect((await failure(collect(engine.chat(hello, new AbortController().signal)))).code).toBe('BUSY')
    standin.knobs.failWith = { status: 500, error: 'llama runner process has terminated: signal: killed' }
    const err = await failure(collect(engine.chat(hello, new AbortController().signal)))
    expect(err.code).toBe('ENGINE_FAILED')
    expect(err.message).toContain('llama runner process has terminated')
  })

  it('a silent Ollama → TIMEOUT after stallTimeoutMs, and the request is closed', async () => {
    standin.knobs.firstTokenDelayMs = 5000
    const impatient = new OllamaEngine({ host: standin.url, stallTimeoutMs: 150 })
    const err = await failure(collect(impatient.chat(hello, new AbortController().signal)))
    expect(err.code).toBe('TIMEOUT')
    await standin.waitForAbort(1000)
  })

  it('Ollama down → ENGINE_FAILED saying it is unreachable; health follows', async () => {
    expect(await engine.isHealthy()).toBe(true)
    expect(await engine.version()).toMatch(/^0\./)
    await standin.goDown()
    const err = await failure(collect(engine.chat(hello, new AbortController().signal)))
    expect(err.code).toBe('ENGINE_FAILED')
    expect(err.message).toContain(`Ollama at ${standin.url} is unreachable`)
    const listErr = await failure(engine.listModels())
    expect(listErr.code).toBe('ENGINE_FAILED')
    expect(listErr.message).toMatch(/unreachable/)
    expect(await engine.isHealthy()).toBe(false)
    await standin.comeUp()
    expect(await engine.isHealthy()).toBe(true)
    expect(await engine.listModels()).toHaveLength(2)
  })

  it('listModels honors its signal', async () => {
    const ac = new AbortController()
    ac.abort()
    expect((await failure(engine.listModels(ac.signal))).code).toBe('CANCELLED')
  })
})

describe('ModelWatcher', () => {
  let standin: OllamaStandin
  let engine: OllamaEngine
  let watcher: ModelWatcher | undefined

  beforeEach(async () => {
    standin = await OllamaStandin.start({ models: MODELS })
    engine = new OllamaEngine({ host: standin.url, requestTimeoutMs: 1000 })
  })

  afterEach(async () => {
    watcher?.stop()
    watcher = undefined
    await standin.stop()
  })

  function record (w: ModelWatcher): { changes: ModelInfo[][], reachable: number, unreachable: number } {
    const log = { changes: [] as ModelInfo[][], reachable: 0, unreachable: 0 }
    w.on('change', ev => log.changes.push(ev.detail))
    w.on('reachable', () => { log.reachable++ })
    w.on('unreachable', () => { log.unreachable++ })
    return log
  }

  async function until (cond: () => boolean, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs
    while (!cond()) {
      if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`)
      await sleep(10)
    }
  }

  const names = (models: ModelInfo[]): string[] => models.map(m => m.name).sort()

  it('sees models appear and vanish within one interval', async () => {
    watcher = new ModelWatcher(engine, { intervalMs: 100 })
    const log = record(watcher)
    watcher.start()
    await until(() => log.changes.length === 1, 1000)
    expect(names(log.changes[0])).toEqual(['llama3.2:1b', 'qwen3:8b'])
    expect(log.reachable).toBe(1)
    expect(watcher.reachable).toBe(true)

    standin.addModel({ name: 'gemma3:4b' })
    await until(() => log.changes.length === 2, 250)
    expect(names(log.changes[1])).toEqual(['gemma3:4b', 'llama3.2:1b', 'qwen3:8b'])

    standin.removeModel('llama3.2:1b')
    await until(() => log.changes.length === 3, 250)
    expect(names(watcher.current)).toEqual(['gemma3:4b', 'qwen3:8b'])

    // nothing changed: no event
    await sleep(250)
    expect(log.changes).toHaveLength(3)
  })

  it('notices a new digest under the same name', async () => {
    watcher = new ModelWatcher(engine, { intervalMs: 100 })
    const log = record(watcher)
    await watcher.refresh()
    standin.removeModel('qwen3:8b')
    standin.addModel({ ...MODELS[1], digest: 'e'.repeat(64) })
    const list = await watcher.refresh()
    expect(list.find(m => m.name === 'qwen3:8b')?.digest).toBe('e'.repeat(64))
    expect(log.changes).toHaveLength(2)
  })

  it('keeps its models through one late /api/tags answer, and withdraws them after two in a row', async () => {
    // the engine waits 1 s for /api/tags; the stand-in holds its next answers 1.5 s
    watcher = new ModelWatcher(engine, { intervalMs: 100 })
    const log = record(watcher)
    await watcher.refresh()
    expect(log.changes).toHaveLength(1)

    standin.slowTags = { count: 1, delayMs: 1_500 }
    await watcher.refresh()
    expect(watcher.reachable).toBe(true)
    expect(names(watcher.current)).toEqual(['llama3.2:1b', 'qwen3:8b'])
    expect(log).toMatchObject({ unreachable: 0 })
    expect(log.changes).toHaveLength(1)

    // a good answer in between starts the count again
    await watcher.refresh()
    standin.slowTags = { count: 2, delayMs: 1_500 }
    await watcher.refresh()
    expect(watcher.reachable).toBe(true)
    await watcher.refresh()
    expect(watcher.reachable).toBe(false)
    expect(watcher.current).toEqual([])
    expect(log.unreachable).toBe(1)
    expect(log.changes).toHaveLength(2)
  }, 15_000)

  it('goes empty and unreachable (once) when Ollama goes down, and comes back', async () => {
    watcher = new ModelWatcher(engine, { intervalMs: 100 })
    const log = record(watcher)
    watcher.start()
    await until(() => log.changes.length === 1, 1000)

    await standin.goDown()
    await until(() => log.unreachable === 1, 300)
    await until(() => log.changes.length === 2, 300)
    expect(log.changes[1]).toEqual([])
    expect(watcher.current).toEqual([])
    expect(watcher.reachable).toBe(false)
    await sleep(350)
    expect(log.unreachable).toBe(1)
    expect(log.changes).toHaveLength(2)

    await standin.comeUp()
    await until(() => log.reachable === 2, 300)
    await until(() => log.changes.length === 3, 300)
    expect(names(log.changes[2])).toEqual(['llama3.2:1b', 'qwen3:8b'])
    expect(watcher.reachable).toBe(true)
  })

  it('reports unreachable on the first poll when Ollama is not there', async () => {
    await standin.goDown()
    watcher = new ModelWatcher(engine, { intervalMs: 100 })
    const log = record(watcher)
    expect(await watcher.refresh()).toEqual([])
    expect(log.unreachable).toBe(1)
    expect(log.changes).toHaveLength(0)
    expect(watcher.reachable).toBe(false)
  })

  it('shares only what the filter allows', async () => {
    standin.addModel({ name: 'llama3:latest' })
    standin.addModel({ name: 'mistral:7b' })
    watcher = new ModelWatcher(engine, { intervalMs: 100, share: ['llama3*', 'mistral'] })
    expect(names(await watcher.refresh())).toEqual(['llama3.2:1b', 'llama3:latest'])
    const exact = new ModelWatcher(engine, { share: ['llama3', 'mistral:7b'] })
    expect(names(await exact.refresh())).toEqual(['llama3:latest', 'mistral:7b'])
    expect(await new ModelWatcher(engine, { share: [] }).refresh()).toEqual([])
    expect(shareMatcher(['*:8b'])('qwen3:8b')).toBe(true)
    expect(shareMatcher(['*:8b'])('qwen3:8b-instruct')).toBe(false)
    expect(shareMatcher(['a.b'])('axb:latest')).toBe(false)
  })

  it('stop() leaves nothing running', async () => {
    watcher = new ModelWatcher(engine, { intervalMs: 50 })
    const log = record(watcher)
    watcher.start()
    await until(() => log.changes.length === 1, 1000)
    watcher.stop()
    const polls = standin.httpLog.filter(h => h.path === '/api/tags').length
    standin.addModel({ name: 'late:1b' })
    await sleep(300)
    expect(standin.httpLog.filter(h => h.path === '/api/tags').length).toBe(polls)
    expect(log.changes).toHaveLength(1)
    // restartable
    watcher.start()
    await until(() => log.changes.length === 2, 1000)
    watcher.stop()
  })

  it('stop() during a slow poll drops its answer', async () => {
    const slow = {
      async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
        await sleep(200, undefined, { signal })
        return []
      }
    }
    watcher = new ModelWatcher(slow, { intervalMs: 50 })
    const log = record(watcher)
    watcher.start()
    await sleep(20)
    watcher.stop()
    await sleep(250)
    expect(log).toEqual({ changes: [], reachable: 0, unreachable: 0 })
  })
})
