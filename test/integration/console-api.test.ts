/**
 * The HTTP side of the web console on real daemons: the static files and their
 * headers, the same Origin / Host / token rules as the rest of the API, the live
 * event feed (snapshots and daemon events as SSE), and the request log.
 */
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { startSwarm, startTestDaemon, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'

/** Reads SSE messages from a feed until `until` says stop (or the time is up). */
async function readFeed (url: string, headers: Record<string, string>, until: (messages: any[]) => boolean, timeoutMs = 20_000): Promise<any[]> {
  const ac = new AbortController()
  const timer = setTimeout(() => { ac.abort() }, timeoutMs)
  const messages: any[] = []
  try {
    const res = await fetch(url, { headers, signal: ac.signal })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of res.body as any) {
      buffer += decoder.decode(chunk, { stream: true })
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = block.split('\n').filter(l => l.startsWith('data: ')).map(l => l.slice(6)).join('\n')
        if (data !== '') messages.push(JSON.parse(data))
      }
      if (until(messages)) break
    }
  } catch (err: any) {
    if (err?.name !== 'AbortError') throw err
  } finally {
    clearTimeout(timer)
    ac.abort()
  }
  return messages
}

/** a raw GET with a chosen Host header (fetch does not let us set Host) */
async function getWithHost (url: string, host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { host } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
}

