/**
 * The receipt exchange at the end of a stream, for any request/answer protocol
 * (chat, embed): the provider puts a signed receipt into its terminal frame and
 * reads one ReceiptAck frame back; the consumer checks the receipt against what it
 * received and sends that ReceiptAck before it closes its writable end.
 *
 * This file knows frames and streams only. Building, signing, checking and keeping
 * receipts is the business of whoever implements the two ports below (src/receipts/);
 * the composition root hands them to the protocol servers and clients.
 *
 * Provider, with a port `receipts` and the stream `stream`:
 *   const acks = receipts != null ? new AckReader(stream) : undefined  // before the terminal frame
 *   const issued = await receipts?.issue({ kind: 'embed', consumer, model, ... })
 *   send terminal frame carrying issued?.signedReceipt
 *   close the writable end
 *   if (issued != null) issued.settle(await acks.read(timeoutMs))
 * Consumer, on the terminal frame:
 *   const ack = await receipts?.settle(frame.receipt, { kind: 'embed', provider, ... })
 *   if (ack != null) await sendAck(stream, ack)
 *   then close the stream (never half-close before the ack: that means "cancel")
 */
import { FrameReader, writeFrame } from './frame-io.js'
import type { Stream } from '@libp2p/interface'

/** Largest ReceiptAck frame a provider reads (a 64-byte signature, a nonce and a short dispute). */
export const MAX_ACK_BYTES = 4 * 1024
/** How long a provider waits for the ack after its terminal frame by default. */
export const ACK_TIMEOUT_MS = 10_000

export type ReceiptKind = 'chat' | 'embed'

/** What the provider knows about a request it completed. */
export interface ServedFacts {
  kind: ReceiptKind
  /** the consumer's peer id */
  consumer: string
  /** the model name as the consumer asked for it */
  model: string
  /** digest of the copy that answered ('' when unknown) */
  modelDigest: string
  /** as the engine reported them */
  promptTokens: number
  completionTokens: number
  startedAtMs: number
  finishedAtMs: number
}

export interface IssuedReceipt {
  /** an encoded SignedReceipt for the terminal frame */
  signedReceipt: Uint8Array
  /** the consumer's ReceiptAck frame, or undefined when none came (old consumer, timeout, reset) */
  settle: (ack: Uint8Array | undefined) => void
}

/** Provider side: signs receipts and keeps them once the consumer answered (or did not). */
export interface ProviderReceiptPort {
  /** undefined: send no receipt */
  issue: (facts: ServedFacts) => Promise<IssuedReceipt | undefined>
}

/** What the consumer saw of an answer, to check a receipt against. */
export interface ReceivedFacts {
  kind: ReceiptKind
  /** the provider's peer id (the remote end of the stream) */
  provider: string
  /** the model name we asked for */
  model: string
  /** the digest the provider announced in Accepted ('' when none) */
  modelDigest: string
  /** when we sent the request / read the terminal frame (our clock) */
  requestSentAtMs: number
  doneAtMs: number
  /** frames carrying answer text or tool calls */
  deltaFrames: number
  /** characters of tool call names and arguments received */
  toolCallChars: number
  /** encoded request size and message count (bounds for the prompt token count) */
  requestBytes: number
  messages: number
  /** what the terminal frame claimed */
  promptTokens: number
  completionTokens: number
}

/** Consumer side: checks a receipt, countersigns or disputes it, keeps the outcome. */
export interface ConsumerReceiptPort {
  /**
   * `signedReceipt` is the terminal frame's receipt field (empty from old providers).
   * Returns the encoded ReceiptAck to send back, or undefined to send nothing.
   */
  settle: (signedReceipt: Uint8Array, received: ReceivedFacts) => Promise<Uint8Array | undefined>
}

/**
 * Reads the one ReceiptAck frame a consumer sends after the terminal frame. Create it
 * before sending that frame: bytes arriving while nobody listens are lost.
 */
export class AckReader {
  private readonly reader: FrameReader

  constructor (stream: Stream) {
    this.reader = new FrameReader(stream, { maxFrameBytes: MAX_ACK_BYTES, highWaterMark: MAX_ACK_BYTES * 2 })
  }

  /** The ack's bytes, or undefined when the stream ended, failed or stayed silent for `timeoutMs`. */
  async read (timeoutMs = ACK_TIMEOUT_MS): Promise<Uint8Array | undefined> {
    try {
      const frame = await this.reader.read(AbortSignal.timeout(timeoutMs))
      return frame?.subarray()
    } catch {
      return undefined
    } finally {
      this.reader.discardRest()
      this.reader.release()
    }
  }

  /** Stop listening without reading (the request did not complete). */
  release (): void {
    this.reader.discardRest()
    this.reader.release()
  }
}

/** Sends the consumer's ReceiptAck frame. */
export async function sendAck (stream: Stream, ack: Uint8Array, signal?: AbortSignal): Promise<void> {
  await writeFrame(stream, ack, signal)
}
