/**
 * Receipts between real libp2p nodes (TCP + noise + yamux on 127.0.0.1): each node
 * runs the receipt book as a libp2p service on its own LevelDB datastore, the
 * provider a ChatServer on the real OllamaEngine in front of the stand-in, the
 * consumer the real chat client. What a third party can check is checked with
 * nothing but the two peer ids and Node's own Ed25519.
 */
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import { base58btc } from 'multiformats/bases/base58'
import { afterEach, describe, expect, it } from 'vitest'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import { ChatServer } from '../../src/protocol/chat-server.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { FrameReader, writeFrame } from '../../src/protocol/frame-io.js'
import { acceptedFrame, deltaFrame, doneFrame, encodeFrame } from '../../src/protocol/frames.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { encodeReceipt, encodeSignedReceipt, signReceipt } from '../../src/receipts/receipt.js'
import { receipts, type ReceiptBook } from '../../src/receipts/receipt-book.js'
import { OllamaStandin, DEFAULT_TOKENS } from '../fixtures/ollama-standin.js'
import { tempDir } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'
import type { ChatServerOptions } from '../../src/protocol/chat-server.js'
import type { LedgerEntry } from '../../src/receipts/ledger.js'
import type { StandinKnobs } from '../fixtures/ollama-standin.js'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

const MODEL = 'llama3.2:1b'
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
})

type Node = Libp2p<{ receipts: ReceiptBook }>

interface Peer {
  node: Node
  book: ReceiptBook
  dir: string
  key: PrivateKey
}

/** A libp2p node whose datastore is LevelDB in `dir` and whose receipt book is a service. */
async function startPeer (opts: { dir?: string, key?: PrivateKey, skewMs?: number } = {}): Promise<Peer> {
  const dir = opts.dir ?? await tempDir('krill-receipts-')
  const key = opts.key ?? await generateKeyPair('Ed25519')
  const datastore = new LevelDatastore(join(dir, 'datastore'))
  await datastore.open()
  const node = await createLibp2p({
    privateKey: key,
    datastore,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 1000 },
    services: { receipts: receipts({ skewMs: opts.skewMs }) }
  })
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await node.stop()
    await datastore.close()
  }
  cleanups.push(async () => { await stop(); if (opts.dir == null) await rm(dir, { recursive: true, force: true }) })
  ;(node as any).stopAll = stop
  return { node, book: node.services.receipts, dir, key }
}

async function stopPeer (p: Peer): Promise<void> {
  await (p.node as any).stopAll()
}

async function startStandin (knobs: Partial<StandinKnobs> = {}): Promise<OllamaStandin> {
  const standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs })
  cleanups.push(async () => { await standin.stop() })
  return standin
}

/** Makes `peer` a provider: a ChatServer in front of `standin`, signing receipts with its book (unless `receipts: false`). */
async function serve (peer: Peer, standin: OllamaStandin, opts: Partial<ChatServerOptions> & { receipts?: false | ChatServerOptions['receipts'] } = {}): Promise<ChatServer> {
  const engine = new OllamaEngine({ host: standin.url })
  const models = await engine.listModels()
  const { receipts: port, ...rest } = opts
  const server = new ChatServer({
    engine,
    slots: 2,
    maxQueue: 64,
    isServedModel: name => models.some(m => m.name === name),
    resolveDigest: name => models.find(m => m.name === name)?.digest,
    receipts: port === false ? undefined : (port ?? peer.book),
    standing: p => peer.book.score(p),
    ...rest
  })
  await server.start(peer.node)
  cleanups.push(async () => { await server.stop() })
  return server
}

