/**
 * Receipts, ledger, balance and budgets through real daemons: a provider serving
 * the stand-in and a consumer whose own Ollama is a dead port, chats sent through
 * the consumer's HTTP API, the ledger read back over HTTP and the CLI, and checked
 * with nothing but the two peer ids and Node's own Ed25519.
 */
import { createPublicKey, verify } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { base58btc } from 'multiformats/bases/base58'
import { Ollama } from 'ollama'
import OpenAI from 'openai'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { runKrill } from '../helpers/cli.js'
import { startTestDaemon, tempDir, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'
import type { BalanceAnswer, LedgerAnswer, LedgerEntryAnswer } from '../../src/api/ledger-routes.js'
import type { StatusAnswer } from '../../src/api/control.js'

const MODEL = 'llama3.2:1b'
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
})

async function standin (): Promise<OllamaStandin> {
  const s = await OllamaStandin.start({ models: [{ name: MODEL }] })
  cleanups.push(async () => { await s.stop() })
  return s
}

async function daemon (flags: Parameters<typeof startTestDaemon>[0] = {}, keepDir = false): Promise<TestDaemon> {
  const d = await startTestDaemon(flags)
  cleanups.push(async () => { await d.daemon.stop(); if (!keepDir) await rm(d.config.dataDir, { recursive: true, force: true }) })
  return d
}

/** provider serving the stand-in, and a consumer that knows it */
async function pair (consumerFlags: Parameters<typeof startTestDaemon>[0] = {}): Promise<{ provider: TestDaemon, consumer: TestDaemon, standin: OllamaStandin }> {
  const s = await standin()
  const provider = await daemon({ ollama: s.url, modelRefreshMs: 200 })
  const consumer = await daemon({ bootstrap: [provider.daemon.addrs()[0]], ...consumerFlags })
  await waitFor(() => consumer.daemon.providers.providersFor(MODEL).length === 1, 'the consumer to learn the provider')
  return { provider, consumer, standin: s }
}

async function getJson<T> (api: string, path: string): Promise<T> {
  const res = await fetch(api + path)
  expect(res.status).toBe(200)
  return await res.json() as T
}

function nodeVerify (peerId: string, data: Buffer, signature: Buffer): boolean {
  const mh = base58btc.baseDecode(peerId)
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), mh.subarray(6)])
  return verify(null, data, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)
}

function verifiedByBoth (e: LedgerEntryAnswer): boolean {
  const bytes = Buffer.from(e.signedBytes ?? '', 'base64')
  return e.providerSignature != null && e.consumerSignature != null &&
    nodeVerify(e.provider, bytes, Buffer.from(e.providerSignature, 'base64')) &&
    nodeVerify(e.consumer, bytes, Buffer.from(e.consumerSignature, 'base64'))
}

