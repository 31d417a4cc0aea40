/**
 * The krill provider for OpenClaw: every model a krill swarm serves, reached
 * through the krill daemon on this machine. Shows up as "krill" in
 * `openclaw onboard`; the catalog is read from the daemon each time OpenClaw asks.
 */
import { definePluginEntry, type ProviderAuthContext, type ProviderAuthResult } from 'openclaw/plugin-sdk/plugin-entry'
import { DEFAULT_API, krillProvider, resolveSettings } from './catalog.js'

export default definePluginEntry({
  id: 'krill',
  name: 'krill',
  description: 'Models of a krill swarm (a peer-to-peer network of Ollama nodes) through the local krill daemon',
  register (api) {
    api.registerProvider({
      id: 'krill',
      label: 'krill',
      envVars: ['KRILL_API', 'KRILL_API_TOKEN'],
      auth: [{
        id: 'local',
        label: 'krill daemon on this machine',
        hint: 'start one with `krill daemon`; no account or key needed',
        kind: 'custom',
        run: async (ctx: ProviderAuthContext): Promise<ProviderAuthResult> => {
          const current = resolveSettings(api.pluginConfig, ctx.env ?? process.env)
          const baseUrl = await ctx.prompter.text({
            message: 'krill daemon API',
            initialValue: current.baseUrl,
            placeholder: DEFAULT_API,
            validate: value => /^https?:\/\/[^/]+/.test(value.trim()) ? undefined : 'an http:// URL, e.g. http://127.0.0.1:11435'
          })
          const settings = { ...current, baseUrl: baseUrl.trim().replace(/\/+$/, '').replace(/\/v1$/, '') }
          const provider = await krillProvider(settings, { signal: ctx.signal })
          if (provider == null) {
            throw new Error(`no krill daemon answers at ${settings.baseUrl}: start one with \`krill daemon\` and try again`)
          }
          const first = provider.models[0]?.id
          return {
            profiles: [],
            configPatch: { models: { providers: { krill: provider } } },
            ...(first != null ? { defaultModel: `krill/${first}` } : {}),
            notes: [provider.models.length > 0
              ? `krill: ${provider.models.length} model(s) in reach through ${settings.baseUrl}`
              : `krill answers at ${settings.baseUrl} but no peer serves a model yet`]
          }
        }
      }],
      catalog: {
        order: 'simple',
        run: async (ctx) => {
          const provider = await krillProvider(resolveSettings(api.pluginConfig, ctx.env), { signal: ctx.signal })
          return provider != null ? { provider } : null
        }
      }
    })
  }
})