async function chat (consumer: Peer, provider: Peer, opts: { receipts?: boolean, content?: string } = {}): Promise<{ text: string, firstTokenMs: number, error?: Error }> {
  if (consumer.node.getConnections(provider.node.peerId).length === 0) await consumer.node.dial(provider.node.getMultiaddrs()[0])
  const started = Date.now()
  let text = ''
  let firstTokenMs = -1
  try {
    for await (const e of requestChat(consumer.node, provider.node.peerId, { model: MODEL, messages: [{ role: 'user', content: opts.content ?? 'hello krill' }] }, { receipts: opts.receipts === false ? undefined : consumer.book })) {
      if (e.type === 'delta') {
        if (firstTokenMs < 0) firstTokenMs = Date.now() - started
        text += e.content ?? ''
      }
    }
  } catch (err) {
    return { text, firstTokenMs, error: err as Error }
  }
  return { text, firstTokenMs }
}

/** The Ed25519 public key inside an Ed25519 peer id (identity multihash 00 24, protobuf header 08 01 12 20). */
function nodeVerify (peerId: string, data: Buffer, signature: Buffer): boolean {
  const mh = base58btc.baseDecode(peerId)
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), mh.subarray(6)])
  return verify(null, data, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)
}

/** What a third party can check of a ledger entry: both signatures, over the same bytes, from the ids alone. */
function verifiedByBoth (e: LedgerEntry): boolean {
  if (e.signedBytes == null || e.providerSignature == null || e.consumerSignature == null) return false
  const bytes = Buffer.from(e.signedBytes, 'base64')
  return bytes.subarray(0, 17).toString() === 'krill-receipt-v1\n' &&
    nodeVerify(e.provider, bytes, Buffer.from(e.providerSignature, 'base64')) &&
    nodeVerify(e.consumer, bytes, Buffer.from(e.consumerSignature, 'base64'))
}

