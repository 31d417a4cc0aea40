/**
 * The web console in a real browser (headless Chromium) against a real 3-node
 * loopback swarm: node 0 consumes (no Ollama), nodes 1 and 2 serve models from
 * stand-ins. The page must show the peers and the models from the live feed, and
 * a chat typed into it must show the stand-in's exact answer, streamed through the
 * local API. With KRILL_SCREENSHOTS=<dir> it also saves the screenshots for docs/.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { launchBrowser, type TestBrowser } from '../helpers/browser.js'
import { startSwarm, startTestDaemon, tempDir, type Swarm } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const SHARED = 'llama3.2:1b'
const ONLY_ON_2 = 'qwen2.5:0.5b'
const ANSWER = DEFAULT_TOKENS.join('')
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

describe('the web console in headless Chromium', () => {
  let swarm: Swarm
  let standins: OllamaStandin[]
  let browser: TestBrowser
  let page: Page
  let api: string
  const pageErrors: string[] = []

  beforeAll(async () => {
    standins = [
      await OllamaStandin.start({ models: [{ name: SHARED, contextLength: 131072 }], knobs: { tokensPerSecond: 40 } }),
      await OllamaStandin.start({ models: [{ name: SHARED, contextLength: 131072 }, { name: ONLY_ON_2, family: 'qwen2', parameterSize: '494M', quantization: 'Q4_K_M', contextLength: 32768 }], knobs: { tokensPerSecond: 40 } })
    ]
    swarm = await startSwarm(3, i => i === 0 ? {} : { ollama: standins[i - 1].url, modelRefreshMs: 200 })
    const consumer = swarm.nodes[0].daemon
    api = consumer.apiUrl
    await waitFor(() => consumer.providers.providersFor(SHARED).length === 2 && consumer.providers.providersFor(ONLY_ON_2).length === 1, 'the consumer to learn every provider')
    browser = await launchBrowser()
    page = await browser.context.newPage()
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    page.on('console', msg => { if (msg.type() === 'error') pageErrors.push(msg.text()) })
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await swarm?.stop()
    await Promise.allSettled((standins ?? []).map(async s => { await s.stop() }))
  })

  it('shows this node, both peers in the graph and table, and every model with its providers', async () => {
    await page.goto(`${api}/ui/`)
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    const self = swarm.nodes[0].daemon.peerId.toString()
    expect(await page.textContent('#self-id')).toBe(self)
    // test swarms are private, as every swarm is by default
    expect(await page.textContent('#network')).toMatch(/^private swarm/)
    const peerIds = swarm.nodes.slice(1).map(n => n.daemon.peerId.toString()).sort()
    // the feed's snapshots bring both peers; the graph draws one node per peer plus this node
    await page.waitForFunction(ids => ids.every(id => document.querySelector(`#peers-table tr[data-peer="${id}"]`) != null), peerIds, { timeout: 30_000 })
    expect(await page.$$eval('#graph .node', nodes => nodes.map(n => n.getAttribute('data-peer')).sort())).toEqual([...peerIds, self].sort())
    expect(await page.$$eval('#graph .edge.direct', edges => edges.length)).toBe(2)
    expect(await page.textContent('#t-peers')).toBe('2')

    await page.waitForFunction(() => document.querySelectorAll('#models-table tbody tr').length === 2, undefined, { timeout: 30_000 })
    const models = await page.$$eval('#models-table tbody tr', rows => rows.map(r => r.getAttribute('data-model')))
    expect(models).toEqual([SHARED, ONLY_ON_2].sort())
    // providers of each model, from the snapshot's providers lookups
    await page.waitForFunction(name => (document.querySelector(`#models-table tr[data-model="${name}"]`)?.querySelectorAll('td:nth-child(4) .tag').length ?? 0) === 2, SHARED, { timeout: 30_000 })
    expect(await page.textContent(`#models-table tr[data-model="${ONLY_ON_2}"] td:nth-child(3)`)).toBe('32k')
    // receipts exist in this daemon: the panels show them, not "not available"
    expect(await page.$$eval('#ledger .na, #balance .na', els => els.length)).toBe(0)
  })

  it("streams a chat typed into the page and shows the stand-in's exact answer and who served it", async () => {
    await page.selectOption('#chat-model', ONLY_ON_2)
    await page.fill('#chat-input', 'Say hello to the swarm')
    await page.press('#chat-input', 'Enter')
    await page.waitForSelector('.msg.assistant .who', { timeout: 30_000 })
    expect(await page.textContent('.msg.assistant .text')).toBe(ANSWER)
    // only node 2 serves this model: the page names it as the provider
    const provider = swarm.nodes[2].daemon.peerId.toString()
    expect(await page.getAttribute('.msg.assistant .who', 'data-provider')).toBe(provider)
    expect(standins[1].requests.at(-1)?.body?.messages?.at(-1)?.content).toBe('Say hello to the swarm')
    // the recent requests table gets the routed chat, with a time to first token
    await page.waitForFunction(() => document.querySelectorAll('#recent-table tbody tr').length >= 1, undefined, { timeout: 30_000 })
    const row = await page.$$eval('#recent-table tbody tr:first-child td', tds => tds.map(td => td.textContent))
    expect(row[1]).toBe(ONLY_ON_2)
    expect(row[3]).toMatch(/ms|s$/)
    expect(row[5]).toBe(String(DEFAULT_TOKENS.length))
    expect(row[6]).toBe('done')
    // the provider's signed receipt reaches the ledger, and node 2 the balance
    await page.waitForFunction(id => document.querySelector(`#balance-table tr[data-peer="${id}"]`) != null, provider, { timeout: 30_000 })
    const received = await page.$$eval(`#balance-table tr[data-peer="${provider}"] td`, tds => tds.map(td => td.textContent))
    expect(Number(received[2]?.replace(/,/g, ''))).toBeGreaterThanOrEqual(DEFAULT_TOKENS.length)
    const receipt = await page.$$eval('#ledger-table tbody tr:first-child td', tds => tds.map(td => td.textContent))
    expect(receipt[1]).toBe('used')
    expect(receipt[3]).toBe(ONLY_ON_2)
    expect(receipt[5]).toBe('signed')
  })

  it('works on a token-protected API from /ui/#token=…, and shows no data without the token', async () => {
    const token = 'console-browser-token-0123456789'
    const guarded = await startTestDaemon({ apiToken: token })
    const tab = await browser.context.newPage()
    const withToken = await browser.context.newPage()
    try {
      await tab.goto(`${guarded.daemon.apiUrl}/ui/`)
      await tab.waitForSelector('#feed.unauthorized', { timeout: 30_000 })
      expect(await tab.textContent('#feed')).toMatch(/needs its token/)
      expect(await tab.textContent('#self-id')).toBe('…')
      const tab2 = withToken
      await tab2.goto(`${guarded.daemon.apiUrl}/ui/#token=${token}`)
      await tab2.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
      expect(await tab2.textContent('#self-id')).toBe(guarded.daemon.peerId.toString())
      // the token leaves the address bar (it never went to the server: a fragment)
      expect(new URL(tab2.url()).hash).toBe('')
    } finally {
      await withToken.close()
      await tab.close()
      await guarded.daemon.stop()
    }
  })

  it('renders without script errors and makes a screenshot', async () => {
    expect(pageErrors).toEqual([])
    const dir = process.env.KRILL_SCREENSHOTS ?? await tempDir('krill-shots-')
    const file = join(dir, 'console.png')
    await page.screenshot({ path: file, fullPage: true })
    const png = await readFile(file)
    expect(png.subarray(0, 8).equals(PNG_MAGIC)).toBe(true)
    if (process.env.KRILL_SCREENSHOTS != null) {
      // for the docs: a fuller picture, a few more chats through both providers
      for (const [model, prompt] of [[SHARED, 'What is krill?'], [SHARED, 'And who answered?']]) {
        const before = await page.$$eval('.msg.assistant .who', els => els.length)
        await page.selectOption('#chat-model', model)
        await page.fill('#chat-input', prompt)
        await page.press('#chat-input', 'Enter')
        await page.waitForFunction(n => document.querySelectorAll('.msg.assistant .who').length > n, before, { timeout: 30_000 })
      }
      // a snapshot after the last chat: nothing in flight, every receipt in the ledger
      await page.waitForFunction(() => document.querySelectorAll('#recent-table tbody tr').length >= 3 && !(document.getElementById('running-empty')?.hidden ?? true) && document.querySelectorAll('#ledger-table tbody tr').length >= 3, undefined, { timeout: 30_000 })
      await page.screenshot({ path: file, fullPage: true })
    }
  })
})
