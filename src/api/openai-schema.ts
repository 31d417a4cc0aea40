/**
 * The OpenAI chat-completions request: zod schema and translation to krill's
 * ChatRequest. Fields krill cannot honour but that do no harm (user, metadata,
 * logprobs, parallel_tool_calls, tool_choice, ...) are accepted and dropped; fields
 * that would silently change the answer if ignored (n > 1, remote image URLs) are
 * refused with a 400 that names the field.
 */
import { z } from 'zod'
import type { ChatMessage, ChatOptions, ChatRequest, Think, ToolCall } from '../engine/types.js'
import { KrillError } from '../errors.js'
import { validateChatRequest } from '../protocol/validate.js'
import { HttpError } from './http-errors.js'

const textPart = z.object({ type: z.literal('text'), text: z.string() })
const imagePart = z.object({
  type: z.literal('image_url'),
  image_url: z.union([z.string(), z.object({ url: z.string(), detail: z.string().optional() })])
})
const contentPart = z.discriminatedUnion('type', [textPart, imagePart])
const content = z.union([z.string(), z.array(contentPart), z.null()])

const toolCall = z.object({
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().min(1), arguments: z.string() })
})

const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: content.optional(),
  name: z.string().optional(),
  tool_calls: z.array(toolCall).optional(),
  tool_call_id: z.string().optional(),
  // what reasoning models said before (Ollama's and DeepSeek's spellings)
  reasoning: z.string().optional(),
  reasoning_content: z.string().optional()
})

const tool = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().min(1),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullable().optional()
  })
})

const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: z.string().optional(),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional()
    })
  })
])

const finite = z.number().refine(Number.isFinite, 'must be a finite number')

export const chatCompletionSchema = z.object({
  model: z.string().min(1, 'model is required'),
  messages: z.array(message).min(1, 'messages must not be empty'),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  temperature: finite.min(0).max(2).nullable().optional(),
  top_p: finite.min(0).max(1).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()), z.null()]).optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  presence_penalty: finite.min(-2).max(2).nullable().optional(),
  frequency_penalty: finite.min(-2).max(2).nullable().optional(),
  response_format: responseFormat.nullable().optional(),
  tools: z.array(tool).nullable().optional(),
  tool_choice: z.unknown().optional(),
  n: z.number().int().nullable().optional(),
  reasoning_effort: z.enum(['none', 'minimal', 'low', 'medium', 'high']).nullable().optional()
})

export type ChatCompletionBody = z.infer<typeof chatCompletionSchema>

/** "messages[2].content" from a zod issue path */
export function fieldPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const key of path) {
    out += typeof key === 'number' ? `[${key}]` : `${out === '' ? '' : '.'}${String(key)}`
  }
  return out
}

/** Parses a body with `schema`, or throws HttpError 400 naming the first bad field. */
export function parseBody<T extends z.ZodType> (schema: T, body: unknown): z.infer<T> {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'request body must be a JSON object', { code: 'invalid_request' })
  }
  const parsed = schema.safeParse(body)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const field = fieldPath(issue.path)
  const message = issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message
  throw new HttpError(400, field === '' ? message : `${field}: ${message}`, { param: field === '' ? undefined : field, code: 'invalid_request' })
}

function imageFromUrl (url: string, where: string): string {
  const m = /^data:[^;,]*(?:;[^;,]*)*;base64,(.*)$/s.exec(url)
  if (m == null) {
    throw new HttpError(400, `${where}: only data: URLs with base64 images are supported (krill does not fetch remote images)`, { param: where, code: 'invalid_image_url' })
  }
  return m[1].replace(/\s+/g, '')
}

function messageText (c: z.infer<typeof content> | undefined, where: string): { text: string, images: string[] } {
  if (c == null) return { text: '', images: [] }
  if (typeof c === 'string') return { text: c, images: [] }
  const texts: string[] = []
  const images: string[] = []
  c.forEach((part, j) => {
    if (part.type === 'text') texts.push(part.text)
    else images.push(imageFromUrl(typeof part.image_url === 'string' ? part.image_url : part.image_url.url, `${where}[${j}].image_url.url`))
  })
  return { text: texts.join('\n'), images }
}

