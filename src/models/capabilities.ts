/**
 * What a model copy can do, in Ollama's words (the `capabilities` of /api/show), and
 * what a request needs of the copy that answers it. Providers announce the first; the
 * router keeps copies that lack the second out of a request's candidates.
 */

/** Ollama's capability names (model.Capability in ollama/ollama types/model). */
export const CAPABILITIES = ['completion', 'tools', 'insert', 'vision', 'embedding', 'thinking', 'audio', 'image generation'] as const
export type KnownCapability = (typeof CAPABILITIES)[number]

/** Bounds for capability lists that arrive from the network. */
export const MAX_CAPABILITIES = 16
export const CAPABILITY_PATTERN = /^[a-z][a-z0-9_ -]{0,31}$/

/**
 * Capability lists as Ollama reports them, cleaned: lower case, bounded, no
 * duplicates, order kept. Anything that is not a list of plausible names gives
 * undefined (unknown), never an empty list that would claim "can do nothing".
 */
export function normalizeCapabilities (value: unknown): string[] | undefined {
  if (!Array.isArray(value)) return undefined
  const out: string[] = []
  for (const v of value) {
    if (typeof v !== 'string') continue
    const name = v.trim().toLowerCase()
    if (CAPABILITY_PATTERN.test(name) && !out.includes(name)) out.push(name)
    if (out.length >= MAX_CAPABILITIES) break
  }
  return out.length > 0 ? out : undefined
}

/** The parts of a chat that need a capability of the model copy. */
export interface ChatNeeds {
  tools?: unknown[]
  think?: boolean | string
  messages: Array<{ images?: unknown[] }>
}

/** Capabilities a chat needs: completion always, tools / vision / thinking when it uses them. */
export function chatNeeds (request: ChatNeeds): string[] {
  const needs = ['completion']
  if (request.tools != null && request.tools.length > 0) needs.push('tools')
  if (request.messages.some(m => m.images != null && m.images.length > 0)) needs.push('vision')
  if (request.think === true || request.think === 'low' || request.think === 'medium' || request.think === 'high') needs.push('thinking')
  return needs
}

/** What an embedding request needs. */
export const EMBED_NEEDS: readonly string[] = ['embedding']

/**
 * The first needed capability a copy lacks; undefined when it has them all or when
 * its capabilities are unknown (an older peer, a DHT record): unknown is no reason
 * to exclude a copy, its own Ollama still says no if it must.
 */
export function missingCapability (has: readonly string[] | undefined, needs: readonly string[]): string | undefined {
  if (has == null || has.length === 0) return undefined
  return needs.find(n => !has.includes(n))
}