describe('receipts between real nodes', () => {
  it('puts a double-signed receipt in both ledgers for every completed chat', async () => {
    const standin = await startStandin()
    const provider = await startPeer()
    const consumer = await startPeer()
    await serve(provider, standin)
    const N = 5
    for (let i = 0; i < N; i++) {
      const r = await chat(consumer, provider)
      expect(r.error).toBeUndefined()
      expect(r.text).toBe(DEFAULT_TOKENS.join(''))
    }
    await waitFor(async () => (await provider.book.entries()).length === N, 'the provider settled every receipt')
    const mine = await consumer.book.entries()
    const theirs = await provider.book.entries()
    expect(mine).toHaveLength(N)
    for (const list of [mine, theirs]) {
      for (const e of list) {
        expect(e.status).toBe('signed')
        expect(e.consumer).toBe(consumer.node.peerId.toString())
        expect(e.provider).toBe(provider.node.peerId.toString())
        expect(e.model).toBe(MODEL)
        expect(e.completionTokens).toBe(DEFAULT_TOKENS.length)
        expect(e.promptTokens).toBe(2)
        expect(verifiedByBoth(e)).toBe(true)
      }
    }
    // the same receipts on both sides, byte for byte
    expect(mine.map(e => e.signedBytes).sort()).toEqual(theirs.map(e => e.signedBytes).sort())
    expect(new Set(mine.map(e => e.nonce)).size).toBe(N)
    // a signature by anyone else does not pass
    const stranger = generateKeyPairSync('ed25519')
    const forged = verify(null, Buffer.from(mine[0].signedBytes!, 'base64'), stranger.publicKey, Buffer.from(mine[0].consumerSignature!, 'base64'))
    expect(forged).toBe(false)
    // balances agree from both ends
    const b = consumer.book.balance()
    expect(b.totals.servedUs.completion).toBe(N * DEFAULT_TOKENS.length)
    expect(provider.book.balance().totals.servedThem.completion).toBe(N * DEFAULT_TOKENS.length)
    expect(provider.book.balance().peers[0].net).toBe(N * (DEFAULT_TOKENS.length + 2))
  })

  it('a provider that reports more tokens than it streamed gets no countersignature and a dispute', async () => {
    const standin = await startStandin({ extraEvalCount: 40 })
    const provider = await startPeer()
    const consumer = await startPeer()
    await serve(provider, standin)
    const r = await chat(consumer, provider)
    // the answer itself is complete
    expect(r.error).toBeUndefined()
    expect(r.text).toBe(DEFAULT_TOKENS.join(''))
    await waitFor(async () => (await provider.book.entries()).length === 1, 'the provider recorded the outcome')
    const [mine] = await consumer.book.entries()
    const [theirs] = await provider.book.entries()
    expect(mine.status).toBe('disputed')
    expect(mine.completionTokens).toBe(DEFAULT_TOKENS.length + 40)
    expect(mine.consumerSignature).toBeUndefined()
    expect(mine.reason).toMatch(/52 completion tokens, we received 12 frames/)
    expect(theirs.status).toBe('disputed')
    expect(theirs.consumerSignature).toBeUndefined()
    expect(theirs.reason).toBe(mine.reason)
    // a disputed claim counts neither as served nor for standing
    expect(consumer.book.balance().totals.servedUs.total).toBe(0)
    expect(consumer.book.balance().totals.disputes).toBe(1)
    expect(consumer.book.score(provider.node.peerId.toString())).toBe(0)
    // but the consumer still took it: disputing cannot keep a taker's standing up
    expect(provider.book.score(consumer.node.peerId.toString())).toBeLessThan(0)
    // and the daily budget counts it (a cap errs on the safe side)
    expect(consumer.book.consumedToday().tokens).toBe(2 + DEFAULT_TOKENS.length + 40)
  })

  it('older peers without receipts still chat and show up as unreceipted', async () => {
    const standin = await startStandin()
    const oldProvider = await startPeer()
    const newProvider = await startPeer()
    const consumer = await startPeer()
    await serve(oldProvider, standin, { receipts: false })
    await serve(newProvider, standin)
    const fromOld = await chat(consumer, oldProvider)
    expect(fromOld.error).toBeUndefined()
    expect(fromOld.text).toBe(DEFAULT_TOKENS.join(''))
    const [e] = await consumer.book.entries({ peer: oldProvider.node.peerId.toString() })
    expect(e.status).toBe('unreceipted')
    expect(e.completionTokens).toBe(DEFAULT_TOKENS.length)
    expect(e.signedBytes).toBeUndefined()
    // an old consumer: reads Done, ignores the receipt, closes without an ack
    const oldConsumer = await startPeer()
    const toOld = await chat(oldConsumer, newProvider, { receipts: false })
    expect(toOld.error).toBeUndefined()
    expect(toOld.text).toBe(DEFAULT_TOKENS.join(''))
    await waitFor(async () => (await newProvider.book.entries()).length === 1, 'the provider gave up waiting for an ack')
    const [p] = await newProvider.book.entries()
    expect(p.status).toBe('unreceipted')
    expect(p.providerSignature).toBeDefined()
    expect(p.consumerSignature).toBeUndefined()
    expect(newProvider.book.balance().totals.unreceipted).toBe(1)
  })

  it('keeps the ledger across a restart of the node', async () => {
    const standin = await startStandin()
    const provider = await startPeer()
    const consumer = await startPeer()
    await serve(provider, standin)
    for (let i = 0; i < 3; i++) expect((await chat(consumer, provider)).error).toBeUndefined()
    const before = await consumer.book.entries()
    const balance = consumer.book.balance()
    await stopPeer(consumer)
    const again = await startPeer({ dir: consumer.dir, key: consumer.key })
    expect(await again.book.entries()).toEqual(before)
    // standing decays with time; everything else is exactly as before
    const counts = (b: typeof balance): unknown => ({ totals: b.totals, peers: b.peers.map(({ standing, ...rest }) => rest) })
    expect(counts(again.book.balance())).toEqual(counts(balance))
    expect(again.book.score(provider.node.peerId.toString())).toBeGreaterThan(0)
  })
})

