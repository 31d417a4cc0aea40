import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { DEFAULT_MAX_TOKENS, krillProvider, modelFrom, resolveSettings } from '../../integrations/openclaw/plugin/src/catalog.js'

describe('the OpenClaw plugin catalog mapping', () => {
  it('finds the daemon from plugin config, then KRILL_API, then the default', () => {
    expect(resolveSettings(undefined, {})).toEqual({ baseUrl: 'http://127.0.0.1:11435' })
    expect(resolveSettings(undefined, { KRILL_API: '127.0.0.1:5000', KRILL_API_TOKEN: 't' })).toEqual({ baseUrl: 'http://127.0.0.1:5000', apiToken: 't' })
    expect(resolveSettings({ baseUrl: 'http://10.0.0.2:11435/v1/', apiToken: 'x' }, { KRILL_API: '127.0.0.1:5000', KRILL_API_TOKEN: 't' })).toEqual({ baseUrl: 'http://10.0.0.2:11435', apiToken: 'x' })
  })

  it("maps krill's facts, and claims nothing it was not told", () => {
    expect(modelFrom('m', undefined)).toEqual({ id: 'm', name: 'm', reasoning: false, input: ['text'], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, maxTokens: DEFAULT_MAX_TOKENS, compat: { supportsUsageInStreaming: true } })
    expect(modelFrom('v', { capabilities: ['completion', 'vision', 'tools'], model_info: { 'llama.context_length': 8192 } })).toMatchObject({ input: ['text', 'image'], contextWindow: 8192, maxTokens: 8192, compat: { supportsTools: true } })
    expect(modelFrom('e', { capabilities: ['embedding'] })).toBeUndefined()
  })

  it('uses the facts /v1/models carries and asks /api/show only for the rest', async () => {
    const shows: string[] = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', c => { body += c })
      req.on('end', () => {
        res.setHeader('content-type', 'application/json')
        if (req.url === '/v1/models') {
          res.end(JSON.stringify({ object: 'list', data: [{ id: 'a', context_length: 4096, capabilities: ['completion', 'thinking'] }, { id: 'b' }] }))
        } else if (req.url === '/api/show') {
          shows.push(JSON.parse(body).model)
          res.end(JSON.stringify({ capabilities: ['completion'], model_info: { 'x.context_length': 2048 } }))
        } else {
          res.statusCode = 404
          res.end('{}')
        }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as { port: number }).port
      const provider = await krillProvider({ baseUrl: `http://127.0.0.1:${port}` })
      expect(shows).toEqual(['b'])
      expect(provider?.models.map(m => [m.id, m.contextWindow, m.reasoning])).toEqual([['a', 4096, true], ['b', 2048, false]])
    } finally {
      server.close()
    }
  })
})
