/**
 * Consumer side of /krill/chat/1.0.0: opens a stream to a provider, sends one
 * ChatRequest and turns the frames that come back into ChatEvents. Anything but a
 * clean Done is a thrown KrillError naming the peer; leaving early (abort, timeout,
 * `return()` on the generator) resets the stream so the provider stops at once.
 * When the stream died because its connection was closed while another connection
 * to the peer is open (DCUtR replacing a relayed connection by a direct one), the
 * error says so (`connectionReplaced`): the router then asks the same peer again.
 */
import { ErrorCode, KrillError } from '../errors.js'
import { openPreferDirect, pickConnection, replacementFor } from '../node/connections.js'
import { FrameFormatError, FrameReader, FrameTooLargeError, TruncatedFrameError, writeFrame } from './frame-io.js'
import { contentDeltaText, decodeFrame, deltaFromPb, encodeRequest, errorFromPb, usageFromPb } from './frames.js'
import { MAX_OUTBOUND_CHAT_STREAMS, resolveLimits } from '../limits/index.js'
import { CHAT_PROTOCOL } from './ids.js'
import { sendAck } from './receipt-exchange.js'
import { validateChatRequest } from './validate.js'
import type { ReadyStreams } from './ready-streams.js'
import type { ChatEvent, ChatRequest } from '../engine/types.js'
import type { ChatFrame } from './generated/chat.js'
import type { Limits } from '../limits/index.js'
import type { ConsumerReceiptPort, ReceivedFacts } from './receipt-exchange.js'
import type { Connection, Libp2p, NewStreamOptions, PeerId, Stream } from '@libp2p/interface'

export interface RequestChatOptions {
  /** aborting it cancels the request (KrillError CANCELLED) and resets the stream */
  signal?: AbortSignal
  /** time from the call until the first Delta (or Done) arrives */
  firstTokenTimeoutMs?: number
  /** time from the call until Done arrives */
  totalTimeoutMs?: number
  /** maxRequestBytes / maxFrameBytes and the request-shape limits checked before sending */
  limits?: Partial<Limits>
  /**
   * Checks the provider's receipt against what arrived, countersigns or disputes
   * it, and keeps it; the ack goes back on the stream before we close it.
   */
  receipts?: ConsumerReceiptPort
  /**
   * Chat streams negotiated ahead of time (ready-streams.ts): the request goes out
   * on the provider's ready stream when there is one, and the next one is opened
   * behind it. Without it every chat negotiates its own stream.
   */
  ready?: ReadyStreams
}

/** what openPreferDirect (node/connections.ts) needs to pick or dial a connection */
type DialingNode = Pick<Libp2p, 'getConnections' | 'getMultiaddrs' | 'dial' | 'addEventListener' | 'removeEventListener'>

/** Error frames a ready stream may hold from before our request arrived: worth one try on a fresh stream. */
const RETRY_ON_FRESH = new Set<number>([ErrorCode.TIMEOUT, ErrorCode.SHUTTING_DOWN])

/** How long we give our own close() after the terminal frame before resetting instead. */
const CLOSE_TIMEOUT_MS = 2_000

/**
 * Failures of the stream itself (reset, closed without a terminal frame, a write
 * that could not go out), as opposed to what the provider said: only these can be
 * the connection's doing.
 */
const streamFailures = new WeakSet<Error>()

function streamFailure<E extends Error> (err: E): E {
  streamFailures.add(err)
  return err
}