function toolCallsFrom (calls: Array<z.infer<typeof toolCall>>, where: string): ToolCall[] {
  return calls.map((c, j) => {
    let args: unknown
    try {
      args = c.function.arguments.trim() === '' ? {} : JSON.parse(c.function.arguments)
    } catch {
      throw new HttpError(400, `${where}[${j}].function.arguments is not valid JSON`, { param: `${where}[${j}].function.arguments` })
    }
    if (args == null || typeof args !== 'object' || Array.isArray(args)) {
      throw new HttpError(400, `${where}[${j}].function.arguments must be a JSON object`, { param: `${where}[${j}].function.arguments` })
    }
    return { function: { name: c.function.name, arguments: args as Record<string, unknown> } }
  })
}

function toMessages (messages: ChatCompletionBody['messages']): ChatMessage[] {
  // tool results name the call they answer by id; Ollama wants the tool's name
  const toolNames = new Map<string, string>()
  return messages.map((m, i) => {
    const where = `messages[${i}]`
    const { text, images } = messageText(m.content, `${where}.content`)
    const role = m.role === 'developer' ? 'system' : m.role === 'function' ? 'tool' : m.role
    const out: ChatMessage = { role, content: text }
    if (images.length > 0) out.images = images
    if (m.role === 'assistant') {
      const thinking = m.reasoning ?? m.reasoning_content
      if (thinking != null && thinking !== '') out.thinking = thinking
      if (m.tool_calls != null && m.tool_calls.length > 0) {
        out.toolCalls = toolCallsFrom(m.tool_calls, `${where}.tool_calls`)
        for (const c of m.tool_calls) if (c.id != null) toolNames.set(c.id, c.function.name)
      }
    }
    if (role === 'tool') {
      const name = (m.tool_call_id != null ? toolNames.get(m.tool_call_id) : undefined) ?? m.name
      if (name != null && name !== '') out.toolName = name
    }
    return out
  })
}

function toThink (effort: ChatCompletionBody['reasoning_effort']): Think | undefined {
  if (effort == null) return undefined
  if (effort === 'none') return false
  return effort === 'minimal' ? 'low' : effort
}

/** The krill ChatRequest for an OpenAI body; throws HttpError 400 on what cannot be honoured. */
export function toChatRequest (body: ChatCompletionBody): ChatRequest {
  if (body.n != null && body.n !== 1) throw new HttpError(400, 'n: only n=1 is supported', { param: 'n' })
  const options: ChatOptions = {}
  if (body.temperature != null) options.temperature = body.temperature
  if (body.top_p != null) options.top_p = body.top_p
  if (body.seed != null) options.seed = body.seed
  if (body.presence_penalty != null) options.presence_penalty = body.presence_penalty
  if (body.frequency_penalty != null) options.frequency_penalty = body.frequency_penalty
  const maxTokens = body.max_completion_tokens ?? body.max_tokens
  if (maxTokens != null) options.num_predict = maxTokens
  if (body.stop != null) {
    const stop = (typeof body.stop === 'string' ? [body.stop] : body.stop).filter(s => s !== '')
    if (stop.length > 0) options.stop = stop
  }

  const request: Record<string, unknown> = { model: body.model, messages: toMessages(body.messages) }
  if (Object.keys(options).length > 0) request.options = options
  const rf = body.response_format
  if (rf?.type === 'json_object') request.format = 'json'
  if (rf?.type === 'json_schema') request.format = rf.json_schema.schema ?? 'json'
  // tool_choice "none" means: do not call tools; other choices cannot be forced, so they are ignored
  if (body.tools != null && body.tools.length > 0 && body.tool_choice !== 'none') request.tools = body.tools
  const think = toThink(body.reasoning_effort)
  if (think !== undefined) request.think = think
  return checked(request)
}

/** The limits every request meets on the wire, checked before routing. */
export function checked (request: Record<string, unknown>): ChatRequest {
  try {
    return validateChatRequest(request)
  } catch (err) {
    if (err instanceof KrillError) throw new HttpError(400, err.message, { code: 'invalid_request' })
    throw err
  }
}

// ---- /v1/embeddings --------------------------------------------------------

