/**
 * The OpenClaw provider plugin in integrations/openclaw/plugin: it type-checks
 * against the published `openclaw` package's own type definitions (installed as a
 * devDependency of the plugin folder only, at the pinned version, when missing —
 * the main package stays lean), its manifests carry what OpenClaw and ClawHub
 * require, and its registered provider's catalog.run reads a real krill daemon's
 * models, with context length and capabilities as krill reports them.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startSwarm, type Swarm } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const run = promisify(execFile)
const ROOT = resolve(import.meta.dirname, '../..')
const PLUGIN = join(ROOT, 'integrations', 'openclaw', 'plugin')
const readJson = (file: string): any => JSON.parse(readFileSync(join(PLUGIN, file), 'utf8'))

/** npm ci in the plugin folder (330 packages, ~650 MB) unless its pinned openclaw is there */
async function installPluginDeps (): Promise<void> {
  const want = readJson('package.json').devDependencies.openclaw
  const installed = join(PLUGIN, 'node_modules', 'openclaw', 'package.json')
  if (existsSync(installed) && JSON.parse(readFileSync(installed, 'utf8')).version === want) return
  await run('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: PLUGIN, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 })
}

interface Registered { provider?: any }

/** the plugin's entry, registered against a recording stand-in for OpenClaw's plugin API */
async function registerPlugin (pluginConfig?: Record<string, unknown>): Promise<Registered> {
  const entry = (await import('../../integrations/openclaw/plugin/src/index.js')).default
  const registered: Registered = {}
  entry.register({ id: 'krill', name: 'krill', pluginConfig, registerProvider: (p: unknown) => { registered.provider = p } } as any)
  return registered
}

function catalogContext (env: NodeJS.ProcessEnv): any {
  return {
    config: {},
    env,
    resolveProviderApiKey: () => ({ apiKey: undefined }),
    resolveProviderAuth: () => ({ apiKey: undefined, mode: 'none', source: 'none' })
  }
}

describe('the OpenClaw provider plugin', () => {
  beforeAll(async () => { await installPluginDeps() }, 900_000)

  it('type-checks against the published openclaw package', async () => {
    const tsc = join(PLUGIN, 'node_modules', '.bin', 'tsc')
    const result = await run(tsc, ['-p', join(PLUGIN, 'tsconfig.json'), '--noEmit'], { cwd: PLUGIN, timeout: 300_000 }).catch(err => err)
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('')
    expect(result.code ?? 0).toBe(0)
  }, 300_000)

  it('declares what OpenClaw loads and ClawHub publishes, and appears in onboarding as krill', async () => {
    const pkg = readJson('package.json')
    const installed = JSON.parse(readFileSync(join(PLUGIN, 'node_modules', 'openclaw', 'package.json'), 'utf8')).version
    expect(pkg.type).toBe('module')
    expect(pkg.openclaw.extensions).toEqual(['./dist/index.js'])
    expect(pkg.openclaw.compat.pluginApi).toMatch(/^>=\d{4}\.\d+\.\d+$/)
    expect(pkg.openclaw.build.openclawVersion).toBe(installed)
    const manifest = readJson('openclaw.plugin.json')
    expect(manifest.id).toBe('krill')
    expect(manifest.configSchema).toMatchObject({ type: 'object', additionalProperties: false })
    expect(manifest.providers).toEqual(['krill'])
    expect(manifest.setup.providers).toEqual([expect.objectContaining({ id: 'krill', authMethods: ['local'] })])
    expect(manifest.providerAuthChoices).toEqual([expect.objectContaining({ provider: 'krill', method: 'local', choiceId: 'krill', choiceLabel: 'krill' })])
    // the choice dispatches to an auth method the runtime really registers
    const { provider } = await registerPlugin()
    expect(provider.id).toBe('krill')
    expect(provider.auth.map((a: { id: string }) => a.id)).toEqual(['local'])
    expect(typeof provider.catalog.run).toBe('function')
    // only the public SDK subpaths
    const source = readFileSync(join(PLUGIN, 'src', 'index.ts'), 'utf8') + readFileSync(join(PLUGIN, 'src', 'catalog.ts'), 'utf8')
    const imports = [...source.matchAll(/from '(openclaw[^']*)'/g)].map(m => m[1])
    expect(imports.length).toBeGreaterThan(0)
    for (const spec of imports) expect(['openclaw/plugin-sdk/plugin-entry', 'openclaw/plugin-sdk/provider-auth']).toContain(spec)
  })

  describe('catalog.run against real daemons', () => {
    let swarm: Swarm
    let standin: OllamaStandin

    beforeAll(async () => {
      standin = await OllamaStandin.start({
        models: [
          { name: 'llama3.2:1b', contextLength: 131072, capabilities: ['completion', 'tools', 'thinking'] },
          { name: 'llava:7b', family: 'llama', contextLength: 4096, capabilities: ['completion', 'vision'] },
          { name: 'nomic-embed-text:latest', family: 'nomic-bert', contextLength: 2048, capabilities: ['embedding'] }
        ]
      })
      // node 1 serves from the stand-in; node 0 reaches its models over the swarm
      swarm = await startSwarm(2, i => i === 0 ? {} : { ollama: standin.url, modelRefreshMs: 200 })
      await waitFor(() => swarm.nodes[0].daemon.providers.providersFor('llava:7b').length === 1 && swarm.nodes[1].daemon.localModels().length === 3, 'the models to reach the consumer')
    })
    afterAll(async () => {
      await swarm?.stop()
      await standin?.stop()
    })

    it("lists the serving node's models with the facts its Ollama reports", async () => {
      const api = swarm.nodes[1].daemon.apiUrl
      const { provider } = await registerPlugin()
      const result = await provider.catalog.run(catalogContext({ KRILL_API: api.replace('http://', '') }))
      expect(result.provider).toMatchObject({ baseUrl: `${api}/v1`, api: 'openai-completions' })
      const byId = Object.fromEntries(result.provider.models.map((m: any) => [m.id, m]))
      // an embedding-only model is no chat model
      expect(Object.keys(byId).sort()).toEqual(['llama3.2:1b', 'llava:7b'])
      expect(byId['llama3.2:1b']).toMatchObject({ name: 'llama3.2:1b', reasoning: true, input: ['text'], contextWindow: 131072, maxTokens: 131072, compat: { supportsTools: true } })
      expect(byId['llava:7b']).toMatchObject({ reasoning: false, input: ['text', 'image'], contextWindow: 4096, compat: { supportsTools: false } })
      // and OpenClaw can chat with what it got, at the base URL it got
      const res = await fetch(`${result.provider.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${result.provider.apiKey}` },
        body: JSON.stringify({ model: 'llama3.2:1b', messages: [{ role: 'user', content: 'hi' }] })
      })
      expect(res.status).toBe(200)
    })

    it("lists the swarm's models on a consumer, as krill's /api/show describes them", async () => {
      const api = swarm.nodes[0].daemon.apiUrl
      const { provider } = await registerPlugin({ baseUrl: `${api}/v1/` })
      const result = await provider.catalog.run(catalogContext({}))
      expect(result.provider.baseUrl).toBe(`${api}/v1`)
      const ids = result.provider.models.map((m: any) => m.id).sort()
      expect(ids).toEqual(expect.arrayContaining(['llama3.2:1b', 'llava:7b']))
      for (const model of result.provider.models) {
        const shown = await (await fetch(`${api}/api/show`, { method: 'POST', body: JSON.stringify({ model: model.id }), headers: { 'content-type': 'application/json' } })).json()
        const context = Object.entries(shown.model_info ?? {}).find(([k]) => k.endsWith('.context_length'))?.[1]
        expect(model.contextWindow, model.id).toBe(context)
        expect(model.compat.supportsTools, model.id).toBe(shown.capabilities.includes('tools'))
      }
      expect(result.provider.models.find((m: any) => m.id === 'llava:7b').contextWindow).toBe(4096)
    })

    it('leaves the provider out when no krill daemon answers', async () => {
      const { provider } = await registerPlugin({ baseUrl: 'http://127.0.0.1:9' })
      expect(await provider.catalog.run(catalogContext({}))).toBeNull()
    })
  })
})