export async function * requestChat (node: DialingNode, peerId: PeerId, request: ChatRequest, opts: RequestChatOptions = {}): AsyncGenerator<ChatEvent, void, undefined> {
  const peer = peerId.toString()
  const limits = resolveLimits(opts.limits)
  // fail fast and locally on what the provider would refuse anyway
  const payload = encodeRequest(validateChatRequest(request, limits))
  if (payload.byteLength > limits.maxRequestBytes) {
    throw new KrillError('TOO_LARGE', `request of ${payload.byteLength} bytes exceeds the limit of ${limits.maxRequestBytes} bytes`, { peer })
  }

  const ctl = new AbortController()
  const timers: Array<ReturnType<typeof setTimeout>> = []
  let stream: Stream | undefined
  let connection: Connection | undefined
  const stopWith = (reason: KrillError): void => {
    if (ctl.signal.aborted) return
    ctl.abort(reason)
    // reset at once, even while the consumer is not pulling: the provider must notice now
    stream?.abort(reason)
  }
  const onUserAbort = (): void => { stopWith(new KrillError('CANCELLED', `request to peer ${peer} was cancelled`, { peer })) }
  if (opts.signal?.aborted === true) onUserAbort()
  opts.signal?.addEventListener('abort', onUserAbort, { once: true })
  if (opts.totalTimeoutMs != null) {
    const ms = opts.totalTimeoutMs
    timers.push(setTimeout(() => { stopWith(new KrillError('TIMEOUT', `peer ${peer} did not finish within ${ms} ms`, { peer })) }, ms))
  }
  let firstToken: ReturnType<typeof setTimeout> | undefined
  if (opts.firstTokenTimeoutMs != null) {
    const ms = opts.firstTokenTimeoutMs
    firstToken = setTimeout(() => { stopWith(new KrillError('TIMEOUT', `peer ${peer} sent no token within ${ms} ms`, { peer })) }, ms)
    timers.push(firstToken)
  }

  let completed = false
  let receipt: { port: ConsumerReceiptPort, bytes: Uint8Array, received: ReceivedFacts } | undefined
  try {
    ctl.signal.throwIfAborted()
    const spare = await takeReady(node, peerId, opts.ready, ctl.signal)
    let reader: FrameReader
    let first: ChatFrame
    let requestSentAtMs = 0
    const start = async (ready?: { stream: Stream, connection: Connection }): Promise<void> => {
      if (ready != null) {
        ({ stream, connection } = ready)
      } else {
        try {
          // on a direct connection when there is one; through a relay only when nothing else reaches the peer
          ({ stream, connection } = await openPreferDirect(node, peerId, CHAT_PROTOCOL, streamOptions(ctl.signal)))
        } catch (err) {
          const failure = streamError(err, peer, `could not open a chat stream to peer ${peer}`)
          // no connection, and the dial says nobody is there (not busy, not refusing)
          throw dialFailed(node, peerId, err, ctl.signal) ? new KrillError(failure.code, failure.message, { peer, cause: err, unreachable: true }) : failure
        }
      }
      const s = stream as Stream
      if (ctl.signal.aborted) s.abort(ctl.signal.reason)
      reader = new FrameReader(s, { maxFrameBytes: limits.maxFrameBytes })
      try {
        await writeFrame(s, payload, ctl.signal)
      } catch (err) {
        throw streamFailure(streamError(err, peer, `could not send the request to peer ${peer}`))
      }
      requestSentAtMs = Date.now()
      const got = await readFrame(reader, peer, ctl.signal)
      first = typeof got === 'string' ? { delta: { content: got, thinking: '', toolCalls: [] } } : got
    }
    try {
      await start(spare)
    } catch (err) {
      // a ready stream the provider let go as we took it (its arrival timeout, a
      // restart, a lost connection): the request goes again, once, on a fresh stream
      if (spare == null || ctl.signal.aborted || !(err instanceof KrillError && streamFailures.has(err))) throw err
      stream?.abort(new Error('ready chat stream failed'))
      await start()
    }
    if (spare != null && RETRY_ON_FRESH.has(first!.error?.code ?? 0)) {
      // the provider's arrival timeout fired on the ready stream just before our
      // request got there, or it was stopping then (and may be serving again)
      stream?.abort(new Error('ready chat stream timed out'))
      await start()
    }

    // the next chat's stream is negotiated once this one has its first token: off its path
    let refilled = false
    const refill = (): void => {
      if (refilled || connection == null) return
      refilled = true
      opts.ready?.refill(connection)
    }
    let accepted = false
    let digest = ''
    let deltaFrames = 0
    let toolCallChars = 0
    let frame: ChatFrame = first!
    let firstTokenSeen = false
    for (let n = 0; ; n++) {
      if (n > 0) {
        // a burst of frames is read without a promise each; only an empty buffer waits
        const got = (ctl.signal.aborted ? undefined : bufferedFrame(reader!, peer)) ?? await readFrame(reader!, peer, ctl.signal)
        if (typeof got === 'string') {
          // a plain content token: its event straight from the bytes, no frame objects
          if (!accepted) throw protocolError(peer, 'sent a frame before Accepted')
          if (!firstTokenSeen) {
            firstTokenSeen = true
            refill()
            clearTimeout(firstToken)
          }
          if (got === '') {
            yield { type: 'delta' }
          } else {
            deltaFrames++
            yield { type: 'delta', content: got }
          }
          continue
        }
        frame = got
      }
      if (frame.error != null) throw errorFromPb(frame.error, peer)
      if (frame.accepted != null) {
        if (accepted) throw protocolError(peer, 'sent Accepted twice')
        accepted = true
        digest = frame.accepted.modelDigest
        yield { type: 'accepted', peer, digest: frame.accepted.modelDigest, queuePosition: frame.accepted.queuePosition }
        continue
      }
      if (!accepted) throw protocolError(peer, 'sent a frame before Accepted')
      if (frame.delta != null) {
        if (!firstTokenSeen) {
          firstTokenSeen = true
          refill()
          clearTimeout(firstToken)
        }
        const d = frame.delta
        if (d.content !== '' || d.thinking !== '' || d.toolCalls.length > 0) deltaFrames++
        for (const call of d.toolCalls) toolCallChars += call.name.length + call.arguments.length
        yield deltaFromPb(d)
        continue
      }
      if (frame.done != null) {
        if (deltaFrames === 0) refill()
        clearTimeout(firstToken)
        completed = true
        if (opts.receipts != null) {
          // settled in `finally`, after the caller has its answer: the receipt costs it no wait
          receipt = {
            port: opts.receipts,
            bytes: frame.done.receipt,
            received: {
              kind: 'chat',
              provider: peer,
              model: request.model,
              modelDigest: digest,
              requestSentAtMs,
              doneAtMs: Date.now(),
              deltaFrames,
              toolCallChars,
              requestBytes: payload.byteLength,
              messages: request.messages.length,
              promptTokens: frame.done.promptEvalCount,
              completionTokens: frame.done.evalCount
            }
          }
        }
        yield { type: 'done', usage: usageFromPb(frame.done) }
        return
      }
      throw protocolError(peer, 'sent an empty frame')
    }
  } catch (err) {
    // a timeout or cancellation explains the failure better than the reset it caused
    if (ctl.signal.aborted) throw ctl.signal.reason
    if (err instanceof KrillError && streamFailures.has(err) && stream != null && connection != null) {
      // reset now, not in `finally`: a graceful close of the connection waits for
      // its streams, so only then does the connection report that it went away
      stream.abort(new Error('chat request abandoned'))
      const successor = await replacementFor(node, connection, ctl.signal)
      if (ctl.signal.aborted) throw ctl.signal.reason
      if (successor != null) {
        throw new KrillError(err.code, `${err.message}: its connection (${connection.remoteAddr.toString()}) closed and another one (${successor.remoteAddr.toString()}) took its place`, { peer, cause: err, connectionReplaced: true })
      }
    }
    throw err
  } finally {
    for (const t of timers) clearTimeout(t)
    opts.signal?.removeEventListener('abort', onUserAbort)
    if (stream != null) {
      if (completed) {
        // the countersignature (or dispute) goes back before we close: a close before it would mean "cancel"
        if (receipt != null) await settleReceipt(receipt.port, stream, ctl.signal, receipt.bytes, receipt.received)
        await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT_MS) })
          .catch((err: unknown) => { stream?.abort(err instanceof Error ? err : new Error(String(err))) })
      } else {
        // error, abort, timeout or an early return(): the provider must stop now
        stream.abort(new Error('chat request abandoned'))
      }
    }
  }
}

