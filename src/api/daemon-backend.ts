/**
 * The ApiBackend of a running daemon: chats go through its router, the catalog is
 * its shared models plus the provider table's, and /api/show of a local model asks
 * the local Ollama itself.
 */
import { Ollama } from 'ollama'
import type { Daemon } from '../daemon/daemon.js'
import { mergeCatalog, type ApiBackend } from './backend.js'

export function daemonBackend (daemon: Daemon): ApiBackend {
  return {
    chat: (request, opts) => daemon.router.chat(request, opts),
    models: () => mergeCatalog(daemon.localModels(), daemon.providers.catalog()),
    running: () => daemon.router.running(),
    showLocal: async (name, signal) => {
      if (daemon.engine == null) return undefined
      const client = new Ollama({
        host: daemon.config.ollama,
        fetch: async (input, init) => await fetch(input, { ...init, signal: init?.signal != null ? AbortSignal.any([init.signal, signal]) : signal })
      })
      return await client.show({ model: name }) as unknown as Record<string, unknown>
    }
  }
}
