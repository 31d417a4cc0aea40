/**
 * Consumer side of /krill/embed/1.0.0: sends one EmbedRequest to a provider and
 * collects its vectors. Anything but a complete, well-formed answer is a thrown
 * KrillError naming the peer; aborting the signal (or a timeout) resets the stream
 * so the provider stops at once.
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { KrillError } from '../errors.js'
import type { EmbedRequest, EmbedResult } from '../engine/types.js'
import { openPreferDirect } from '../node/connections.js'
import { FrameFormatError, FrameReader, FrameTooLargeError, TruncatedFrameError, writeFrame } from './frame-io.js'
import { errorFromPb } from './frames.js'
import { sendAck, type ConsumerReceiptPort } from './receipt-exchange.js'
import { decodeEmbedFrame, encodeEmbedRequest, validateEmbedRequest, vectorsFromPb } from './embed-wire.js'
import { EMBED_PROTOCOL } from './ids.js'
import { DEFAULT_EMBED_LIMITS, resolveEmbedLimits, type EmbedLimits } from '../limits/index.js'

type DialingNode = Pick<Libp2p, 'getConnections' | 'getMultiaddrs' | 'dial' | 'addEventListener' | 'removeEventListener'>

export interface RequestEmbedOptions {
  signal?: AbortSignal
  /** from the call to the Done frame */
  timeoutMs?: number
  limits?: Partial<EmbedLimits>
  /** called when the provider accepted the request (before any vector) */
  onAccepted?: (info: { peer: string, digest: string, queuePosition: number }) => void
  /** checks the provider's receipt, countersigns or disputes it, before the stream closes */
  receipts?: ConsumerReceiptPort
}

export interface EmbedAnswer extends EmbedResult {
  peer: string
  /** the digest the provider said answers; '' when it does not know */
  digest: string
}