describe('console routes on a loopback daemon', () => {
  let node: TestDaemon

  beforeAll(async () => { node = await startTestDaemon() })
  afterAll(async () => { await node?.daemon.stop() })

  it('serves the page and its modules with a strict CSP, and nothing else under /ui/', async () => {
    const api = node.daemon.apiUrl
    const redirect = await fetch(`${api}/ui`, { redirect: 'manual' })
    expect(redirect.status).toBe(302)
    expect(redirect.headers.get('location')).toBe('/ui/')
    const page = await fetch(`${api}/ui/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/)
    expect(page.headers.get('x-frame-options')).toBe('DENY')
    const html = await page.text()
    for (const src of html.matchAll(/(?:src|href)="([a-z0-9.-]+\.(?:js|css|svg))"/g)) {
      const asset = await fetch(`${api}/ui/${src[1]}`)
      expect(asset.status, src[1]).toBe(200)
    }
    const app = await fetch(`${api}/ui/app.js`)
    expect(app.headers.get('content-type')).toMatch(/^text\/javascript/)
    for (const bad of ['nope.js', '..%2Fpackage.json', '%2E%2E%2F%2E%2E%2Fpackage.json', 'index.ts']) {
      expect((await fetch(`${api}/ui/${bad}`)).status, bad).toBe(404)
    }
  })

  it('refuses foreign web pages and rebinding Hosts, for the page and for the feed', async () => {
    const api = node.daemon.apiUrl
    for (const path of ['/ui/', '/krill/v1/events', '/krill/v1/requests']) {
      const res = await fetch(`${api}${path}`, { headers: { origin: 'https://evil.example' } })
      expect(res.status, path).toBe(403)
      expect(await getWithHost(`${api}${path}`, 'evil.example:80'), path).toBe(403)
    }
    // the page's own calls carry its (loopback) origin
    const own = await fetch(`${api}/krill/v1/requests`, { headers: { origin: api } })
    expect(own.status).toBe(200)
  })

  it('streams a snapshot at once, and the daemon\'s events as they happen', async () => {
    const api = node.daemon.apiUrl
    const [first] = await readFeed(`${api}/krill/v1/events`, {}, m => m.some(e => e.event === 'snapshot'))
    expect(first.event).toBe('snapshot')
    expect(first.status.peerId).toBe(node.daemon.peerId.toString())
    expect(first.peers).toEqual({ peers: [] })
    expect(first.models).toMatchObject({ models: [], local: [] })
    expect(first.requests).toEqual({ running: [], recent: [] })
    expect(first).toHaveProperty('ledger')
    expect(first).toHaveProperty('balance')
    // a peer connecting while the feed is open: its peer:joined arrives, and the next snapshot lists it
    const other = await startTestDaemon()
    try {
      const otherId = other.daemon.peerId.toString()
      const feed = readFeed(`${api}/krill/v1/events`, {}, m => m.some(e => e.event === 'snapshot' && e.peers.peers.length === 1))
      await new Promise(resolve => setTimeout(resolve, 200))
      const dialed = await fetch(`${api}/krill/v1/connect`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ multiaddr: other.daemon.addrs()[0] }) })
      expect(dialed.status).toBe(200)
      const messages = await feed
      expect(messages).toContainEqual({ event: 'peer:joined', peerId: otherId })
      expect(messages.at(-1).peers.peers.map((p: { id: string }) => p.id)).toEqual([otherId])
    } finally {
      await other.daemon.stop()
    }
  })
})

describe('console routes behind an API token', () => {
  const token = 'console-test-token-0123456789'
  let node: TestDaemon

  beforeAll(async () => { node = await startTestDaemon({ apiToken: token }) })
  afterAll(async () => { await node?.daemon.stop() })

  it('serves the static page without the token, and no data without it', async () => {
    const api = node.daemon.apiUrl
    expect((await fetch(`${api}/ui/`)).status).toBe(200)
    expect((await fetch(`${api}/ui/app.js`)).status).toBe(200)
    expect((await fetch(`${api}/krill/v1/events`)).status).toBe(401)
    expect((await fetch(`${api}/krill/v1/requests`)).status).toBe(401)
    const messages = await readFeed(`${api}/krill/v1/events`, { authorization: `Bearer ${token}` }, m => m.some(e => e.event === 'snapshot'))
    const snapshot = messages.find(e => e.event === 'snapshot')
    expect(snapshot.status.peerId).toBe(node.daemon.peerId.toString())
    expect(snapshot.requests).toEqual({ running: [], recent: [] })
  })
})

describe('the request log over a 2-node swarm', () => {
  let swarm: Swarm
  let standin: OllamaStandin

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokensPerSecond: 50, firstTokenDelayMs: 150 } })
    swarm = await startSwarm(2, i => i === 0 ? {} : { ollama: standin.url, modelRefreshMs: 200 })
    await waitFor(() => swarm.nodes[0].daemon.providers.providersFor(MODEL).length === 1, 'the consumer to learn the provider')
  })
  afterAll(async () => {
    await swarm?.stop()
    await standin?.stop()
  })

  it('records who served a routed chat, its time to first token and its speed; shows it in flight meanwhile', async () => {
    const consumer = swarm.nodes[0].daemon
    const api = consumer.apiUrl
    const chat = fetch(`${api}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
    })
    const running = await waitFor(async () => {
      const answer = await (await fetch(`${api}/krill/v1/requests`)).json()
      return answer.running.length === 1 ? answer.running[0] : undefined
    }, 'the chat to show as running', 20_000, 20)
    expect(running.model).toBe(MODEL)
    expect(running.elapsedMs).toBeGreaterThanOrEqual(0)
    const body = await (await chat).json()
    expect(body.choices[0].message.content).toBe(DEFAULT_TOKENS.join(''))
    const recent = await waitFor(async () => {
      const answer = await (await fetch(`${api}/krill/v1/requests`)).json()
      return answer.recent.length === 1 ? answer.recent[0] : undefined
    }, 'the chat in the request log')
    expect(recent).toMatchObject({ model: MODEL, peerId: swarm.nodes[1].daemon.peerId.toString(), local: false, tokens: DEFAULT_TOKENS.length, outcome: 'done' })
    // the stand-in waits 150 ms before the first token, then sends 50 tokens/s
    expect(recent.ttftMs).toBeGreaterThanOrEqual(150)
    expect(recent.durationMs).toBeGreaterThan(recent.ttftMs)
    expect(recent.tokensPerSecond).toBeGreaterThan(0)
    expect(recent.tokensPerSecond).toBeLessThan(200)
    const routed = swarm.nodes[0].events.find(e => e.event === 'request:routed')
    expect(routed).toMatchObject({ event: 'request:routed', model: MODEL, ttftMs: recent.ttftMs })
  })
})
