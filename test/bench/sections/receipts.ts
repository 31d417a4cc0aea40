/**
 * What receipts cost per chat. Two libp2p nodes in this process (TCP + noise +
 * yamux on 127.0.0.1), each with its receipt book on its own LevelDB datastore; the
 * provider runs a ChatServer on the real OllamaEngine in front of a stand-in. Chats
 * with and without receipts take turns on the same connection:
 *
 * - added time per chat, seen by the consumer: to the done event (what its caller
 *   waits for: the provider's signing) and to the closed stream (checking,
 *   countersigning and the ack frame too, which happen after the caller has Done);
 * - added time until the provider's slot is free again (nothing: it frees the slot
 *   before signing) is not measured apart; the provider's ack wait runs after its
 *   answer is out;
 * - bytes on the wire: the receipt inside Done and the ReceiptAck frame;
 * - CPU for signing and verifying one receipt (both sides: 2 signs, 2 verifies).
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import * as varint from 'uint8-varint'
import { OllamaEngine } from '../../../src/engine/ollama-engine.js'
import { requestChat } from '../../../src/protocol/chat-client.js'
import { ChatServer } from '../../../src/protocol/chat-server.js'
import { encodeAck, encodeReceipt, encodeSignedReceipt, signReceipt, verifyReceiptSignature } from '../../../src/receipts/receipt.js'
import { receipts, type ReceiptBook } from '../../../src/receipts/receipt-book.js'
import { OllamaStandin } from '../../fixtures/ollama-standin.js'
import { tempDir } from '../../helpers/swarm.js'
import type { Section } from '../context.js'
import { latencyFigure } from '../report.js'
import type { ProviderReceiptPort } from '../../../src/protocol/receipt-exchange.js'
import type { Libp2p } from '@libp2p/interface'

const MODEL = 'llama3.2:1b'

async function peer (dir: string): Promise<{ node: Libp2p<{ receipts: ReceiptBook }>, close: () => Promise<void> }> {
  const datastore = new LevelDatastore(dir)
  await datastore.open()
  const node = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    datastore,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { receipts: receipts() }
  })
  return { node, close: async () => { await node.stop(); await datastore.close() } }
}

export const receiptsSection: Section = {
  name: 'receipts',
  title: 'Receipts',
  run: async (ctx) => {
    const dir = await tempDir('krill-bench-receipts-')
    ctx.cleanup.add('receipts temp dir', async () => { await rm(dir, { recursive: true, force: true }) })
    const standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokens: ['a', 'b', 'c', 'd'] } })
    ctx.cleanup.add('receipts stand-in', async () => { await standin.stop() })
    const provider = await peer(join(dir, 'p'))
    ctx.cleanup.add('receipts provider node', provider.close)
    const consumer = await peer(join(dir, 'c'))
    ctx.cleanup.add('receipts consumer node', consumer.close)
    const engine = new OllamaEngine({ host: standin.url })
    const models = await engine.listModels()
    let withReceipts = false
    const book = provider.node.services.receipts
    const port: ProviderReceiptPort = { issue: async (facts) => withReceipts ? await book.issue(facts) : undefined }
    const server = new ChatServer({
      engine,
      slots: 4,
      maxQueue: 16,
      isServedModel: name => models.some(m => m.name === name),
      resolveDigest: name => models.find(m => m.name === name)?.digest,
      receipts: port
    })
    await server.start(provider.node)
    ctx.cleanup.add('receipts chat server', async () => { await server.stop() })
    await consumer.node.dial(provider.node.getMultiaddrs()[0])

    /** ms to the done event (what the caller waits for) and to the closed stream (receipt exchange included) */
    const chat = async (on: boolean): Promise<{ done: number, closed: number }> => {
      withReceipts = on
      const t0 = performance.now()
      let done = NaN
      for await (const e of requestChat(consumer.node, provider.node.peerId, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, { receipts: on ? consumer.node.services.receipts : undefined })) {
        if (e.type === 'done') done = performance.now() - t0
      }
      return { done, closed: performance.now() - t0 }
    }
    const warmup = ctx.quick ? 10 : 50
    const rounds = ctx.quick ? 60 : 500
    const off: Array<{ done: number, closed: number }> = []
    const on: Array<{ done: number, closed: number }> = []
    for (let i = 0; i < warmup + rounds; i++) {
      // take turns, starting with the other one every round
      const first = i % 2 === 0
      const a = await chat(first)
      const b = await chat(!first)
      if (i < warmup) continue
      ;(first ? on : off).push(a)
      ;(first ? off : on).push(b)
    }
    await book.settled()
    const signed = book.counters.receipts.signed

    // bytes: what a receipt adds to Done, and the ack frame with its length prefix
    const key = await generateKeyPair('Ed25519')
    const facts = { kind: 'chat' as const, consumer: consumer.node.peerId.toString(), provider: provider.node.peerId.toString(), model: MODEL, modelDigest: models[0].digest, promptTokens: 26, completionTokens: 298, startedAtMs: Date.now(), finishedAtMs: Date.now(), nonce: new Uint8Array(16) }
    const receiptBytes = encodeReceipt(facts)
    const signature = await signReceipt(key, receiptBytes)
    const inDone = encodeSignedReceipt(receiptBytes, signature).byteLength
    // field 8 tag + length varint + value
    const doneAdded = 1 + varint.encodingLength(inDone) + inDone
    const ack = encodeAck(facts.nonce, signature).byteLength
    const ackFrame = varint.encodingLength(ack) + ack

    // CPU: the two signs and two verifies one receipt costs both sides together
    const cpu: number[] = []
    for (let i = 0; i < (ctx.quick ? 200 : 2000); i++) {
      const t0 = performance.now()
      const s1 = await signReceipt(key, receiptBytes)
      await verifyReceiptSignature(provider.node.peerId, receiptBytes, s1)
      const s2 = await signReceipt(key, receiptBytes)
      await verifyReceiptSignature(consumer.node.peerId, receiptBytes, s2)
      cpu.push(performance.now() - t0)
    }
    return {
      figures: [
        latencyFigure({ id: 'receipts.done', label: 'chat, request → done event: without vs with receipts', baselineLabel: 'no receipts', baseline: off.map(t => t.done), krill: on.map(t => t.done) }),
        latencyFigure({ id: 'receipts.closed', label: 'chat, request → stream closed (ack sent): without vs with receipts', baselineLabel: 'no receipts', baseline: off.map(t => t.closed), krill: on.map(t => t.closed) }),
        latencyFigure({ id: 'receipts.cpu', label: 'sign + verify, both sides (2 signs, 2 verifies)', krill: cpu })
      ],
      notes: [
        `${rounds} chats each way (after ${warmup} warm-up rounds), 4-token answers, taking turns on one connection; ${signed} receipts countersigned`,
        `bytes per chat: +${doneAdded} in Done (the SignedReceipt: ${receiptBytes.byteLength}-byte receipt + 64-byte signature), +${ackFrame} consumer → provider (the ReceiptAck frame) = ${doneAdded + ackFrame} bytes`,
        'the provider frees its slot before it signs; waiting for the ack happens after its answer is out, and costs no slot'
      ]
    }
  }
}
