import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { runKrill } from '../helpers/cli.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const LLAMA = 'llama3.2:1b'

describe('krill openclaw config', () => {
  let standin: OllamaStandin
  let node: TestDaemon
  let api: string

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: LLAMA }] })
    node = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200 })
    api = node.daemon.apiUrl.replace(/^http:\/\//, '')
    await waitFor(() => node.daemon.localModels().length === 1, 'the daemon to share the stand-in model')
  })

  afterAll(async () => {
    await node?.daemon.stop()
    await standin?.stop()
    if (node != null) await rm(node.config.dataDir, { recursive: true, force: true })
  })

  it('prints provider blocks that parse, point at this daemon, and whose URLs answer', async () => {
    const r = await runKrill(['openclaw', 'config', '--json', '--api', api])
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    const config = JSON.parse(r.stdout)
    const providers = config.models.providers
    expect(Object.keys(providers).sort()).toEqual(['krill', 'krill-openai'])

    // OpenClaw's built-in Ollama route: baseUrl without /v1, models from /api/tags
    const ollama = providers.krill
    expect(ollama).toMatchObject({ api: 'ollama', baseUrl: node.daemon.apiUrl, apiKey: 'krill-local' })
    expect(ollama.baseUrl).not.toMatch(/\/v1$/)
    const tags = await fetch(`${ollama.baseUrl}/api/tags`)
    expect(tags.status).toBe(200)
    expect((await tags.json()).models.map((m: any) => m.name)).toContain(LLAMA)

    // the OpenAI-compatible route
    const openai = providers['krill-openai']
    expect(openai).toMatchObject({ api: 'openai-completions', baseUrl: `${node.daemon.apiUrl}/v1` })
    const models = await fetch(`${openai.baseUrl}/models`)
    expect(models.status).toBe(200)
    expect((await models.json()).data.map((m: any) => m.id)).toContain(LLAMA)

    // the daemon's models, with what krill knows of them
    for (const p of [ollama, openai]) {
      expect(p.models.map((m: any) => m.id)).toEqual([LLAMA])
      const m = p.models[0]
      expect(m).toMatchObject({ id: LLAMA, name: `${LLAMA} (krill)`, input: ['text'] })
      const known = node.daemon.localModels()[0].contextLength
      if (known > 0) expect(m.contextWindow).toBe(known)
      else expect(m.contextWindow).toBeUndefined()
    }
  })

  it('--route picks one; the text form prints the same JSON and advice on stderr', async () => {
    const one = JSON.parse((await runKrill(['openclaw', 'config', '--json', '--route', 'ollama', '--provider-id', 'swarm', '--api', api])).stdout)
    expect(Object.keys(one.models.providers)).toEqual(['swarm'])
    const text = await runKrill(['openclaw', 'config', '--api', api])
    expect(text.code).toBe(0)
    expect(JSON.parse(text.stdout).models.providers.krill.api).toBe('ollama')
    expect(text.stderr).toContain(`use "krill/${LLAMA}"`)
    const bad = await runKrill(['openclaw', 'config', '--route', 'grpc', '--api', api])
    expect(bad.code).toBe(2)
  })
})
