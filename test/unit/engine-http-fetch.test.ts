import { createServer, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { httpFetch } from '../../src/engine/http-fetch.js'

let server: Server | undefined
afterEach(async () => {
  const s = server
  server = undefined
  if (s == null) return
  s.closeAllConnections()
  await new Promise(resolve => s.close(resolve))
})

async function serve (handler: (req: { method?: string, url?: string, headers: Record<string, unknown>, body: string }, res: ServerResponse) => void, host = '127.0.0.1'): Promise<string> {
  server = createServer((req, res) => {
    let body = ''
    req.on('data', c => { body += String(c) })
    req.on('end', () => { handler({ method: req.method, url: req.url, headers: req.headers, body }, res) })
  })
  server.listen(0, host)
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

describe('the engine\'s fetch (node:http under the ollama client)', () => {
  it('sends method, headers and body; answers status, headers and a body read as it arrives', async () => {
    let release!: () => void
    const later = new Promise<void>(resolve => { release = resolve })
    const url = await serve((req, res) => {
      res.writeHead(201, { 'content-type': 'application/x-ndjson', 'x-echo': `${req.method} ${req.url} ${String(req.headers['content-type'])} ${req.body}` })
      res.write('{"n":1}\n')
      void later.then(() => { res.end('{"n":2}\n') })
    })
    const res = await httpFetch()(`${url}/api/chat?x=1`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' })
    expect(res.status).toBe(201)
    expect(res.headers.get('x-echo')).toBe('POST /api/chat?x=1 application/json {"a":1}')
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    // the first line is there while the server still holds the rest
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"n":1}\n')
    release()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"n":2}\n')
    expect((await reader.read()).done).toBe(true)
  })

  it('reuses the connection for the next call (keep-alive)', async () => {
    const sockets = new Set<unknown>()
    const url = await serve((_req, res) => { res.end('ok') })
    server?.on('connection', s => sockets.add(s))
    const fetch = httpFetch()
    for (let i = 0; i < 3; i++) expect(await (await fetch(`${url}/`)).text()).toBe('ok')
    expect(sockets.size).toBe(1)
  })

  it('an abort mid-answer fails the reader and closes the connection at the server', async () => {
    let closed!: Promise<unknown>
    const url = await serve((req, res) => {
      closed = once(res, 'close')
      res.writeHead(200)
      res.write('first\n')
    })
    const ac = new AbortController()
    const res = await httpFetch()(`${url}/`, { signal: ac.signal })
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    await reader.read()
    ac.abort(new Error('enough'))
    await expect(reader.read()).rejects.toThrow('enough')
    await closed
  })

  it('an aborted signal fails at once; a bodyless status has a null body; IPv6 hosts work', async () => {
    const url = await serve((_req, res) => { res.writeHead(204).end() }, '::1')
    await expect(httpFetch()(`${url}/`, { signal: AbortSignal.abort(new Error('no')) })).rejects.toThrow('no')
    const res = await httpFetch()(`${url}/`)
    expect(res.status).toBe(204)
    expect(res.body).toBeNull()
  })

  it('nobody listening: the error carries ECONNREFUSED (the engine reports "unreachable" from it)', async () => {
    const url = await serve((_req, res) => { res.end() })
    server?.close()
    server = undefined
    await expect(httpFetch()(`${url}/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })
})
