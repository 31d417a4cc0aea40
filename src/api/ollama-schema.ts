/**
 * Ollama's /api/chat and /api/generate requests: zod schemas and translation to
 * krill's ChatRequest. Unknown generation options are dropped, as nothing but the
 * known option keys may travel to a provider's Ollama.
 */
import { z } from 'zod'
import { CHAT_OPTION_KEYS, type ChatMessage, type ChatOptions, type ChatRequest } from '../engine/types.js'
import { HttpError } from './http-errors.js'
import { checked } from './openai-schema.js'

const toolCall = z.object({
  function: z.object({
    index: z.number().optional(),
    name: z.string().min(1),
    arguments: z.record(z.string(), z.unknown()).optional()
  })
})

const message = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string().nullable().optional(),
  images: z.array(z.string()).nullable().optional(),
  thinking: z.string().nullable().optional(),
  tool_calls: z.array(toolCall).nullable().optional(),
  tool_name: z.string().nullable().optional()
})

const format = z.union([z.literal(''), z.literal('json'), z.record(z.string(), z.unknown())]).nullable().optional()
const think = z.union([z.boolean(), z.enum(['low', 'medium', 'high'])]).nullable().optional()
const keepAlive = z.union([z.string(), z.number()]).nullable().optional()
const options = z.record(z.string(), z.unknown()).nullable().optional()

export const ollamaChatSchema = z.object({
  model: z.string().min(1, 'model is required'),
  messages: z.array(message).nullable().optional(),
  tools: z.array(z.record(z.string(), z.unknown())).nullable().optional(),
  format,
  options,
  stream: z.boolean().nullable().optional(),
  think,
  keep_alive: keepAlive
})

export const ollamaGenerateSchema = z.object({
  model: z.string().min(1, 'model is required'),
  prompt: z.string().nullable().optional(),
  system: z.string().nullable().optional(),
  suffix: z.string().nullable().optional(),
  images: z.array(z.string()).nullable().optional(),
  format,
  options,
  stream: z.boolean().nullable().optional(),
  think,
  keep_alive: keepAlive,
  // conversation state of the old API and prompt templating: meaningless across peers
  context: z.array(z.number()).nullable().optional(),
  raw: z.boolean().nullable().optional(),
  template: z.string().nullable().optional()
})

const embedInput = z.union([z.string(), z.array(z.string())], { error: 'invalid input type' }).nullable().optional()

export const ollamaEmbedSchema = z.object({
  model: z.string().min(1, 'model is required'),
  input: embedInput,
  truncate: z.boolean().nullable().optional(),
  dimensions: z.number().int().nullable().optional(),
  keep_alive: keepAlive,
  options
})

export const ollamaEmbeddingsSchema = z.object({
  model: z.string().min(1, 'model is required'),
  prompt: z.string().nullable().optional(),
  keep_alive: keepAlive,
  options
})

export type OllamaEmbedBody = z.infer<typeof ollamaEmbedSchema>

/** The embedding options krill forwards (num_ctx); others are dropped, as for chats. */
export function embedOptions (raw: Record<string, unknown> | null | undefined): { num_ctx: number } | undefined {
  const n = raw?.num_ctx
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? { num_ctx: n } : undefined
}

export type OllamaChatBody = z.infer<typeof ollamaChatSchema>
export type OllamaGenerateBody = z.infer<typeof ollamaGenerateSchema>

/** Known option keys only; `stop` may be one string, as Ollama's JSON decoding allows. */
function toOptions (raw: Record<string, unknown> | null | undefined): ChatOptions | undefined {
  if (raw == null) return undefined
  const out: Record<string, unknown> = {}
  for (const key of CHAT_OPTION_KEYS) {
    const value = raw[key]
    if (value == null) continue
    out[key] = key === 'stop' && typeof value === 'string' ? [value] : value
  }
  return Object.keys(out).length > 0 ? out as ChatOptions : undefined
}

function common (body: OllamaChatBody | OllamaGenerateBody): Record<string, unknown> {
  const out: Record<string, unknown> = { model: body.model }
  const opts = toOptions(body.options)
  if (opts != null) out.options = opts
  if (body.format != null && body.format !== '') out.format = body.format
  if (body.think != null) out.think = body.think
  if (body.keep_alive != null) out.keepAlive = body.keep_alive
  return out
}

function toMessage (m: NonNullable<OllamaChatBody['messages']>[number]): ChatMessage {
  const out: ChatMessage = { role: m.role, content: m.content ?? '' }
  if (m.images != null && m.images.length > 0) out.images = m.images
  if (m.thinking != null && m.thinking !== '') out.thinking = m.thinking
  if (m.tool_calls != null && m.tool_calls.length > 0) {
    out.toolCalls = m.tool_calls.map(c => ({ function: { name: c.function.name, arguments: c.function.arguments ?? {} } }))
  }
  if (m.tool_name != null && m.tool_name !== '') out.toolName = m.tool_name
  return out
}

/** undefined when the body has no messages: Ollama then only loads the model */
export function chatToRequest (body: OllamaChatBody): ChatRequest | undefined {
  if (body.messages == null || body.messages.length === 0) return undefined
  const request = { ...common(body), messages: body.messages.map(toMessage) }
  return checked(body.tools != null && body.tools.length > 0 ? { ...request, tools: body.tools } : request)
}

/** undefined when the prompt is empty: Ollama then only loads the model */
export function generateToRequest (body: OllamaGenerateBody): ChatRequest | undefined {
  // krill carries chats between peers: a prompt becomes a user message under the
  // model's own template, which is what /api/generate does without raw. What needs
  // Ollama's raw prompt path on the provider is refused, saying so.
  if (body.suffix != null && body.suffix !== '') {
    throw new HttpError(400, 'suffix (fill-in-the-middle) is not supported through krill: krill carries chats between peers, not raw prompts; run it on a provider\'s own Ollama', { param: 'suffix', code: 'unsupported' })
  }
  if (body.raw === true) {
    throw new HttpError(400, 'raw prompts are not supported through krill: krill sends the prompt as a chat message under the model\'s template; drop "raw" or use /api/chat', { param: 'raw', code: 'unsupported' })
  }
  if (body.template != null && body.template !== '') {
    throw new HttpError(400, 'a custom template is not supported through krill: the provider\'s model template applies', { param: 'template', code: 'unsupported' })
  }
  if (body.context != null && body.context.length > 0) {
    throw new HttpError(400, 'context (token state of an earlier /api/generate) is not supported through krill: token ids mean nothing on another peer; send the conversation to /api/chat as messages', { param: 'context', code: 'unsupported' })
  }
  if (body.prompt == null || body.prompt === '') return undefined
  const messages: ChatMessage[] = []
  if (body.system != null && body.system !== '') messages.push({ role: 'system', content: body.system })
  const user: ChatMessage = { role: 'user', content: body.prompt }
  if (body.images != null && body.images.length > 0) user.images = body.images
  messages.push(user)
  return checked({ ...common(body), messages })
}
