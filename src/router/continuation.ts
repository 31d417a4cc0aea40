/**
 * What a client has already received of an answer, and how another provider is
 * asked to go on from there: the conversation plus the partial assistant message
 * as the last message. Ollama continues a trailing assistant message instead of
 * starting a new one, so the continuation's deltas extend the same answer.
 */
import type { ChatMessage, ChatRequest, ToolCall, Usage } from '../engine/types.js'

export class PartialAnswer {
  content = ''
  thinking = ''
  toolCalls: ToolCall[] = []
  /** delta events delivered; Ollama sends one token per chunk, so this counts tokens */
  deltas = 0

  get empty (): boolean {
    return this.deltas === 0
  }

  add (delta: { content?: string, thinking?: string, toolCalls?: ToolCall[] }): void {
    if (delta.content != null) this.content += delta.content
    if (delta.thinking != null) this.thinking += delta.thinking
    if (delta.toolCalls != null) this.toolCalls.push(...delta.toolCalls)
    this.deltas++
  }
}

/** The request to send to the next provider after `partial` was delivered. */
export function continuationRequest (request: ChatRequest, partial: PartialAnswer, model: string): ChatRequest {
  if (partial.empty) return { ...request, model }
  const assistant: ChatMessage = { role: 'assistant', content: partial.content }
  if (partial.thinking !== '') assistant.thinking = partial.thinking
  return { ...request, model, messages: [...request.messages, assistant] }
}

/**
 * Usage of an answer that ran on more than one provider: the last provider's
 * numbers count the earlier part of the answer (`deltasBefore` tokens) as prompt,
 * so those tokens move back to the completion side.
 */
export function mergeUsage (last: Usage, deltasBefore: number, totalDurationNs: number): Usage {
  if (deltasBefore === 0) return last
  return {
    ...last,
    promptTokens: Math.max(0, last.promptTokens - deltasBefore),
    completionTokens: last.completionTokens + deltasBefore,
    totalDurationNs: Math.max(last.totalDurationNs, totalDurationNs)
  }
}