describe('receipts through daemons', () => {
  it('puts every completed chat in both ledgers, double-signed, and shows it in balance, status and /metrics', async () => {
    const { provider, consumer } = await pair()
    const api = consumer.daemon.apiUrl
    const ollama = new Ollama({ host: api })
    for (let i = 0; i < 3; i++) {
      const r = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'hello there' }] })
      expect(r.message.content).toBe(DEFAULT_TOKENS.join(''))
    }
    const openai = new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0 })
    const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello there' }], stream: true })
    for await (const _ of stream) { /* drain */ }

    await waitFor(async () => (await getJson<LedgerAnswer>(provider.daemon.apiUrl, '/krill/v1/ledger')).entries.length === 4, 'the provider to settle four receipts')
    const mine = (await getJson<LedgerAnswer>(api, '/krill/v1/ledger')).entries
    const theirs = (await getJson<LedgerAnswer>(provider.daemon.apiUrl, '/krill/v1/ledger')).entries
    expect(mine).toHaveLength(4)
    for (const e of [...mine, ...theirs]) {
      expect(e.status).toBe('signed')
      expect(e.kind).toBe('chat')
      expect(e.model).toBe(MODEL)
      expect(e.consumer).toBe(consumer.daemon.peerId.toString())
      expect(e.provider).toBe(provider.daemon.peerId.toString())
      expect(e.completionTokens).toBe(DEFAULT_TOKENS.length)
      expect(verifiedByBoth(e)).toBe(true)
    }
    expect(mine.map(e => e.role)).toEqual(['consumer', 'consumer', 'consumer', 'consumer'])
    expect(theirs.every(e => e.role === 'provider')).toBe(true)
    expect(mine.map(e => e.signedBytes).sort()).toEqual(theirs.map(e => e.signedBytes).sort())
    // filters
    expect((await getJson<LedgerAnswer>(api, '/krill/v1/ledger?limit=1')).entries).toEqual([mine[0]])
    expect((await getJson<LedgerAnswer>(api, `/krill/v1/ledger?peer=${consumer.daemon.peerId.toString()}`)).entries).toEqual([])
    expect((await fetch(`${api}/krill/v1/ledger?limit=0`)).status).toBe(400)

    const tokens = mine.reduce((n, e) => n + e.promptTokens + e.completionTokens, 0)
    const balance = await getJson<BalanceAnswer>(api, '/krill/v1/balance')
    expect(balance.peers).toHaveLength(1)
    expect(balance.peers[0].peer).toBe(provider.daemon.peerId.toString())
    expect(balance.peers[0].servedUs.total).toBe(tokens)
    expect(balance.peers[0].servedUs.completion).toBe(4 * DEFAULT_TOKENS.length)
    expect(balance.peers[0].net).toBe(-tokens)
    expect(balance.totals.servedUs.total).toBe(tokens)
    expect(balance.today).toEqual({ tokens, cap: null, resetsAt: expect.stringMatching(/T00:00:00.000Z$/) })
    const theirBalance = await getJson<BalanceAnswer>(provider.daemon.apiUrl, '/krill/v1/balance')
    expect(theirBalance.peers[0].net).toBe(tokens)
    expect(theirBalance.peers[0].standing.score).toBeLessThan(0)

    const status = await getJson<StatusAnswer>(api, '/krill/v1/status')
    expect(status.tokens.consumed.total).toBe(tokens)
    expect((await getJson<StatusAnswer>(provider.daemon.apiUrl, '/krill/v1/status')).tokens.served.total).toBe(tokens)
    const metrics = await (await fetch(`${provider.daemon.apiUrl}/metrics`)).text()
    expect(metrics).toMatch(new RegExp(`^krill_receipt_tokens_total\\{direction="served",kind="completion"\\} ${4 * DEFAULT_TOKENS.length}$`, 'm'))
    expect(metrics).toMatch(/^krill_receipts_total\{status="signed"\} 4$/m)

    // the CLI shows the same
    const ledger = await runKrill(['ledger', '--json', '--api', api.replace('http://', '')])
    expect(ledger.code).toBe(0)
    expect(JSON.parse(ledger.stdout).entries).toHaveLength(4)
    const table = await runKrill(['balance', '--api', api.replace('http://', '')])
    expect(table.code).toBe(0)
    expect(table.stdout).toContain(provider.daemon.peerId.toString())
    expect(table.stdout).toMatch(new RegExp(`they served us  ${tokens} \\(`))
    const list = await runKrill(['ledger', '--limit', '2', '--api', api.replace('http://', '')])
    expect(list.stdout.trim().split('\n')).toHaveLength(3)
    expect(list.stdout).toMatch(/used {2}.*llama3\.2:1b.*signed/)
    const bad = await runKrill(['ledger', '--limit', '0', '--api', api.replace('http://', '')])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--limit must be a positive integer/)
  })

  it('keeps the ledger across a restart of the daemon', async () => {
    const { provider, consumer } = await pair()
    const api = consumer.daemon.apiUrl
    const ollama = new Ollama({ host: api })
    for (let i = 0; i < 2; i++) await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
    const before = (await getJson<LedgerAnswer>(api, '/krill/v1/ledger')).entries
    expect(before).toHaveLength(2)
    const dataDir = consumer.config.dataDir
    await consumer.daemon.stop()
    const again = await daemon({ dataDir, bootstrap: [provider.daemon.addrs()[0]] })
    const after = (await getJson<LedgerAnswer>(again.daemon.apiUrl, '/krill/v1/ledger')).entries
    expect(after).toEqual(before)
    expect(after.every(verifiedByBoth)).toBe(true)
    expect((await getJson<BalanceAnswer>(again.daemon.apiUrl, '/krill/v1/balance')).totals.servedUs.total).toBe(before.reduce((n, e) => n + e.promptTokens + e.completionTokens, 0))
  })
})

