/**
 * The engine-neutral shapes of models and chats. The Ollama adapter produces them,
 * the chat protocol carries them between peers, and the HTTP API translates them.
 */

export interface ModelInfo {
  name: string
  /** sha256 hex digest of the model manifest, as Ollama reports it */
  digest: string
  size: number
  family: string
  parameterSize: string
  quantization: string
  /** 0 when unknown */
  contextLength: number
  format?: string
  families?: string[]
  modifiedAt?: string
  /** what Ollama's /api/show says the model can do (completion, tools, vision, embedding, …); undefined when unknown */
  capabilities?: string[]
}

export interface ToolCall {
  function: {
    name: string
    arguments: Record<string, unknown>
  }
}

export type Role = 'system' | 'user' | 'assistant' | 'tool'

export interface ChatMessage {
  role: Role
  content: string
  /** base64-encoded images */
  images?: string[]
  thinking?: string
  toolCalls?: ToolCall[]
  /** for role 'tool': which tool produced this result */
  toolName?: string
}

/** Generation options krill forwards to Ollama; nothing outside this list ever reaches it. */
export interface ChatOptions {
  temperature?: number
  top_p?: number
  top_k?: number
  seed?: number
  stop?: string[]
  num_predict?: number
  num_ctx?: number
  repeat_penalty?: number
  presence_penalty?: number
  frequency_penalty?: number
  min_p?: number
}

export const CHAT_OPTION_KEYS = [
  'temperature', 'top_p', 'top_k', 'seed', 'stop', 'num_predict', 'num_ctx',
  'repeat_penalty', 'presence_penalty', 'frequency_penalty', 'min_p'
] as const satisfies ReadonlyArray<keyof ChatOptions>

export type Think = boolean | 'low' | 'medium' | 'high'

export interface ChatRequest {
  model: string
  /** when set, only a provider with exactly this model digest may answer */
  digest?: string
  messages: ChatMessage[]
  options?: ChatOptions
  /** 'json' or a JSON schema object */
  format?: 'json' | Record<string, unknown>
  /** tool definitions, OpenAI/Ollama function-tool shape */
  tools?: Array<Record<string, unknown>>
  think?: Think
  keepAlive?: string | number
}

export interface Usage {
  doneReason: string
  promptTokens: number
  completionTokens: number
  /** nanoseconds, as Ollama reports durations */
  totalDurationNs: number
  loadDurationNs: number
  promptEvalDurationNs: number
  evalDurationNs: number
}

/** What a chat yields, whether it runs on the local Ollama or on a remote peer. */
export type ChatEvent =
  | { type: 'accepted', peer: string, digest: string, queuePosition: number }
  | { type: 'delta', content?: string, thinking?: string, toolCalls?: ToolCall[] }
  | { type: 'done', usage: Usage }

/** Options an embedding request may carry to the engine; nothing else reaches it. */
export interface EmbedOptions {
  num_ctx?: number
}

export const EMBED_OPTION_KEYS = ['num_ctx'] as const satisfies ReadonlyArray<keyof EmbedOptions>

/** One embedding request: Ollama's /api/embed, always with a list of inputs. */
export interface EmbedRequest {
  model: string
  /** when set, only a provider with exactly this model digest may answer */
  digest?: string
  input: string[]
  /** false: an input longer than the context is an error instead of being cut (Ollama's default: true) */
  truncate?: boolean
  /** cut each vector to this length (and normalize it again), as Ollama does */
  dimensions?: number
  keepAlive?: string | number
  options?: EmbedOptions
}

export interface EmbedResult {
  /** one float32 vector per input, in input order */
  embeddings: Float32Array[]
  promptTokens: number
  totalDurationNs: number
  loadDurationNs: number
}

/** An engine that can embed (Ollama's /api/embed). */
export interface EmbedEngine {
  embed (request: EmbedRequest, signal: AbortSignal): Promise<EmbedResult>
}

/** An engine that can describe a model (Ollama's /api/show, as JSON). */
export interface ShowEngine {
  show (model: string, signal?: AbortSignal): Promise<Record<string, unknown>>
}

export interface Engine {
  /** models the engine can serve right now */
  listModels (signal?: AbortSignal): Promise<ModelInfo[]>
  /**
   * Streams one chat. Yields 'delta' events and ends with exactly one 'done'
   * event; throws KrillError on failure. Aborting `signal` aborts the request
   * at the engine at once.
   */
  chat (request: ChatRequest, signal: AbortSignal): AsyncIterable<Exclude<ChatEvent, { type: 'accepted' }>>
  /** true when the engine answers */
  isHealthy (signal?: AbortSignal): Promise<boolean>
}