/** A hostile provider speaking the chat protocol by hand, signing receipts with its own key as told. */
async function hostileProvider (make: (consumer: string, now: number) => { startedAtMs: number, finishedAtMs: number, nonce: Uint8Array }): Promise<Peer & { acks: Uint8Array[] }> {
  const peer = await startPeer()
  const acks: Uint8Array[] = []
  const self = peer.node.peerId.toString()
  await peer.node.handle(CHAT_PROTOCOL, async (stream, connection) => {
    const reader = new FrameReader(stream, { maxFrameBytes: 1 << 20 })
    await reader.read()
    const consumer = connection.remotePeer.toString()
    const t = make(consumer, Date.now())
    const bytes = encodeReceipt({ kind: 'chat', consumer, provider: self, model: MODEL, modelDigest: '', promptTokens: 2, completionTokens: 3, ...t })
    const signed = encodeSignedReceipt(bytes, await signReceipt(peer.key, bytes))
    await writeFrame(stream, encodeFrame(acceptedFrame(0, '')))
    for (const piece of ['a', 'b', 'c']) await writeFrame(stream, encodeFrame(deltaFrame({ type: 'delta', content: piece })))
    await writeFrame(stream, encodeFrame(doneFrame({ doneReason: 'stop', promptTokens: 2, completionTokens: 3, totalDurationNs: 0, loadDurationNs: 0, promptEvalDurationNs: 0, evalDurationNs: 0 }, signed)))
    await stream.close()
    const ack = await reader.read(AbortSignal.timeout(5000)).catch(() => null)
    if (ack != null) acks.push(ack.subarray())
  }, { runOnLimitedConnection: true })
  return { ...peer, acks }
}

describe('receipts a consumer refuses', () => {
  it('refuses a replayed nonce', async () => {
    const nonce = new Uint8Array(16).fill(7)
    const provider = await hostileProvider((_, now) => ({ startedAtMs: now, finishedAtMs: now, nonce }))
    const consumer = await startPeer()
    expect((await chat(consumer, provider)).text).toBe('abc')
    expect((await chat(consumer, provider)).text).toBe('abc')
    await waitFor(() => provider.acks.length === 2, 'two acks')
    const [second, first] = await consumer.book.entries()
    expect(first.status).toBe('signed')
    expect(second.status).toBe('refused')
    expect(second.reason).toMatch(/nonce 07070707070707070707070707070707 was used before/)
    expect(second.consumerSignature).toBeUndefined()
    // the ack tells the provider why, and carries no signature
    const { decodeAck } = await import('../../src/receipts/receipt.js')
    expect(decodeAck(provider.acks[0]).consumerSignature.byteLength).toBe(64)
    expect(decodeAck(provider.acks[1]).consumerSignature.byteLength).toBe(0)
    expect(decodeAck(provider.acks[1]).dispute).toMatch(/used before/)
  })

  it('refuses receipts outside the clock-skew window', async () => {
    let n = 0
    const provider = await hostileProvider((_, now) => {
      n++
      const nonce = new Uint8Array(16).fill(n)
      // an hour in the past, then an hour in the future
      return n === 1 ? { startedAtMs: now - 3_600_000, finishedAtMs: now - 3_600_000, nonce } : { startedAtMs: now + 3_600_000, finishedAtMs: now + 3_600_000, nonce }
    })
    const consumer = await startPeer({ skewMs: 60_000 })
    await chat(consumer, provider)
    await chat(consumer, provider)
    const [future, past] = await consumer.book.entries()
    expect(past.status).toBe('refused')
    expect(past.reason).toMatch(/more than 60000 ms before we asked/)
    expect(future.status).toBe('refused')
    expect(future.reason).toMatch(/more than 60000 ms after the answer arrived/)
  })
})