/**
 * Hands the receipt to the port and sends its ack, before our side closes. The
 * answer is complete whatever happens here: a failure costs the receipt only.
 */
async function settleReceipt (port: ConsumerReceiptPort, stream: Stream, signal: AbortSignal, receipt: Uint8Array, received: ReceivedFacts): Promise<void> {
  try {
    const ack = await port.settle(receipt, received)
    if (ack != null) await sendAck(stream, ack, signal)
  } catch {
    // the port logs what it refused; a stream that failed now has nothing left to lose
  }
}

/** The provider's ready stream on the connection a chat would pick, if there is a usable one. */
async function takeReady (node: DialingNode, peerId: PeerId, ready: ReadyStreams | undefined, signal: AbortSignal): Promise<{ stream: Stream, connection: Connection } | undefined> {
  if (ready == null) return undefined
  const connection = pickConnection(node.getConnections(peerId))
  if (connection == null) return undefined
  const stream = await ready.takeSoon(connection, signal)
  return stream != null ? { stream, connection } : undefined
}

/** passed through to newStream: more concurrent chats to one provider than libp2p's default 64 */
function streamOptions (signal: AbortSignal): NewStreamOptions {
  return { signal, maxOutboundStreams: MAX_OUTBOUND_CHAT_STREAMS }
}

