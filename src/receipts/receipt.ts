/**
 * Receipts: the facts of one served request, encoded deterministically and signed
 * by both parties' Ed25519 peer keys. protocols/README.md ("Receipts") is the spec;
 * test/unit/receipts.test.ts checks its test vector against this file.
 */
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { parsePeerId } from '../peers/parse-peer-id.js'
import * as Digest from 'multiformats/hashes/digest'
import * as pb from '../protocol/generated/receipt.js'
import { signEd25519, verifyEd25519 } from './ed25519-keys.js'
import type { ReceiptKind } from '../protocol/receipt-exchange.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

/** Domain separation: a receipt signature can never be mistaken for any other signature by a peer key. */
export const RECEIPT_SIGNING_PREFIX = 'krill-receipt-v1\n'
export const RECEIPT_VERSION = 1
export const NONCE_BYTES = 16

const PREFIX_BYTES = new TextEncoder().encode(RECEIPT_SIGNING_PREFIX)

export type { ReceiptKind } from '../protocol/receipt-exchange.js'

/** A receipt's fields, peer ids as strings. */
export interface ReceiptFacts {
  kind: ReceiptKind
  consumer: string
  provider: string
  model: string
  modelDigest: string
  promptTokens: number
  completionTokens: number
  startedAtMs: number
  finishedAtMs: number
  /** 16 bytes */
  nonce: Uint8Array
}

/** A receipt that does not decode, is not in canonical form, or breaks a field rule. */
export class ReceiptFormatError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ReceiptFormatError'
  }
}

/** The deterministic encoding of a receipt (what is signed, after the prefix). */
export function encodeReceipt (facts: ReceiptFacts): Uint8Array {
  return pb.Receipt.encode({
    version: RECEIPT_VERSION,
    kind: facts.kind,
    consumer: parsePeerId(facts.consumer).toMultihash().bytes as Uint8Array<ArrayBuffer>,
    provider: parsePeerId(facts.provider).toMultihash().bytes as Uint8Array<ArrayBuffer>,
    model: facts.model,
    modelDigest: facts.modelDigest,
    promptTokens: facts.promptTokens,
    completionTokens: facts.completionTokens,
    startedAtMs: facts.startedAtMs,
    finishedAtMs: facts.finishedAtMs,
    nonce: facts.nonce as Uint8Array<ArrayBuffer>
  })
}

/** Decodes receipt bytes; refuses anything that does not re-encode to exactly the same bytes. */
export function decodeReceipt (bytes: Uint8Array): ReceiptFacts {
  let msg: pb.Receipt
  try {
    msg = pb.Receipt.decode(bytes)
  } catch (err) {
    throw new ReceiptFormatError(`receipt does not decode: ${(err as Error).message}`)
  }
  if (msg.version !== RECEIPT_VERSION) throw new ReceiptFormatError(`receipt version ${msg.version} is not ${RECEIPT_VERSION}`)
  if (msg.kind !== 'chat' && msg.kind !== 'embed') throw new ReceiptFormatError(`receipt kind "${msg.kind.slice(0, 16)}" is not chat or embed`)
  if (msg.nonce.byteLength !== NONCE_BYTES) throw new ReceiptFormatError(`receipt nonce has ${msg.nonce.byteLength} bytes, not ${NONCE_BYTES}`)
  if (msg.model.length > 200) throw new ReceiptFormatError('receipt model name is longer than 200 characters')
  if (msg.modelDigest !== '' && !/^[0-9a-f]{64}$/.test(msg.modelDigest)) throw new ReceiptFormatError('receipt model digest is not 64 lowercase hex digits')
  if (!Number.isSafeInteger(msg.startedAtMs) || !Number.isSafeInteger(msg.finishedAtMs)) throw new ReceiptFormatError('receipt times are out of range')
  const facts: ReceiptFacts = {
    kind: msg.kind,
    consumer: peerFromBytes(msg.consumer, 'consumer'),
    provider: peerFromBytes(msg.provider, 'provider'),
    model: msg.model,
    modelDigest: msg.modelDigest,
    promptTokens: msg.promptTokens,
    completionTokens: msg.completionTokens,
    startedAtMs: msg.startedAtMs,
    finishedAtMs: msg.finishedAtMs,
    nonce: msg.nonce
  }
  if (!sameBytes(encodeReceipt(facts), bytes)) throw new ReceiptFormatError('receipt bytes are not in canonical form')
  return facts
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0
}

function peerFromBytes (bytes: Uint8Array, what: string): string {
  try {
    return peerIdFromMultihash(Digest.decode(bytes)).toString()
  } catch {
    throw new ReceiptFormatError(`receipt ${what} is not a peer id`)
  }
}

/** The exact bytes both parties sign: the domain prefix, then the encoded receipt. */
export function signingBytes (receipt: Uint8Array): Uint8Array {
  const out = new Uint8Array(PREFIX_BYTES.byteLength + receipt.byteLength)
  out.set(PREFIX_BYTES, 0)
  out.set(receipt, PREFIX_BYTES.byteLength)
  return out
}

export async function signReceipt (key: PrivateKey, receipt: Uint8Array): Promise<Uint8Array> {
  return await signEd25519(key, signingBytes(receipt))
}

/** True when `signature` is `peer`'s signature over the receipt; the peer id alone is the public key (Ed25519 ids). */
export async function verifyReceiptSignature (peer: string | PeerId, receipt: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (signature.byteLength === 0) return false
  try {
    return await verifyEd25519(peer, signingBytes(receipt), signature)
  } catch {
    return false
  }
}

export function encodeSignedReceipt (receipt: Uint8Array, providerSignature: Uint8Array, consumerSignature?: Uint8Array): Uint8Array {
  return pb.SignedReceipt.encode({
    receipt: receipt as Uint8Array<ArrayBuffer>,
    providerSignature: providerSignature as Uint8Array<ArrayBuffer>,
    consumerSignature: (consumerSignature ?? new Uint8Array(0)) as Uint8Array<ArrayBuffer>
  })
}

export function decodeSignedReceipt (bytes: Uint8Array): pb.SignedReceipt {
  try {
    return pb.SignedReceipt.decode(bytes)
  } catch (err) {
    throw new ReceiptFormatError(`signed receipt does not decode: ${(err as Error).message}`)
  }
}

export const MAX_DISPUTE_CHARS = 512

export function encodeAck (nonce: Uint8Array, consumerSignature: Uint8Array | undefined, dispute = ''): Uint8Array {
  return pb.ReceiptAck.encode({
    nonce: nonce as Uint8Array<ArrayBuffer>,
    consumerSignature: (consumerSignature ?? new Uint8Array(0)) as Uint8Array<ArrayBuffer>,
    dispute: dispute.slice(0, MAX_DISPUTE_CHARS)
  })
}

export function decodeAck (bytes: Uint8Array): pb.ReceiptAck {
  try {
    return pb.ReceiptAck.decode(bytes)
  } catch (err) {
    throw new ReceiptFormatError(`receipt ack does not decode: ${(err as Error).message}`)
  }
}