describe('fair share', () => {
  it('two peers trading receipts between themselves gain no standing with a third', async () => {
    const standin = await startStandin({ tokens: Array.from({ length: 100 }, (_, i) => ` w${i}`) })
    const a = await startPeer()
    const b = await startPeer()
    const c = await startPeer()
    await serve(a, standin)
    await serve(b, standin)
    await serve(c, standin)
    for (let i = 0; i < 5; i++) {
      expect((await chat(a, b)).error).toBeUndefined()
      expect((await chat(b, a)).error).toBeUndefined()
    }
    await waitFor(async () => (await a.book.entries()).length === 10, 'a settled')
    // real, double-signed receipts, and standing with each other
    expect((await a.book.entries()).every(e => e.status === 'signed')).toBe(true)
    expect(a.book.standing.view(b.node.peerId.toString()).given).toBeGreaterThan(0)
    // C never signed any of them: they are not in its ledger and count nothing there
    expect(await c.book.entries()).toHaveLength(0)
    expect(c.book.score(a.node.peerId.toString())).toBe(0)
    expect(c.book.score(b.node.peerId.toString())).toBe(0)
    // once they use C, they are takers like anyone else
    expect((await chat(a, c)).error).toBeUndefined()
    await waitFor(async () => (await c.book.entries()).length === 1, 'c settled')
    expect(c.book.score(a.node.peerId.toString())).toBeLessThan(0)
  })

  it('contributors wait at most half as long as a free-rider on a saturated 2-slot provider, and the free-rider still completes', async () => {
    // what contributors serve the provider beforehand: 200-token answers, fast
    const contributorEngine = await startStandin({ tokens: Array.from({ length: 200 }, (_, i) => ` c${i}`) })
    // the provider's own engine: 20 tokens at 100/s, about 200 ms a chat
    const providerEngine = await startStandin({ tokens: Array.from({ length: 20 }, (_, i) => ` p${i}`), tokensPerSecond: 100 })
    const provider = await startPeer()
    await serve(provider, providerEngine, { slots: 2, maxQueue: 64 })
    const contributors = await Promise.all([0, 1, 2].map(async () => await startPeer()))
    const freeRider = await startPeer()
    for (const c of contributors) {
      await serve(c, contributorEngine)
      for (let i = 0; i < 5; i++) expect((await chat(provider, c)).error).toBeUndefined()
    }
    for (const c of contributors) expect(provider.book.score(c.node.peerId.toString())).toBeGreaterThan(0.5)
    expect(provider.book.score(freeRider.node.peerId.toString())).toBe(0)

    // everyone keeps two requests outstanding for a while: the provider stays saturated
    const waits = new Map<Peer, number[]>([...contributors, freeRider].map(p => [p, []]))
    const until = Date.now() + 15_000
    await Promise.all([...contributors, freeRider].flatMap(p => [0, 1].map(async () => {
      while (Date.now() < until) {
        const r = await chat(p, provider)
        expect(r.error).toBeUndefined()
        waits.get(p)!.push(r.firstTokenMs)
      }
    })))
    const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
    const contributorWaits = contributors.flatMap(c => waits.get(c)!)
    const riderWaits = waits.get(freeRider)!
    console.log(`contributors: ${contributorWaits.length} chats, median first token ${median(contributorWaits)} ms; free-rider: ${riderWaits.length} chats, median ${median(riderWaits)} ms`)
    expect(riderWaits.length).toBeGreaterThan(0)
    expect(median(contributorWaits)).toBeLessThanOrEqual(median(riderWaits) / 2)
  }, 120_000)

  it('an idle provider answers 1000 short chats sent back to back by one consumer, none refused', async () => {
    const standin = await startStandin({ tokens: ['ok'] })
    const provider = await startPeer()
    const consumer = await startPeer()
    const server = await serve(provider, standin)
    const started = Date.now()
    let failures = 0
    for (let i = 0; i < 1000; i++) {
      const r = await chat(consumer, provider)
      if (r.error != null || r.text !== 'ok') failures++
    }
    console.log(`1000 back-to-back chats in ${Date.now() - started} ms, ${failures} failed; refused ${JSON.stringify(server.stats.counters.refused)}`)
    expect(failures).toBe(0)
    expect(server.stats.counters.refused['requests-per-minute']).toBe(0)
    expect(server.stats.counters.completed).toBe(1000)
    await waitFor(async () => provider.book.counters.receipts.signed === 1000, 'every receipt countersigned', 30_000)
  }, 300_000)
})

