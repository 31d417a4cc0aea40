/**
 * The sync exchange's entries against the test vector in protocols/README.md
 * ("Sync exchange"), and the checks every handed-on entry goes through: the
 * author's gossipsub signature, then the same validator as gossip, kept no longer
 * than the giver would have kept it.
 */
import { generateKeyPairFromSeed, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { RPC } from '@libp2p/gossipsub/message'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { AnnouncementValidator } from '../../src/discovery/announcement-validator.js'
import { ProviderTable } from '../../src/discovery/provider-table.js'
import { verifySyncEntry } from '../../src/discovery/sync-exchange.js'
import { Announcement } from '../../src/protocol/generated/announce.js'
import { SyncRequest, SyncResponse } from '../../src/protocol/generated/sync.js'

const hex = (s: string): Uint8Array<ArrayBuffer> => Uint8Array.from(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

// protocols/README.md, "Sync exchange": test vector
const VECTOR = {
  seed: new Uint8Array(32).fill(7),
  author: '12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7',
  request: '088008',
  announcement: '0a6c0a0b6c6c616d61332e323a316212406138306334663137616364353532363566656563343033633761656638366265306332353938336162323739643833663362636433616262636235623862373218d9b8f9f50422056c6c616d612a04312e3242320451385f3038808008120208041a0b6b72696c6c2f302e312e302080c0efe2ad332880c0efe2ad3330e0d403',
  seqno: '187d2b1c00000001',
  signature: 'ca7cc33046bf1c70024f71357c26514f2987a904c4fba711194d714eba08ea39fb102d1574afd5b347bd7a7b6980f2aff9ca69d789cd7e78e578df626eef6809',
  response: '0a8c020a26002408011220ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c1291010a6c0a0b6c6c616d61332e323a316212406138306334663137616364353532363566656563343033633761656638366265306332353938336162323739643833663362636433616262636235623862373218d9b8f9f50422056c6c616d612a04312e3242320451385f3038808008120208041a0b6b72696c6c2f302e312e302080c0efe2ad332880c0efe2ad3330e0d4031a08187d2b1c000000012240ca7cc33046bf1c70024f71357c26514f2987a904c4fba711194d714eba08ea39fb102d1574afd5b347bd7a7b6980f2aff9ca69d789cd7e78e578df626eef680930c8df02',
  timestampMs: 1764633600000
}

const readme = await readFile(path.resolve(import.meta.dirname, '..', '..', 'protocols', 'README.md'), 'utf8')

describe('sync exchange entries', () => {
  it('has the test vector of protocols/README.md', () => {
    expect(readme).toContain(`SyncRequest    ${VECTOR.request} `)
    expect(readme).toContain(`data           ${VECTOR.announcement}\n`)
    expect(readme).toContain(`seqno          ${VECTOR.seqno}\n`)
    expect(readme).toContain(`signature      ${VECTOR.signature}\n`)
    expect(readme).toContain(`SyncResponse   ${VECTOR.response}\n`)
    expect(readme).toContain(`→ ${VECTOR.author}`)
  })

  it('builds the test vector: the request, the announcement, the author\'s gossipsub signature and the response', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', VECTOR.seed)
    const author = peerIdFromPrivateKey(key)
    expect(author.toString()).toBe(VECTOR.author)
    expect(toHex(SyncRequest.encode({ maxEntries: 1024 }))).toBe(VECTOR.request)
    const data = Announcement.encode({
      models: [{ name: 'llama3.2:1b', digest: 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72', size: 1321098329, family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', contextLength: 131072 }],
      capacity: { slots: 4, active: 0, queued: 0 },
      version: 'krill/0.1.0',
      seq: VECTOR.timestampMs,
      timestampMs: VECTOR.timestampMs,
      ttlMs: 60_000
    })
    expect(toHex(data)).toBe(VECTOR.announcement)
    const from = author.toMultihash().bytes
    const signed = RPC.Message.encode({ from, data, seqno: hex(VECTOR.seqno), topic: 'krill/models/1' })
    const signature = await key.sign(new Uint8Array([...new TextEncoder().encode('libp2p-pubsub:'), ...signed]))
    expect(toHex(signature)).toBe(VECTOR.signature)
    const response = SyncResponse.encode({ entries: [{ from, data, seqno: hex(VECTOR.seqno), signature, key: new Uint8Array(0), remainingMs: 45_000 }] })
    expect(toHex(response)).toBe(VECTOR.response)
  })

  it('accepts the vector\'s entry as signed by its author', async () => {
    const entry = SyncResponse.decode(hex(VECTOR.response)).entries[0]
    const msg = await verifySyncEntry(entry)
    expect(msg.from.toString()).toBe(VECTOR.author)
    expect(msg.topic).toBe('krill/models/1')
    expect(msg.sequenceNumber).toBe(0x187d2b1c00000001n)
    expect(entry.remainingMs).toBe(45_000)
  })

  it('refuses entries whose signature, seqno, author or key do not hold', async () => {
    const entry = SyncResponse.decode(hex(VECTOR.response)).entries[0]
    const other = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(9)))
    const bad: Array<[Partial<SyncResponse.Entry>, RegExp]> = [
      [{ data: Uint8Array.from([...entry.data.slice(0, -1), 0x04]) }, /signature does not match/],
      [{ seqno: hex('187d2b1c00000002') }, /signature does not match/],
      [{ seqno: hex('01') }, /seqno must be 8 bytes/],
      [{ signature: new Uint8Array(0) }, /no signature/],
      [{ signature: new Uint8Array(7) }, /signature does not match/],
      [{ from: hex('0000') }, /not a peer id/],
      // the signature is the author's, but the entry claims another author
      [{ from: other.toMultihash().bytes as Uint8Array<ArrayBuffer> }, /signature does not match/],
      [{ key: publicKeyToProtobuf(other.publicKey!) as Uint8Array<ArrayBuffer> }, /key is not the author's/],
      [{ key: hex('ffff') }, /key does not decode/]
    ]
    for (const [change, why] of bad) {
      await expect(verifySyncEntry({ ...entry, ...change })).rejects.toThrow(why)
    }
  })

  it('judges a handed-on entry with the gossip validator and keeps it no longer than the giver would have', async () => {
    const now = VECTOR.timestampMs + 1_000
    const table = new ProviderTable({ selfId: 'self', now: () => now })
    const validator = new AnnouncementValidator({ table, now: () => now })
    const entry = SyncResponse.decode(hex(VECTOR.response)).entries[0]
    const msg = await verifySyncEntry(entry)
    expect(validator.validateSynced(msg, entry.remainingMs)).toBe(TopicValidatorResult.Accept)
    const [listed] = table.providersFor('llama3.2:1b')
    expect(listed.peerId).toBe(VECTOR.author)
    // 45 s left at the giver, not the announcement's full 60 s TTL
    expect(listed.expiresAt).toBe(now + 45_000)
    // what we hold is handed on unchanged, with what is left of it
    const [held] = table.signedAnnouncements(10)
    expect(toHex(held.signature)).toBe(VECTOR.signature)
    expect(held.remainingMs).toBe(45_000)
    // the same entry again is stale, not new; one from the far future is rejected
    expect(validator.validateSynced(msg, entry.remainingMs)).toBe(TopicValidatorResult.Ignore)
    const late = new AnnouncementValidator({ table: new ProviderTable({ selfId: 'self' }), now: () => VECTOR.timestampMs - 3_600_000 })
    expect(late.validateSynced(msg, entry.remainingMs)).toBe(TopicValidatorResult.Reject)
  })
})
