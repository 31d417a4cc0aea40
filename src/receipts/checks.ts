/**
 * What a consumer checks before it countersigns a receipt: that it names the two
 * parties, the model and the counts of the answer it actually received, that its
 * times lie within the clock-skew window around the request, and that the
 * completion count is one the streamed answer can bear.
 */
import type { ReceivedFacts } from '../protocol/receipt-exchange.js'
import type { ReceiptFacts } from './receipt.js'

/** Default clock-skew window between the two parties' clocks. */
export const DEFAULT_SKEW_MS = 5 * 60_000

/**
 * The most completion tokens an answer of `deltaFrames` frames may claim. Ollama
 * streams one token per chunk, but holds some back (a partial UTF-8 character, a
 * possible stop sequence, the end token) and sends a tool call as one chunk; so a
 * small slack, 5 % of the frames, and a token per two characters of tool calls.
 */
export function completionAllowance (deltaFrames: number, toolCallChars: number): number {
  return deltaFrames + Math.ceil(deltaFrames / 20) + Math.ceil(toolCallChars / 2) + 8
}

/**
 * The most prompt tokens a request may cost: no tokenizer makes more tokens than
 * bytes from text, plus the chat template's own tokens per message and overall.
 */
export function promptAllowance (requestBytes: number, messages: number): number {
  return requestBytes + 64 * messages + 1024
}

/** Why the receipt is wrong for this answer; undefined when it is right. */
export function disagreement (receipt: ReceiptFacts, received: ReceivedFacts, self: string): string | undefined {
  if (receipt.provider !== received.provider) return `receipt names provider ${receipt.provider}, the answer came from ${received.provider}`
  if (receipt.consumer !== self) return `receipt names consumer ${receipt.consumer}, not us (${self})`
  if (receipt.kind !== received.kind) return `receipt is for a ${receipt.kind} request, this was ${received.kind}`
  if (receipt.model !== received.model) return `receipt names model ${receipt.model}, we asked for ${received.model}`
  if (receipt.modelDigest !== received.modelDigest) return `receipt names digest "${receipt.modelDigest}", Accepted said "${received.modelDigest}"`
  if (receipt.promptTokens !== received.promptTokens || receipt.completionTokens !== received.completionTokens) {
    return `receipt counts ${receipt.promptTokens}+${receipt.completionTokens} tokens, the terminal frame said ${received.promptTokens}+${received.completionTokens}`
  }
  const completion = completionAllowance(received.deltaFrames, received.toolCallChars)
  if (receipt.completionTokens > completion) {
    return `receipt counts ${receipt.completionTokens} completion tokens, we received ${received.deltaFrames} frames (at most ${completion} tokens)`
  }
  const prompt = promptAllowance(received.requestBytes, received.messages)
  if (receipt.promptTokens > prompt) {
    return `receipt counts ${receipt.promptTokens} prompt tokens for a ${received.requestBytes}-byte request (at most ${prompt})`
  }
  return undefined
}

/** Why the receipt's times are outside the window around our request; undefined when inside. */
export function outsideWindow (receipt: ReceiptFacts, received: ReceivedFacts, skewMs: number): string | undefined {
  if (receipt.finishedAtMs < receipt.startedAtMs) return 'receipt finished before it started'
  if (receipt.startedAtMs < received.requestSentAtMs - skewMs) {
    return `receipt starts ${new Date(receipt.startedAtMs).toISOString()}, more than ${skewMs} ms before we asked (${new Date(received.requestSentAtMs).toISOString()})`
  }
  if (receipt.finishedAtMs > received.doneAtMs + skewMs) {
    return `receipt finishes ${new Date(receipt.finishedAtMs).toISOString()}, more than ${skewMs} ms after the answer arrived (${new Date(received.doneAtMs).toISOString()})`
  }
  return undefined
}