describe('budgets', () => {
  it('past budget.tokensPerDay chats to peers get 429 naming the cap and the reset; defaultMaxTokens caps requests without one', async () => {
    const dataDir = await tempDir()
    await writeFile(join(dataDir, 'krill.json'), JSON.stringify({ budget: { tokensPerDay: 10, defaultMaxTokens: 5 } }))
    const { consumer, standin: s } = await pair({ dataDir })
    const api = consumer.daemon.apiUrl
    const ollama = new Ollama({ host: api })
    // no num_predict: the provider's engine is asked for defaultMaxTokens
    const first = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'one two three' }] })
    expect(first.message.content).toBe(DEFAULT_TOKENS.slice(0, 5).join(''))
    expect(s.requests[0].body.options.num_predict).toBe(5)
    // an explicit max_tokens wins
    const openai = new OpenAI({ baseURL: `${api}/v1`, apiKey: 'x', maxRetries: 0 })
    const second = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 7 })
    expect(s.requests[1].body.options.num_predict).toBe(7)
    expect(second.choices[0].message.content).toBe(DEFAULT_TOKENS.slice(0, 7).join(''))
    // 3 + 5 + 1 + 7 = 16 tokens today: over the cap of 10
    const res = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }) })
    expect(res.status).toBe(429)
    const body = await res.json() as any
    const midnight = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1)).toISOString()
    expect(body.error.message).toMatch(/daily token budget used up/)
    expect(body.error.message).toContain('the cap is 10 (budget.tokensPerDay in krill.json)')
    expect(body.error.message).toContain(`resets at ${midnight}`)
    const viaOllama = await fetch(`${api}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }) })
    expect(viaOllama.status).toBe(429)
    expect(((await viaOllama.json()) as any).error).toContain('budget.tokensPerDay')
    // nothing more reached the provider
    expect(s.requests).toHaveLength(2)
    const balance = await getJson<BalanceAnswer>(api, '/krill/v1/balance')
    expect(balance.today).toEqual({ tokens: 16, cap: 10, resetsAt: midnight })
  })

  it('local Ollama use does not count and still answers past the cap', async () => {
    const s = await standin()
    const dataDir = await tempDir()
    await writeFile(join(dataDir, 'krill.json'), JSON.stringify({ budget: { tokensPerDay: 1 } }))
    const node = await daemon({ dataDir, ollama: s.url, modelRefreshMs: 200 })
    await waitFor(() => node.daemon.localModels().length === 1, 'the node to see its own model')
    const ollama = new Ollama({ host: node.daemon.apiUrl })
    for (let i = 0; i < 3; i++) {
      expect((await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })).message.content).toBe(DEFAULT_TOKENS.join(''))
    }
    // no default max tokens for the local engine either
    expect(s.requests[0].body.options?.num_predict).toBeUndefined()
    expect((await getJson<BalanceAnswer>(node.daemon.apiUrl, '/krill/v1/balance')).today.tokens).toBe(0)
  })
})

describe('fair share through daemons', () => {
  it('an idle provider answers 1000 short chats sent back to back through the consumer\'s API, none refused', async () => {
    const { provider, consumer, standin: s } = await pair()
    s.knobs = { ...s.knobs, tokens: ['ok'] }
    const api = consumer.daemon.apiUrl
    let failed = 0
    const started = Date.now()
    for (let i = 0; i < 1000; i++) {
      const res = await fetch(`${api}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: false }) })
      if (res.status !== 200 || ((await res.json()) as any).message?.content !== 'ok') failed++
    }
    const counters = provider.daemon.chatServer!.stats.counters
    console.log(`1000 back-to-back chats through the API in ${Date.now() - started} ms; ${failed} failed; provider refused ${JSON.stringify(counters.refused)}`)
    expect(failed).toBe(0)
    expect(counters.completed).toBe(1000)
    expect(Object.values(counters.refused).reduce((a, b) => a + b, 0)).toBe(0)
  }, 300_000)
})