export const embeddingsSchema = z.object({
  model: z.string().min(1, 'model is required'),
  input: z.union([z.string(), z.array(z.string()), z.array(z.number()), z.array(z.array(z.number()))], { error: 'must be a string or a list of strings' }),
  encoding_format: z.string().nullable().optional(),
  dimensions: z.number().int().min(1).nullable().optional(),
  user: z.string().nullable().optional()
})

export type EmbeddingsBody = z.infer<typeof embeddingsSchema>

/** The texts to embed; token-id arrays are refused (krill carries text), as is an empty list. */
export function embeddingInputs (body: EmbeddingsBody): string[] {
  if (typeof body.input === 'string') return [body.input]
  if (body.input.length === 0) throw new HttpError(400, 'input: must not be empty', { param: 'input', code: 'invalid_request' })
  if (!body.input.every((i): i is string => typeof i === 'string')) {
    throw new HttpError(400, 'input: token arrays are not supported through krill; send the text', { param: 'input', code: 'unsupported' })
  }
  return body.input
}

/** "float" (default) or "base64", as Ollama's OpenAI layer accepts them. */
export function encodingFormat (body: EmbeddingsBody): 'float' | 'base64' {
  const f = body.encoding_format
  if (f == null || f === '' || f.toLowerCase() === 'float') return 'float'
  if (f.toLowerCase() === 'base64') return 'base64'
  throw new HttpError(400, `Invalid value for 'encoding_format' = ${f}. Supported values: ['float', 'base64'].`, { param: 'encoding_format', code: 'invalid_request' })
}

// ---- /v1/completions (legacy text completion) -------------------------------

export const completionSchema = z.object({
  model: z.string().min(1, 'model is required'),
  prompt: z.union([z.string(), z.array(z.string())]),
  suffix: z.string().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  temperature: finite.min(0).max(2).nullable().optional(),
  top_p: finite.min(0).max(1).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()), z.null()]).optional(),
  presence_penalty: finite.min(-2).max(2).nullable().optional(),
  frequency_penalty: finite.min(-2).max(2).nullable().optional(),
  n: z.number().int().nullable().optional(),
  best_of: z.number().int().nullable().optional(),
  echo: z.boolean().nullable().optional(),
  logprobs: z.number().int().nullable().optional(),
  user: z.string().nullable().optional()
})

export type CompletionBody = z.infer<typeof completionSchema>

/**
 * The prompt as one user message under the model's template, which is what Ollama's
 * /v1/completions does (it calls /api/generate without raw). What cannot be
 * honoured that way is refused, naming the field.
 */
export function completionToRequest (body: CompletionBody): ChatRequest {
  const prompts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt
  if (prompts.length !== 1) throw new HttpError(400, 'prompt: exactly one prompt per request is supported', { param: 'prompt' })
  if (body.n != null && body.n !== 1) throw new HttpError(400, 'n: only n=1 is supported', { param: 'n' })
  if (body.best_of != null && body.best_of !== 1) throw new HttpError(400, 'best_of: only best_of=1 is supported', { param: 'best_of' })
  if (body.echo === true) throw new HttpError(400, 'echo: not supported through krill', { param: 'echo' })
  if (body.logprobs != null) throw new HttpError(400, 'logprobs: not supported through krill', { param: 'logprobs' })
  if (body.suffix != null && body.suffix !== '') {
    throw new HttpError(400, 'suffix (fill-in-the-middle) is not supported through krill: krill carries chats between peers, not raw prompts', { param: 'suffix', code: 'unsupported' })
  }
  const options: ChatOptions = {}
  if (body.temperature != null) options.temperature = body.temperature
  if (body.top_p != null) options.top_p = body.top_p
  if (body.seed != null) options.seed = body.seed
  if (body.presence_penalty != null) options.presence_penalty = body.presence_penalty
  if (body.frequency_penalty != null) options.frequency_penalty = body.frequency_penalty
  if (body.max_tokens != null) options.num_predict = body.max_tokens
  if (body.stop != null) {
    const stop = (typeof body.stop === 'string' ? [body.stop] : body.stop).filter(s => s !== '')
    if (stop.length > 0) options.stop = stop
  }
  const request: Record<string, unknown> = { model: body.model, messages: [{ role: 'user', content: prompts[0] }] }
  if (Object.keys(options).length > 0) request.options = options
  return checked(request)
}
