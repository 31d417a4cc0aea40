/**
 * Fuzzing the HTTP API of a real in-process daemon (serving a model from the Ollama
 * stand-in): thousands of random and mutated bodies for /v1/chat/completions,
 * /api/chat and /api/generate, as JSON and as text. Every request gets an answer in
 * time with a client-error or success status (never a 5xx that means "bug"), the
 * daemon keeps serving, nothing pollutes Object.prototype, and memory stays bounded.
 */
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'
import { heapUsedMiB, mutateJson, mutateText, randomJson, Rng, SEED } from './fuzz.js'

const MODEL = 'llama3.2:1b'
const REQUESTS = 6_000
const WARMUP = 1_000
const PARALLEL = 8
const PER_REQUEST_MS = 10_000
const IMAGE = 'data:image/png;base64,aGVsbG8gd29ybGQ='

const CORPUS: Array<{ path: string, body: unknown }> = [
  { path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }] } },
  { path: '/v1/chat/completions', body: { model: MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: IMAGE } }] }], temperature: 0.2, max_tokens: 64, stop: ['\n'] } },
  { path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'call it' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] }, { role: 'tool', tool_call_id: 'c1', content: '42' }], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'number' } } } } }], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } }, reasoning_effort: 'low', seed: 7 } },
  { path: '/api/chat', body: { model: MODEL, messages: [{ role: 'user', content: 'hi', images: ['aGVsbG8='] }], stream: false, options: { temperature: 0.1, num_ctx: 2048, num_gpu: 99 }, keep_alive: '5m', think: true, format: 'json' } },
  { path: '/api/chat', body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'g', description: 'd', parameters: { type: 'object' } } }] } },
  { path: '/api/generate', body: { model: MODEL, prompt: 'once upon a time', system: 'tell a story', stream: true, options: { top_k: 20 }, raw: true, template: '{{ .Prompt }}', context: [1, 2, 3] } }
]
const PATHS = ['/v1/chat/completions', '/api/chat', '/api/generate']
const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', undefined]

describe('fuzz: HTTP bodies', () => {
  let standin: OllamaStandin
  let node: TestDaemon

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokens: ['a', 'b', 'c'] } })
    node = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200 })
    await waitFor(() => node.daemon.localModels().length === 1, 'the daemon to share the model')
  })

  afterAll(async () => {
    await node?.daemon.stop()
    if (node != null) await rm(node.config.dataDir, { recursive: true, force: true })
    await standin?.stop()
  })

  it(`answers ${REQUESTS} random and mutated bodies in time, never with a bug status (seed ${SEED})`, async () => {
    const api = node.daemon.apiUrl
    // each case from its own PRNG: reproducible whatever order the parallel workers take
    // them in, and generated when sent, so the test holds no bodies while it measures
    const makeCase = (i: number): { i: number, path: string, text: string, contentType?: string } => {
      const rng = new Rng((SEED + 20) * 100_003 + i)
      const base = rng.pick(CORPUS)
      const r = rng.next()
      let text: string
      if (r < 0.1) text = JSON.stringify(randomJson(rng)) ?? ''
      else if (r < 0.65) text = JSON.stringify(mutateJson(rng, base.body)) ?? ''
      else if (r < 0.95) text = mutateText(rng, JSON.stringify(base.body))
      else text = JSON.stringify(base.body)
      return { i, path: rng.chance(0.85) ? base.path : rng.pick(PATHS), text, contentType: rng.pick(CONTENT_TYPES) }
    }
    const statuses: Record<number, number> = {}
    let slowest = 0
    let next = 0
    let end = WARMUP
    const worker = async (): Promise<void> => {
      while (next < end) {
        const c = makeCase(next++)
        const started = Date.now()
        let status: number
        let body: string
        // a timer we clear, not AbortSignal.timeout: a pending timeout signal keeps its
        // fetch's objects alive for the full 10 s and would show up as heap growth
        const ac = new AbortController()
        const timer = setTimeout(() => { ac.abort(new Error(`no answer within ${PER_REQUEST_MS} ms`)) }, PER_REQUEST_MS)
        try {
          const res = await fetch(`${api}${c.path}`, {
            method: 'POST',
            headers: c.contentType != null ? { 'content-type': c.contentType } : {},
            body: c.text,
            signal: ac.signal
          })
          status = res.status
          body = await res.text()
        } catch (err) {
          expect.fail(`case ${c.i} (seed ${SEED}) to ${c.path} got no answer: ${String(err)}; body ${c.text.slice(0, 300)}`)
        } finally {
          clearTimeout(timer)
        }
        slowest = Math.max(slowest, Date.now() - started)
        statuses[status] = (statuses[status] ?? 0) + 1
        // 5xx would mean a bug: the stand-in never fails here and there is capacity to spare
        if (status >= 500) expect.fail(`case ${c.i} (seed ${SEED}) to ${c.path}: HTTP ${status} ${body.slice(0, 300)}; body ${c.text.slice(0, 300)}`)
        if (status !== 200) {
          // every error is JSON in its API's shape, with a message
          const parsed = JSON.parse(body) as { error?: unknown }
          expect(parsed.error, `case ${c.i}: ${body.slice(0, 200)}`).toBeDefined()
        }
      }
    }
    // warm up first (JIT, caches, connection pools), then measure what the rest adds
    await Promise.all(Array.from({ length: PARALLEL }, worker))
    standin.requests = []
    standin.httpLog = []
    node.events.length = 0
    const heapBefore = heapUsedMiB()
    end = REQUESTS
    await Promise.all(Array.from({ length: PARALLEL }, worker))
    // nothing reached the prototype chain
    expect(Object.keys(Object.prototype)).toEqual([])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // only allow-listed keys reached Ollama, whatever the body said
    for (const r of standin.requests) {
      const body = r.body as Record<string, unknown>
      expect(Object.keys(body).filter(k => !['model', 'messages', 'options', 'format', 'tools', 'think', 'keep_alive', 'stream'].includes(k))).toEqual([])
      expect(Object.keys((body.options ?? {}) as object).filter(k => ['num_gpu', 'raw', 'template'].includes(k))).toEqual([])
    }
    // the test's own records (every request the stand-in saw, every daemon event) are
    // not the daemon's memory: drop them before measuring
    standin.requests = []
    standin.httpLog = []
    node.events.length = 0
    const growth = heapUsedMiB() - heapBefore
    console.log(`HTTP fuzz: ${REQUESTS} requests, statuses ${JSON.stringify(statuses)}, slowest ${slowest} ms, daemon heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`)
    expect(statuses[200]).toBeGreaterThan(100)
    expect(statuses[400]).toBeGreaterThan(500)
    // a leak of 2 KiB per request would add 10 MiB here
    expect(growth).toBeLessThan(8)

    // the daemon still serves
    const res = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(CORPUS[0].body) })
    expect(((await res.json()) as any).choices[0].message.content).toBe('abc')
    expect(node.daemon.router.running()).toEqual([])
  }, 180_000)
})
