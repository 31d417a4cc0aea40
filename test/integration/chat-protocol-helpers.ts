/**
 * Helpers for the chat protocol integration tests: real libp2p nodes (TCP + noise +
 * yamux on 127.0.0.1), a ChatServer on the real OllamaEngine in front of the Ollama
 * stand-in, and a raw client for speaking malformed bytes at a provider.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import { createLibp2p, type ServiceFactoryMap } from 'libp2p'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import { chatServer, type ChatServer } from '../../src/protocol/chat-server.js'
import { FrameReader, lengthPrefixed } from '../../src/protocol/frame-io.js'
import { decodeFrame } from '../../src/protocol/frames.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import type { ChatEvent, ChatRequest } from '../../src/engine/types.js'
import type { ChatServerEvent, ChatServerOptions } from '../../src/protocol/chat-server.js'
import type { ChatFrame } from '../../src/protocol/generated/chat.js'
import type { Limits } from '../../src/limits/index.js'
import type { StandinKnobs, StandinModel } from '../fixtures/ollama-standin.js'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

export const MODEL = 'llama3.2:1b'

const cleanups: Array<() => Promise<void>> = []

/** Stops everything created since the last call, newest first. */
export async function cleanup (): Promise<void> {
  const errors: unknown[] = []
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn()
    } catch (err) {
      errors.push(err)
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed')
}

export async function createNode<S extends Record<string, unknown> = Record<string, unknown>> (services?: ServiceFactoryMap<S>): Promise<Libp2p<S>> {
  const node = await createLibp2p<S>({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // every test peer dials from 127.0.0.1: lift the per-host inbound rate limit
    connectionManager: { inboundConnectionThreshold: 1000 },
    services
  })
  cleanups.push(async () => { await node.stop() })
  return node
}

export interface Provider {
  node: Libp2p
  server: ChatServer
  engine: OllamaEngine
  standin: OllamaStandin
  events: ChatServerEvent[]
  digest: string
}

export async function startProvider (opts: {
  knobs?: Partial<StandinKnobs>
  models?: StandinModel[]
  slots?: number
  maxQueue?: number
  limits?: Partial<Limits>
  server?: Partial<ChatServerOptions>
} = {}): Promise<Provider> {
  const standin = await OllamaStandin.start({ models: opts.models ?? [{ name: MODEL }], knobs: opts.knobs })
  cleanups.push(async () => { await standin.stop() })
  const engine = new OllamaEngine({ host: standin.url })
  const models = await engine.listModels()
  const events: ChatServerEvent[] = []
  // the chat server as the daemon runs it: a libp2p service, started with the node
  const node = await createNode({ chat: chatServer({
    engine,
    slots: opts.slots ?? 2,
    maxQueue: opts.maxQueue ?? 4,
    limits: opts.limits,
    // the engine is the source of truth for what this provider serves
    isServedModel: (name, digest) => models.some(m => m.name === name && (digest == null || m.digest === digest)),
    resolveDigest: name => models.find(m => m.name === name)?.digest,
    onEvent: e => { events.push(e) },
    ...opts.server
  }) })
  const server = node.services.chat
  cleanups.push(async () => { await server.stop() })
  return { node, server, engine, standin, events, digest: models[0]?.digest ?? '' }
}

/** A consumer node already connected to `provider`. */
export async function connectedClient (provider: Provider): Promise<Libp2p> {
  const client = await createNode()
  await client.dial(provider.node.getMultiaddrs()[0])
  return client
}

export function chatRequest (overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { model: MODEL, messages: [{ role: 'user', content: 'say hello to the krill' }], ...overrides }
}

export interface Outcome {
  events: ChatEvent[]
  error?: any
  ms: number
}

/** Drains a chat generator; never throws. */
export async function collect (gen: AsyncGenerator<ChatEvent>): Promise<Outcome> {
  const started = Date.now()
  const events: ChatEvent[] = []
  try {
    for await (const e of gen) events.push(e)
    return { events, ms: Date.now() - started }
  } catch (error) {
    return { events, error, ms: Date.now() - started }
  }
}

export function text (events: ChatEvent[]): string {
  return events.map(e => e.type === 'delta' ? e.content ?? '' : '').join('')
}

/**
 * Opens a raw chat stream, writes `chunks` as they are (no framing added), then
 * reads frames until the provider ends its side. Our writable end stays open (a
 * client that stops mid-request) unless `closeWrite`.
 */
export async function rawExchange (client: Libp2p, peer: PeerId, chunks: Uint8Array[], opts: { timeoutMs?: number, closeWrite?: boolean } = {}): Promise<{ frames: ChatFrame[], stream: Stream, ms: number }> {
  const stream = await client.dialProtocol(peer, CHAT_PROTOCOL)
  const started = Date.now()
  const reader = new FrameReader(stream, { maxFrameBytes: 1024 * 1024 })
  for (const chunk of chunks) stream.send(chunk)
  if (opts.closeWrite === true) await stream.close()
  const frames: ChatFrame[] = []
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 15_000)
  try {
    for (let payload = await reader.read(signal); payload != null; payload = await reader.read(signal)) {
      frames.push(decodeFrame(payload))
    }
  } finally {
    stream.abort(new Error('test done'))
  }
  return { frames, stream, ms: Date.now() - started }
}

export { lengthPrefixed }

export function tokens (n: number, size = 1): string[] {
  return Array.from({ length: n }, (_, i) => (` t${i}`).padEnd(size, '.'))
}
