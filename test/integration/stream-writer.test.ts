/**
 * The API's StreamWriter on a real HTTP server and client: a lone event goes out at
 * once, the events of one turn of the event loop go out as one chunk, and `write`
 * answers without a promise while the client keeps up.
 */
import { createServer, request as httpRequest } from 'node:http'
import { describe, expect, it } from 'vitest'
import { StreamWriter } from '../../src/api/stream-writer.js'

describe('StreamWriter', () => {
  it('sends a lone event at once and the rest of a turn in one chunk', async () => {
    const wroteSecondAt: number[] = []
    const server = createServer((_req, res) => {
      const out = new StreamWriter(res, 200, { 'content-type': 'application/x-ndjson' })
      expect(out.write('a\n')).toBe(true)
      setTimeout(() => {
        wroteSecondAt.push(Date.now())
        // three events in one turn: the first goes at once, the other two together
        out.write('b\n')
        out.write('c\n')
        out.write('d\n')
        setTimeout(() => { out.end('e\n') }, 100)
      }, 300)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    try {
      const chunks = await new Promise<Array<{ text: string, at: number }>>((resolve, reject) => {
        const got: Array<{ text: string, at: number }> = []
        const req = httpRequest({ host: '127.0.0.1', port, path: '/' }, res => {
          res.on('data', (d: Buffer) => { got.push({ text: d.toString(), at: Date.now() }) })
          res.on('end', () => { resolve(got) })
        })
        req.on('error', reject)
        req.end()
      })
      expect(chunks.map(c => c.text).join('')).toBe('a\nb\nc\nd\ne\n')
      // 'a' was not held for the next write, 300 ms later
      expect(chunks[0].text).toBe('a\n')
      expect(chunks[0].at).toBeLessThan(wroteSecondAt[0])
      expect(chunks.map(c => c.text)).toContain('c\nd\n')
    } finally {
      server.close()
    }
  })
})
