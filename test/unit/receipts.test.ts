/**
 * Receipts: the test vector in protocols/README.md against the code, verified a
 * second time with Node's own Ed25519 and nothing but the peer ids; the canonical
 * form; the consumer's checks; the ledger (append, restart, fold) and standing.
 */
import { createPublicKey, verify } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LevelDatastore } from 'datastore-level'
import { base58btc } from 'multiformats/bases/base58'
import { afterEach, describe, expect, it } from 'vitest'
import { completionAllowance, disagreement, outsideWindow } from '../../src/receipts/checks.js'
import { Ledger } from '../../src/receipts/ledger.js'
import { decodeReceipt, encodeReceipt, ReceiptFormatError, RECEIPT_SIGNING_PREFIX, signingBytes, signReceipt, verifyReceiptSignature } from '../../src/receipts/receipt.js'
import { ReceiptBook } from '../../src/receipts/receipt-book.js'
import { Standing } from '../../src/receipts/standing.js'
import { tempDir } from '../helpers/swarm.js'
import type { ReceivedFacts } from '../../src/protocol/receipt-exchange.js'
import type { ReceiptFacts } from '../../src/receipts/receipt.js'

const readme = await readFile(path.resolve(import.meta.dirname, '..', '..', 'protocols', 'README.md'), 'utf8')
const section = readme.slice(readme.indexOf('## Receipts'), readme.indexOf('## Model announcements'))
const vector = Object.fromEntries([...section.matchAll(/^\| (\w[\w ]*) \| `([^`]+)` \|$/gm)].map(m => [m[1], m[2]]))

/** Ed25519 public key from a peer id alone: identity multihash 00 24, protobuf key header 08 01 12 20, 32 bytes. */
function publicKeyOf (peerId: string): Uint8Array {
  const mh = base58btc.baseDecode(peerId)
  expect(Buffer.from(mh.subarray(0, 6)).toString('hex')).toBe('002408011220')
  return mh.subarray(6)
}

function nodeVerify (peerId: string, data: Uint8Array, signature: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKeyOf(peerId)])
  return verify(null, data, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))

describe('receipt test vector (protocols/README.md)', () => {
  it('lists every field', () => {
    for (const k of ['consumer', 'provider', 'kind', 'model', 'model_digest', 'prompt_tokens', 'completion_tokens', 'started_at_ms', 'finished_at_ms', 'nonce', 'signed bytes', 'provider_signature', 'consumer_signature']) {
      expect(vector[k], k).toBeDefined()
    }
  })

  it('matches the code: peer ids from the seeds, signed bytes, both signatures', async () => {
    const consumerKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(1))
    const providerKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(2))
    expect(peerIdFromPrivateKey(consumerKey).toString()).toBe(vector.consumer)
    expect(peerIdFromPrivateKey(providerKey).toString()).toBe(vector.provider)
    const facts: ReceiptFacts = {
      kind: vector.kind as 'chat',
      consumer: vector.consumer,
      provider: vector.provider,
      model: vector.model,
      modelDigest: vector.model_digest,
      promptTokens: Number(vector.prompt_tokens),
      completionTokens: Number(vector.completion_tokens),
      startedAtMs: Number(vector.started_at_ms),
      finishedAtMs: Number(vector.finished_at_ms),
      nonce: hex(vector.nonce)
    }
    const bytes = encodeReceipt(facts)
    expect(Buffer.from(signingBytes(bytes)).toString('hex')).toBe(vector['signed bytes'])
    expect(Buffer.from(signingBytes(bytes).subarray(0, 17)).toString()).toBe(RECEIPT_SIGNING_PREFIX)
    // Ed25519 signatures are deterministic
    expect(Buffer.from(await signReceipt(providerKey, bytes)).toString('hex')).toBe(vector.provider_signature)
    expect(Buffer.from(await signReceipt(consumerKey, bytes)).toString('hex')).toBe(vector.consumer_signature)
    expect(decodeReceipt(bytes)).toEqual({ ...facts, nonce: expect.any(Uint8Array) })
  })

  it('verifies with nothing but the two peer ids, outside libp2p', async () => {
    const signed = hex(vector['signed bytes'])
    expect(nodeVerify(vector.provider, signed, hex(vector.provider_signature))).toBe(true)
    expect(nodeVerify(vector.consumer, signed, hex(vector.consumer_signature))).toBe(true)
    expect(nodeVerify(vector.consumer, signed, hex(vector.provider_signature))).toBe(false)
    const tampered = Uint8Array.from(signed)
    tampered[tampered.length - 1] ^= 1
    expect(nodeVerify(vector.provider, tampered, hex(vector.provider_signature))).toBe(false)
    // and through the code's own verifier
    const receipt = signed.subarray(17)
    expect(await verifyReceiptSignature(vector.provider, receipt, hex(vector.provider_signature))).toBe(true)
    expect(await verifyReceiptSignature(vector.provider, receipt, hex(vector.consumer_signature))).toBe(false)
  })

  it('refuses receipt bytes that are not canonical', () => {
    const receipt = hex(vector['signed bytes']).subarray(17)
    expect(() => decodeReceipt(receipt)).not.toThrow()
    // the same version field twice decodes to the same receipt but is not canonical
    const doubled = Uint8Array.from([0x08, 0x01, ...receipt])
    expect(() => decodeReceipt(doubled)).toThrow(ReceiptFormatError)
    // an unknown field
    expect(() => decodeReceipt(Uint8Array.from([...receipt, 0x60, 0x01]))).toThrow(ReceiptFormatError)
  })
})

describe('consumer checks', () => {
  const provider = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq'
  const consumer = '12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5'
  const now = 1_764_547_200_000
  const receipt: ReceiptFacts = { kind: 'chat', consumer, provider, model: 'm:latest', modelDigest: '', promptTokens: 5, completionTokens: 10, startedAtMs: now, finishedAtMs: now + 1000, nonce: new Uint8Array(16) }
  const received: ReceivedFacts = { kind: 'chat', provider, model: 'm:latest', modelDigest: '', requestSentAtMs: now, doneAtMs: now + 1000, deltaFrames: 10, toolCallChars: 0, requestBytes: 40, messages: 1, promptTokens: 5, completionTokens: 10 }

  it('agrees with an honest receipt', () => {
    expect(disagreement(receipt, received, consumer)).toBeUndefined()
    expect(outsideWindow(receipt, received, 60_000)).toBeUndefined()
  })

  it('disputes more completion tokens than frames can carry, and any fact that differs', () => {
    const inflated = { ...receipt, completionTokens: completionAllowance(10, 0) + 1 }
    expect(disagreement(inflated, { ...received, completionTokens: inflated.completionTokens }, consumer)).toMatch(/completion tokens/)
    expect(disagreement({ ...receipt, completionTokens: 11 }, received, consumer)).toMatch(/terminal frame said/)
    expect(disagreement({ ...receipt, model: 'other' }, received, consumer)).toMatch(/model/)
    expect(disagreement(receipt, received, provider)).toMatch(/consumer/)
    expect(disagreement({ ...receipt, promptTokens: 5000 }, { ...received, promptTokens: 5000 }, consumer)).toMatch(/prompt tokens/)
  })

  it('refuses times outside the skew window', () => {
    expect(outsideWindow({ ...receipt, startedAtMs: now - 120_000 }, received, 60_000)).toMatch(/before we asked/)
    expect(outsideWindow({ ...receipt, finishedAtMs: now + 1000 + 120_000 }, received, 60_000)).toMatch(/after the answer/)
    expect(outsideWindow({ ...receipt, finishedAtMs: now - 1 }, received, 60_000)).toMatch(/finished before/)
  })
})

describe('ledger', () => {
  const dirs: string[] = []
  afterEach(async () => { await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) })) })

  async function store (): Promise<{ ds: LevelDatastore, dir: string }> {
    const dir = await tempDir('krill-ledger-')
    dirs.push(dir)
    const ds = new LevelDatastore(dir)
    await ds.open()
    return { ds, dir }
  }

  const entry = (peer: string, role: 'provider' | 'consumer', tokens: number, status: 'signed' | 'unreceipted' | 'disputed' = 'signed'): any => ({
    role, peer, status, kind: 'chat', consumer: role === 'provider' ? peer : 'me', provider: role === 'provider' ? 'me' : peer,
    model: 'm', modelDigest: '', promptTokens: tokens, completionTokens: 2 * tokens, startedAt: new Date(0).toISOString(), finishedAt: new Date(0).toISOString()
  })

  it('keeps entries across a reopen, newest first, and balances per peer', async () => {
    const { ds, dir } = await store()
    const ledger = new Ledger(ds)
    await ledger.append(entry('A', 'provider', 10), 1000)
    await ledger.append(entry('A', 'consumer', 1), 2000)
    await ledger.append(entry('B', 'consumer', 5, 'disputed'), 3000)
    await ds.close()

    const ds2 = new LevelDatastore(dir)
    await ds2.open()
    const again = new Ledger(ds2)
    await again.load()
    expect((await again.entries()).map(e => e.recordedAt)).toEqual([3000, 2000, 1000].map(t => new Date(t).toISOString()))
    expect((await again.entries({ peer: 'A', limit: 1 })).map(e => e.role)).toEqual(['consumer'])
    const a = again.balance().find(b => b.peer === 'A')
    expect(a?.servedThem).toEqual({ prompt: 10, completion: 20, total: 30 })
    expect(a?.servedUs).toEqual({ prompt: 1, completion: 2, total: 3 })
    expect(a?.net).toBe(27)
    // a disputed claim is no usage
    const b = again.balance().find(b => b.peer === 'B')
    expect(b?.servedUs.total).toBe(0)
    expect(b?.receipts.disputed).toBe(1)
    await ds2.close()
  })

  it('folds entries past the retention into per-peer totals without changing the balance', async () => {
    const { ds, dir } = await store()
    let now = 10_000
    const ledger = new Ledger(ds, { retentionMs: 5_000, now: () => now })
    await ledger.append(entry('A', 'provider', 10), 1000)
    await ledger.append(entry('A', 'provider', 10), 2000)
    await ledger.append(entry('A', 'provider', 10), 9000)
    const before = ledger.balance()
    expect(await ledger.fold()).toBe(2)
    expect(await ledger.entries()).toHaveLength(1)
    now = 20_000
    await ledger.append(entry('A', 'provider', 1), 19_000)
    expect(await ledger.fold()).toBe(1)
    await ds.close()
    const ds2 = new LevelDatastore(dir)
    await ds2.open()
    const again = new Ledger(ds2, { retentionMs: 5_000, now: () => now })
    await again.load()
    expect(await again.entries()).toHaveLength(1)
    expect(again.balance()[0].servedThem.total).toBe(before[0].servedThem.total + 3)
    expect(again.balance()[0].requests.servedThem).toBe(4)
    await ds2.close()
  })
})

describe('standing', () => {
  it('is 0 for strangers, positive for givers, negative for takers, and decays', () => {
    let now = 0
    const s = new Standing({ halfLifeMs: 1000, smoothingTokens: 100, now: () => now })
    expect(s.score('new')).toBe(0)
    s.gave('giver', 900)
    s.took('taker', 900)
    expect(s.score('giver')).toBeCloseTo(0.9)
    expect(s.score('taker')).toBeCloseTo(-0.9)
    now = 1000
    expect(s.view('giver').given).toBeCloseTo(450)
    expect(s.score('giver')).toBeCloseTo(450 / 550)
  })
})

describe('receipt book', () => {
  it('signs as provider, countersigns as consumer, and refuses a replayed nonce', async () => {
    const dir = await tempDir('krill-book-')
    const dsP = new LevelDatastore(path.join(dir, 'p'))
    const dsC = new LevelDatastore(path.join(dir, 'c'))
    await dsP.open()
    await dsC.open()
    try {
      const pk = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(2))
      const ck = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(1))
      const providerBook = new ReceiptBook({ peerId: peerIdFromPrivateKey(pk), privateKey: pk, datastore: dsP })
      const consumerBook = new ReceiptBook({ peerId: peerIdFromPrivateKey(ck), privateKey: ck, datastore: dsC })
      await providerBook.start()
      await consumerBook.start()
      const now = Date.now()
      const issued = await providerBook.issue({ kind: 'chat', consumer: peerIdFromPrivateKey(ck).toString(), model: 'm:latest', modelDigest: '', promptTokens: 3, completionTokens: 4, startedAtMs: now, finishedAtMs: now + 5 })
      const received: ReceivedFacts = { kind: 'chat', provider: peerIdFromPrivateKey(pk).toString(), model: 'm:latest', modelDigest: '', requestSentAtMs: now, doneAtMs: now + 10, deltaFrames: 4, toolCallChars: 0, requestBytes: 30, messages: 1, promptTokens: 3, completionTokens: 4 }
      const ack = await consumerBook.settle(issued.signedReceipt, received)
      issued.settle(ack)
      await providerBook.settled()
      const [p] = await providerBook.entries()
      const [c] = await consumerBook.entries()
      expect(p.status).toBe('signed')
      expect(c.status).toBe('signed')
      expect(p.signedBytes).toBe(c.signedBytes)
      expect(nodeVerify(p.provider, Buffer.from(p.signedBytes!, 'base64'), Buffer.from(c.providerSignature!, 'base64'))).toBe(true)
      expect(nodeVerify(p.consumer, Buffer.from(p.signedBytes!, 'base64'), Buffer.from(p.consumerSignature!, 'base64'))).toBe(true)

      // the same receipt again: refused, no signature
      const again = await consumerBook.settle(issued.signedReceipt, received)
      expect(again).toBeDefined()
      const entries = await consumerBook.entries()
      expect(entries[0].status).toBe('refused')
      expect(entries[0].reason).toMatch(/used before/)
      expect(entries[0].consumerSignature).toBeUndefined()
      // a receipt still waiting for its ack when the node stops is kept, unreceipted
      await providerBook.issue({ kind: 'chat', consumer: peerIdFromPrivateKey(ck).toString(), model: 'm:latest', modelDigest: '', promptTokens: 1, completionTokens: 1, startedAtMs: now, finishedAtMs: now })
      await providerBook.stop()
      await consumerBook.stop()
      const [last] = await new ReceiptBook({ peerId: peerIdFromPrivateKey(pk), privateKey: pk, datastore: dsP }).ledger.entries({ limit: 1 })
      expect(last.status).toBe('unreceipted')
      expect(last.reason).toMatch(/stopped before the consumer's countersignature arrived/)
    } finally {
      await dsP.close()
      await dsC.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
