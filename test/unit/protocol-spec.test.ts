/**
 * protocols/README.md is the contract for other implementations: keep its tables in
 * step with the code.
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { digestKey, modelKey, modelKeyString, rendezvousKey, rendezvousKeyString } from '../../src/discovery/keys.js'
import { ANNOUNCE_SCORE_THRESHOLDS, ANNOUNCE_TOPIC_SCORE, INVALID_MESSAGE_WEIGHT } from '../../src/discovery/gossip-scoring.js'
import { AMINO_DHT_PROTOCOL, RENDEZVOUS_RECORD_VALIDITY_MS, RENDEZVOUS_REPROVIDE_AFTER_MS } from '../../src/discovery/rendezvous.js'
import { MAX_PREFIX_BYTES } from '../../src/protocol/frame-io.js'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { gossipsub } from '@libp2p/gossipsub'
import { ErrorCode } from '../../src/errors.js'
import { DEFAULT_LIMITS } from '../../src/limits/index.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'

const readme = await readFile(path.resolve(import.meta.dirname, '..', '..', 'protocols', 'README.md'), 'utf8')

describe('protocols/README.md', () => {
  it('lists every error code with its wire number', () => {
    const rows = [...readme.matchAll(/^\| (\d+) \| `([A-Z_]+)` \|/gm)].map(m => [m[2], Number(m[1])])
    expect(Object.fromEntries(rows)).toEqual(ErrorCode)
  })

  it('has DHT key test vectors that match src/discovery/keys.ts', () => {
    const vectors = [...readme.matchAll(/^\| `(krill\/(model|digest)\/v1\/([^`]+))` \| `(bafk[a-z2-7]+)` \|/gm)]
    expect(vectors).toHaveLength(2)
    for (const [, , kind, value, cid] of vectors) {
      expect((kind === 'model' ? modelKey(value) : digestKey(value)).toString()).toBe(cid)
    }
  })

  it('has model-name key vectors (case, defaults) that match src/models and the DHT keys', () => {
    const vectors = [...readme.matchAll(/^\| `([^`]+)` \| `(krill\/model\/v1\/[^`]+)` \| `(bafk[a-z2-7]+)` \|/gm)]
    expect(vectors).toHaveLength(3)
    for (const [, name, keyString, cid] of vectors) {
      expect(modelKeyString(name)).toBe(keyString)
      expect(modelKey(name).toString()).toBe(cid)
    }
  })

  it('names the protocol id and the default limits the code uses', () => {
    expect(readme).toContain(`\`${CHAT_PROTOCOL}\``)
    expect(DEFAULT_LIMITS.maxRequestBytes).toBe(4 * 1024 * 1024)
    expect(readme).toMatch(/\| request frame \| 4 MiB \|/)
    expect(DEFAULT_LIMITS.maxFrameBytes).toBe(1024 * 1024)
    expect(readme).toMatch(/\| response frame \| 1 MiB \|/)
    expect(readme).toMatch(new RegExp(`\\| messages per request \\| ${DEFAULT_LIMITS.maxMessages} \\|`))
    expect(readme).toMatch(new RegExp(`\\| concurrent chat streams per consumer peer \\| ${DEFAULT_LIMITS.maxStreamsPerPeer} \\|`))
    expect(readme).toMatch(new RegExp(`\\| request arrival .* \\| ${DEFAULT_LIMITS.requestTimeoutMs / 1000} s \\|`))
    expect(readme).toMatch(new RegExp(`\\| stall .* \\| ${DEFAULT_LIMITS.stallTimeoutMs / 1000} s \\|`))
  })

  it('has the rendezvous key vector that matches src/discovery/keys.ts', () => {
    const vectors = [...readme.matchAll(/^\| `(krill\/rendezvous\/v1\/([^`]+))` \| `(bafk[a-z2-7]+)` \| `([0-9a-f]+)` \|/gm)]
    expect(vectors).toHaveLength(1)
    for (const [, keyString, network, cid, multihash] of vectors) {
      expect(rendezvousKeyString(network)).toBe(keyString)
      expect(rendezvousKey(network).toString()).toBe(cid)
      expect(Buffer.from(rendezvousKey(network).multihash.bytes).toString('hex')).toBe(multihash)
    }
    expect(rendezvousKeyString()).toBe('krill/rendezvous/v1/public')
    expect(readme).toContain(`\`${AMINO_DHT_PROTOCOL}\``)
    expect(RENDEZVOUS_RECORD_VALIDITY_MS).toBe(48 * 3_600_000)
    expect(RENDEZVOUS_REPROVIDE_AFTER_MS).toBe(22 * 3_600_000)
    expect(readme).toMatch(/re-provides its record\s+after 22 h/)
  })

  it('states the length-prefix rule and the gossip score parameters the code uses', () => {
    expect(MAX_PREFIX_BYTES).toBe(8)
    expect(readme).toContain('Length prefixes longer than 8 bytes are invalid')
    expect(readme).toContain('frame length prefix is not a valid varint')
    expect(INVALID_MESSAGE_WEIGHT).toBe(-10)
    expect(ANNOUNCE_TOPIC_SCORE).toMatchObject({ topicWeight: 1, timeInMeshWeight: 0.01, timeInMeshCap: 100, firstMessageDeliveriesWeight: 1, firstMessageDeliveriesDecay: 0.9, firstMessageDeliveriesCap: 5, meshMessageDeliveriesWeight: 0, meshFailurePenaltyWeight: 0, invalidMessageDeliveriesDecay: 0.99 })
    expect(readme).toMatch(/\| P4 invalid message deliveries \| weight -10, decay 0\.99 \|/)
    const t = ANNOUNCE_SCORE_THRESHOLDS
    expect(readme).toContain(`gossip ${t.gossipThreshold}, publish ${t.publishThreshold}, graylist ${t.graylistThreshold}, accept PX ${t.acceptPXThreshold}, opportunistic graft ${t.opportunisticGraftThreshold}`)
  })

  it('has a gossip message-id vector that matches gossipsub as krill runs it (StrictSign)', async () => {
    const m = /Vector \(author Ed25519,\s+seed = 32 bytes of 0x07, `seqno` 0x([0-9a-f]+)\):\s+`([0-9a-f]+)`/.exec(readme)
    expect(m).not.toBeNull()
    const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(7))
    const from = peerIdFromPrivateKey(key)
    // the message-id function of a gossipsub built with krill's options (no msgIdFn of our own)
    const pubsub: any = gossipsub({ allowPublishToZeroTopicPeers: true })({ peerId: from, privateKey: key, logger: { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) } } as any)
    const id: Uint8Array = await pubsub.msgIdFn({ type: 'signed', from, sequenceNumber: BigInt(`0x${m![1]}`), data: new Uint8Array(), topic: 'krill/models/1', signature: new Uint8Array(), key: key.publicKey })
    expect(Buffer.from(id).toString('hex')).toBe(m![2])
  })
})

describe('protocols/README.md: embeddings and show', async () => {
  const { EMBED_PROTOCOL, encodeEmbedFrame, encodeEmbedRequest, vectorFrames, decodeEmbedRequest } = await import('../../src/protocol/embed-wire.js')
  const { DEFAULT_EMBED_LIMITS } = await import('../../src/limits/index.js')
  const { SHOW_PROTOCOL } = await import('../../src/protocol/show-exchange.js')
  const { ShowRequest } = await import('../../src/protocol/generated/show.js')
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
  const vector = (label: string): string => {
    const row = readme.split('\n').find(l => l.startsWith(`| \`${label}`))
    const m = row != null ? /\| `([0-9a-f]+)` \|$/.exec(row) : null
    if (m == null) throw new Error(`no test vector for ${label}`)
    return m[1]
  }

  it('names the protocol ids and the limits the code uses', () => {
    expect(readme).toContain(`\`${EMBED_PROTOCOL}\``)
    expect(readme).toContain(`\`${SHOW_PROTOCOL}\``)
    expect(readme).toMatch(new RegExp(`\\| inputs per embed request \\| ${DEFAULT_EMBED_LIMITS.maxInputs} \\|`))
    expect(readme).toMatch(new RegExp(`\\| characters per input \\| ${DEFAULT_EMBED_LIMITS.maxInputChars} \\|`))
    expect(readme).toMatch(new RegExp(`\\| values per vector \\| ${DEFAULT_EMBED_LIMITS.maxDimensions} \\|`))
    expect(DEFAULT_EMBED_LIMITS.maxRequestBytes).toBe(8 * 1024 * 1024)
    expect(readme).toMatch(/\| embed request frame \| 8 MiB \|/)
    expect(DEFAULT_EMBED_LIMITS.maxFrameBytes).toBe(1024 * 1024)
    expect(readme).toMatch(/\| embed response frame \| 1 MiB \|/)
  })

  it('has test vectors that match the code', () => {
    const request = { model: 'nomic-embed-text:latest', input: ['hello', 'krill'], dimensions: 4 }
    expect(hex(encodeEmbedRequest(request))).toBe(vector('EmbedRequest{'))
    expect(decodeEmbedRequest(Buffer.from(vector('EmbedRequest{'), 'hex'))).toEqual(request)
    const frame = vectorFrames([Float32Array.from([0.5, -1]), Float32Array.from([0.25, 2])], 1 << 20)
    expect(frame).toHaveLength(1)
    expect(hex(encodeEmbedFrame(frame[0]))).toBe(vector('EmbedFrame{vectors'))
    expect(hex(ShowRequest.encode({ model: 'gemma3:4b' }))).toBe(vector('ShowRequest{'))
  })
})