/** The next frame; a plain content delta comes as its text (see contentDeltaText). */
async function readFrame (reader: FrameReader, peer: string, signal: AbortSignal): Promise<ChatFrame | string> {
  let bytes
  try {
    bytes = await reader.read(signal)
  } catch (err) {
    throw readError(err, peer)
  }
  if (bytes == null) {
    throw streamFailure(new KrillError('ENGINE_FAILED', `peer ${peer} closed the stream without a terminal frame`, { peer }))
  }
  return decodeFrom(bytes, peer)
}

/** the next frame when it has arrived complete, else undefined (then readFrame) */
function bufferedFrame (reader: FrameReader, peer: string): ChatFrame | string | undefined {
  let bytes
  try {
    bytes = reader.readBuffered()
  } catch (err) {
    throw readError(err, peer)
  }
  return bytes === undefined ? undefined : decodeFrom(bytes, peer)
}

function readError (err: unknown, peer: string): KrillError {
  if (err instanceof FrameTooLargeError) return protocolError(peer, `sent a frame of ${err.length} bytes, over the limit of ${err.max}`)
  if (err instanceof FrameFormatError) return protocolError(peer, err.message)
  if (err instanceof TruncatedFrameError) return streamFailure(protocolError(peer, 'closed the stream in the middle of a frame'))
  return streamFailure(streamError(err, peer, `stream to peer ${peer} failed`))
}

function decodeFrom (bytes: Uint8Array, peer: string): ChatFrame | string {
  const content = contentDeltaText(bytes)
  if (content !== undefined) return content
  try {
    return decodeFrame(bytes)
  } catch (err) {
    throw protocolError(peer, `sent an undecodable frame (${(err as Error).message})`)
  }
}

function protocolError (peer: string, what: string): KrillError {
  return new KrillError('ENGINE_FAILED', `peer ${peer} ${what}`, { peer })
}

/**
 * Dial errors that say nobody is there: nothing listens (the process is gone), no
 * route, or no address to try. Not timeouts: a frozen or distant peer, or our own
 * starved event loop, cannot be told from a gone one by them (hedging and backoff
 * deal with those); not resets: a full peer may close on us.
 */
const GONE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN'])

function saysGone (err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.length > 0 && err.errors.every(saysGone)
  const e = err as { code?: unknown, name?: unknown } | undefined
  return GONE_CODES.has(String(e?.code)) || e?.name === 'NoValidAddressesError'
}

/** true when opening the stream failed because the peer could not be dialed at all */
function dialFailed (node: DialingNode, peerId: PeerId, err: unknown, signal: AbortSignal): boolean {
  if (signal.aborted || err instanceof KrillError || node.getConnections(peerId).length > 0) return false
  return saysGone(err)
}

function streamError (err: unknown, peer: string, context: string): KrillError {
  if (err instanceof KrillError) return err
  const message = err instanceof Error ? err.message : String(err)
  const name = err instanceof Error ? err.name : ''
  if (name === 'StreamResetError') {
    return new KrillError('ENGINE_FAILED', `peer ${peer} reset the stream`, { peer, cause: err })
  }
  return new KrillError('ENGINE_FAILED', `${context}: ${message}`, { peer, cause: err })
}