export async function requestEmbed (node: DialingNode, peerId: PeerId, request: EmbedRequest, opts: RequestEmbedOptions = {}): Promise<EmbedAnswer> {
  const peer = peerId.toString()
  const limits = resolveEmbedLimits({ ...DEFAULT_EMBED_LIMITS, ...opts.limits })
  const payload = encodeEmbedRequest(validateEmbedRequest(request, { ...limits, maxModelNameChars: 200 }))
  if (payload.byteLength > limits.maxRequestBytes) {
    throw new KrillError('TOO_LARGE', `embedding request of ${payload.byteLength} bytes exceeds the limit of ${limits.maxRequestBytes} bytes; split the batch`, { peer })
  }
  const ctl = new AbortController()
  let stream: Stream | undefined
  const stopWith = (reason: KrillError): void => {
    if (ctl.signal.aborted) return
    ctl.abort(reason)
    stream?.abort(reason)
  }
  const onUserAbort = (): void => { stopWith(new KrillError('CANCELLED', `embedding request to peer ${peer} was cancelled`, { peer })) }
  if (opts.signal?.aborted === true) onUserAbort()
  opts.signal?.addEventListener('abort', onUserAbort, { once: true })
  const timer = opts.timeoutMs != null
    ? setTimeout(() => { stopWith(new KrillError('TIMEOUT', `peer ${peer} did not answer the embedding within ${opts.timeoutMs} ms`, { peer })) }, opts.timeoutMs)
    : undefined
  let completed = false
  try {
    ctl.signal.throwIfAborted()
    try {
      ({ stream } = await openPreferDirect(node, peerId, EMBED_PROTOCOL, { signal: ctl.signal }))
    } catch (err) {
      throw new KrillError('ENGINE_FAILED', `could not open an embedding stream to peer ${peer}: ${err instanceof Error ? err.message : String(err)}`, { peer, cause: err })
    }
    const reader = new FrameReader(stream, { maxFrameBytes: limits.maxFrameBytes })
    const requestSentAtMs = Date.now()
    await writeFrame(stream, payload, ctl.signal).catch(err => {
      throw new KrillError('ENGINE_FAILED', `could not send the embedding request to peer ${peer}: ${err instanceof Error ? err.message : String(err)}`, { peer, cause: err })
    })
    let digest: string | undefined
    const embeddings: Float32Array[] = []
    while (true) {
      const frame = await readFrame(reader, peer, ctl.signal)
      if (frame.error != null) throw errorFromPb(frame.error, peer)
      if (frame.accepted != null) {
        if (digest != null) throw protocolError(peer, 'sent Accepted twice')
        digest = frame.accepted.modelDigest
        opts.onAccepted?.({ peer, digest, queuePosition: frame.accepted.queuePosition })
        continue
      }
      if (digest == null) throw protocolError(peer, 'sent a frame before Accepted')
      if (frame.vectors != null) {
        if (frame.vectors.firstIndex !== embeddings.length) throw protocolError(peer, `sent vectors from index ${frame.vectors.firstIndex}, expected ${embeddings.length}`)
        let vectors: Float32Array[]
        try {
          vectors = vectorsFromPb(frame.vectors, limits.maxDimensions)
        } catch (err) {
          throw protocolError(peer, `sent malformed vectors (${(err as Error).message})`)
        }
        if (embeddings.length + vectors.length > request.input.length) throw protocolError(peer, `sent more vectors than the ${request.input.length} inputs`)
        embeddings.push(...vectors)
        continue
      }
      if (frame.done != null) {
        if (embeddings.length !== request.input.length || frame.done.count !== embeddings.length) {
          throw protocolError(peer, `ended after ${embeddings.length} vectors (said ${frame.done.count}) for ${request.input.length} inputs`)
        }
        completed = true
        if (opts.receipts != null) {
          // the vectors are complete whatever happens here: a failure costs the receipt only
          try {
            const ack = await opts.receipts.settle(frame.done.receipt, {
              kind: 'embed',
              provider: peer,
              model: request.model,
              modelDigest: digest,
              requestSentAtMs,
              doneAtMs: Date.now(),
              deltaFrames: 0,
              toolCallChars: 0,
              requestBytes: payload.byteLength,
              messages: request.input.length,
              promptTokens: frame.done.promptEvalCount,
              completionTokens: 0
            })
            if (ack != null) await sendAck(stream, ack, ctl.signal)
          } catch {
            // the port logs what it refused
          }
        }
        return { peer, digest, embeddings, promptTokens: frame.done.promptEvalCount, totalDurationNs: frame.done.totalDuration, loadDurationNs: frame.done.loadDuration }
      }
      throw protocolError(peer, 'sent an empty frame')
    }
  } catch (err) {
    if (ctl.signal.aborted) throw ctl.signal.reason
    throw err
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onUserAbort)
    if (stream != null) {
      if (completed) await stream.close({ signal: AbortSignal.timeout(2_000) }).catch(() => { stream?.abort(new Error('close timed out')) })
      else stream.abort(new Error('embedding request abandoned'))
    }
  }
}

async function readFrame (reader: FrameReader, peer: string, signal: AbortSignal): Promise<ReturnType<typeof decodeEmbedFrame>> {
  let bytes
  try {
    bytes = await reader.read(signal)
  } catch (err) {
    if (err instanceof FrameTooLargeError) throw protocolError(peer, `sent a frame of ${err.length} bytes, over the limit of ${err.max}`)
    if (err instanceof FrameFormatError) throw protocolError(peer, err.message)
    if (err instanceof TruncatedFrameError) throw protocolError(peer, 'closed the stream in the middle of a frame')
    if (signal.aborted) throw signal.reason
    const name = err instanceof Error ? err.name : ''
    throw new KrillError('ENGINE_FAILED', name === 'StreamResetError' ? `peer ${peer} reset the stream` : `embedding stream to peer ${peer} failed: ${err instanceof Error ? err.message : String(err)}`, { peer, cause: err })
  }
  if (bytes == null) throw new KrillError('ENGINE_FAILED', `peer ${peer} closed the stream without a terminal frame`, { peer })
  try {
    return decodeEmbedFrame(bytes)
  } catch (err) {
    throw protocolError(peer, `sent an undecodable frame (${(err as Error).message})`)
  }
}

function protocolError (peer: string, what: string): KrillError {
  return new KrillError('ENGINE_FAILED', `peer ${peer} ${what}`, { peer })
}
