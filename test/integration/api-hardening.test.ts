/**
 * The local HTTP API against web pages and slow or stuck clients: foreign Origins and
 * rebinding Host names are refused, a slow request is bounded, and a client that stops
 * reading a stream is cut off instead of pinning the answer forever.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import { connect } from 'node:net'
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StreamWriter } from '../../src/api/stream-writer.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'

function get (url: string, headers: Record<string, string>): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('the HTTP API and web pages', () => {
  let node: TestDaemon

  beforeAll(async () => { node = await startTestDaemon({}) })
  afterAll(async () => {
    await node?.daemon.stop()
    if (node != null) await rm(node.config.dataDir, { recursive: true, force: true })
  })

  it('refuses requests a foreign web page sends (CSRF), whatever the route', async () => {
    for (const [method, path] of [['POST', '/v1/chat/completions'], ['POST', '/api/chat'], ['PUT', '/krill/v1/policy'], ['GET', '/krill/v1/status']]) {
      const res = await fetch(`${node.daemon.apiUrl}${path}`, { method, headers: { origin: 'https://evil.example', 'content-type': 'text/plain' }, body: method === 'GET' ? undefined : '{}' })
      expect(res.status, path).toBe(403)
      expect(((await res.json()) as any).error.code).toBe('forbidden_origin')
    }
    expect((await get(`${node.daemon.apiUrl}/krill/v1/policy`, {})).status).toBe(200)
  })

  it('accepts loopback origins and app shells, as Ollama does', async () => {
    for (const origin of ['http://localhost:3000', 'http://127.0.0.1:8080', 'http://[::1]:5173', 'app://obsidian.md', 'tauri://localhost']) {
      const res = await fetch(`${node.daemon.apiUrl}/krill/v1/status`, { headers: { origin } })
      expect(res.status, origin).toBe(200)
    }
  })

  it('refuses a Host that is not a loopback name (DNS rebinding)', async () => {
    const port = new URL(node.daemon.apiUrl).port
    const rebound = await get(`${node.daemon.apiUrl}/krill/v1/status`, { host: `attacker.example:${port}` })
    expect(rebound.status).toBe(403)
    expect(JSON.parse(rebound.body).error.code).toBe('forbidden_host')
    expect((await get(`${node.daemon.apiUrl}/krill/v1/status`, { host: `localhost:${port}` })).status).toBe(200)
  })

  it('bounds the time a request may take to arrive, not the answer', () => {
    // the API's node:http server, read here to pin the configuration
    const server: Server = node.daemon.http
    expect(server.requestTimeout).toBe(60_000)
    // no socket inactivity limit: answers may be silent for minutes while a model loads
    expect(server.timeout).toBe(0)
  })

  it('counts refused and failed HTTP requests in /metrics', async () => {
    await fetch(`${node.daemon.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": 1}' })
    const text = await (await fetch(`${node.daemon.apiUrl}/metrics`)).text()
    expect(text).toMatch(/^krill_http_errors_total\{status="403"\} [1-9]/m)
    expect(text).toMatch(/^krill_http_errors_total\{status="400"\} [1-9]/m)
  })
})

describe('a streamed answer to a client that stops reading', () => {
  it('is cut off after the write stall timeout', async () => {
    let outcome!: (v: { ms: number, open: boolean }) => void
    const finished = new Promise<{ ms: number, open: boolean }>(resolve => { outcome = resolve })
    const server = createServer((req, res) => {
      void (async () => {
        const out = new StreamWriter(res, 200, { 'content-type': 'text/event-stream' }, { stallMs: 300 })
        const chunk = 'data: ' + 'x'.repeat(64 * 1024) + '\n\n'
        let stalledAt = 0
        // write until the socket is full; then the one waiting write must give up
        for (let i = 0; i < 10_000; i++) {
          const started = Date.now()
          if (!await out.write(chunk)) { stalledAt = started; break }
        }
        outcome({ ms: Date.now() - stalledAt, open: out.open })
      })()
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    const socket = connect(port, '127.0.0.1')
    socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    // never read: the kernel buffers fill and the server's writes stop draining
    socket.pause()
    try {
      const { ms, open } = await finished
      expect(open).toBe(false)
      expect(ms).toBeGreaterThanOrEqual(250)
      expect(ms).toBeLessThan(5_000)
    } finally {
      socket.destroy()
      server.close()
    }
  })
})
