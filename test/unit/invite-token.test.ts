/**
 * Invite tokens against the test vector in protocols/README.md ("Invite tokens"),
 * and every way a token from a stranger can be wrong: each is an InviteError
 * (exit 2) with a reason, never a crash.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RecordEnvelope } from '@libp2p/peer-record'
import { multiaddr } from '@multiformats/multiaddr'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { decodeInvite, encodeInvite, INVITE_DOMAIN, InviteError, parseDuration } from '../../src/network/invite-token.js'
import { Invite } from '../../src/protocol/generated/invite.js'
import { exitCodeFor } from '../../src/cli/exit-codes.js'

// protocols/README.md, "Invite tokens": test vector
const VECTOR = {
  seed: new Uint8Array(32).fill(7),
  relaySeed: new Uint8Array(32).fill(9),
  issuer: '12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7',
  relay: '12D3KooWSrKnMZUcSxK8G7wmBbXdU8nFEfWGhLu6H8xjn8LmCSJb',
  swarmKey: Uint8Array.from({ length: 32 }, (_, i) => i),
  addrs: ['/ip4/192.168.1.10/tcp/4747', '/ip4/11.0.113.10/tcp/4747/p2p/12D3KooWSrKnMZUcSxK8G7wmBbXdU8nFEfWGhLu6H8xjn8LmCSJb/p2p-circuit'],
  createdMs: 1764633600000,
  expiresMs: 1764637200000,
  token: 'krill-invite-v1-CiQIARIg6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iwSEy9rcmlsbC9pbnZpdGUvMS4wLjAawQEKIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fEjEEwKgBCgYSi6UDJgAkCAESIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIsElwECwBxCgYSi6UDJgAkCAESIP0XJDhaoMdbZPt4zWAvodmR_ev3axPFjtcC6sg16fYYogKlAyYAJAgBEiDqSmxj4pxSCr71UHsTLsX5lUd2rr6-e5JCHuppFEbSLBiAwO_irTMggJ3L5K0zKkArXJHV6Azczp9otW7W49vhOYab1yWfNpWm91XAn4j_JrFLT7vHUxwTERP9bqa8MUokRaZnB0sPTS0fmESjxa4P'
}

async function rejection (token: string, now = VECTOR.createdMs + 1): Promise<InviteError> {
  const err = await decodeInvite(token, now).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(InviteError)
  expect(exitCodeFor(err)).toBe(2)
  return err as InviteError
}

/** seals an arbitrary payload the way a (possibly hostile) inviter could */
async function seal (payload: Uint8Array, opts: { domain?: string, codec?: string } = {}): Promise<string> {
  const key = await generateKeyPairFromSeed('Ed25519', VECTOR.seed)
  const record = { domain: opts.domain ?? INVITE_DOMAIN, codec: new TextEncoder().encode(opts.codec ?? '/krill/invite/1.0.0'), marshal: () => payload, equals: () => false }
  const envelope = await RecordEnvelope.seal(record, key)
  return 'krill-invite-v1-' + Buffer.from(envelope.marshal()).toString('base64url')
}

const readme = await readFile(path.resolve(import.meta.dirname, '..', '..', 'protocols', 'README.md'), 'utf8')

describe('invite tokens', () => {
  it('has the test vector of protocols/README.md', () => {
    expect(readme).toContain(`token          ${VECTOR.token}\n`)
    expect(readme).toContain(`peer id ${VECTOR.issuer}`)
    expect(readme).toContain(`relay peer id  ${VECTOR.relay}`)
    expect(readme).toContain(`swarm_key      ${Buffer.from(VECTOR.swarmKey).toString('hex')}`)
    expect(readme).toContain(`created_ms     ${VECTOR.createdMs}`)
    expect(readme).toContain(`expires_ms     ${VECTOR.expiresMs}`)
  })

  it('encodes the test vector exactly, and decodes it back', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', VECTOR.seed)
    expect(peerIdFromPrivateKey(key).toString()).toBe(VECTOR.issuer)
    expect(peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', VECTOR.relaySeed)).toString()).toBe(VECTOR.relay)
    const token = await encodeInvite({ swarmKey: VECTOR.swarmKey, addrs: VECTOR.addrs, createdMs: VECTOR.createdMs, expiresMs: VECTOR.expiresMs }, key)
    expect(token).toBe(VECTOR.token)

    const invite = await decodeInvite(VECTOR.token, VECTOR.createdMs + 1)
    expect(invite.issuer.toString()).toBe(VECTOR.issuer)
    expect(Buffer.from(invite.swarmKey).toString('hex')).toBe('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f')
    expect(invite.addrs.map(String)).toEqual(VECTOR.addrs.map(a => `${a}/p2p/${VECTOR.issuer}`))
    expect(invite.createdMs).toBe(VECTOR.createdMs)
    expect(invite.expiresMs).toBe(VECTOR.expiresMs)
  })

  it('refuses an expired token, saying when it expired', async () => {
    const err = await rejection(VECTOR.token, VECTOR.expiresMs + 90 * 60_000)
    expect(err.reason).toBe('expired')
    expect(err.message).toMatch(/^this invite expired at 2025-12-02T01:00:00\.000Z \(90 min ago\); ask for a new one with `krill invite`$/)
  })

  it('never expires without an expiry', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', VECTOR.seed)
    const token = await encodeInvite({ swarmKey: VECTOR.swarmKey, addrs: ['/ip4/127.0.0.1/tcp/1'], createdMs: 1 }, key)
    expect((await decodeInvite(token, Number.MAX_SAFE_INTEGER)).expiresMs).toBeUndefined()
  })

  it('tells foreign tokens apart: another version, another record type, another domain', async () => {
    const v2 = await rejection(VECTOR.token.replace('krill-invite-v1-', 'krill-invite-v2-'))
    expect(v2.reason).toBe('foreign')
    expect(v2.message).toMatch(/version 2 invite token; this krill reads version 1 only/)
    const otherType = await rejection(await seal(Invite.encode({ swarmKey: VECTOR.swarmKey as Uint8Array<ArrayBuffer> }), { codec: '/other/program/1' }))
    expect(otherType.reason).toBe('foreign')
    // the same bytes signed for another domain do not verify as an invite
    const otherDomain = await rejection(await seal(new Uint8Array(4), { domain: 'libp2p-peer-record' }))
    expect(otherDomain.reason).toBe('damaged')
  })

  it('says what a text is when it is no token at all', async () => {
    expect((await rejection('/key/swarm/psk/1.0.0/\n/base16/\n00')).message).toMatch(/that is a swarm key file; pass the file with --swarm-key FILE/)
    expect((await rejection('/ip4/1.2.3.4/tcp/4747/p2p/' + VECTOR.issuer)).message).toMatch(/looks like a multiaddr; pass it with --bootstrap/)
    expect((await rejection('hello')).message).toMatch(/^not a krill invite token \(invite tokens start with krill-invite-v1-\)/)
    expect((await rejection('')).reason).toBe('malformed')
    expect((await rejection('krill-invite-v1-' + 'A'.repeat(5000))).message).toMatch(/far more than a krill invite/)
  })

  it('finds damage: a changed character, a cut-off token, foreign characters', async () => {
    const i = 200
    const flipped = VECTOR.token.slice(0, i) + (VECTOR.token[i] === 'A' ? 'B' : 'A') + VECTOR.token.slice(i + 1)
    expect((await rejection(flipped)).reason).toBe('damaged')
    expect((await rejection(VECTOR.token.slice(0, 120))).reason).toBe('damaged')
    expect((await rejection(VECTOR.token.slice(0, 100) + ' ' + VECTOR.token.slice(100))).reason).toBe('damaged')
    // surrounding whitespace (a pasted line) is fine
    await expect(decodeInvite(`  ${VECTOR.token}\n`, VECTOR.createdMs)).resolves.toBeDefined()
  })

  it('checks the signed content like any input from a stranger', async () => {
    const addr = (a: string): Uint8Array<ArrayBuffer> => multiaddr(a).bytes as Uint8Array<ArrayBuffer>
    const own = `/ip4/127.0.0.1/tcp/1/p2p/${VECTOR.issuer}`
    const short = await rejection(await seal(Invite.encode({ swarmKey: new Uint8Array(16), addrs: [addr(own)] })))
    expect(short.message).toMatch(/swarm key is 16 bytes, not 32/)
    const none = await rejection(await seal(Invite.encode({ swarmKey: VECTOR.swarmKey as Uint8Array<ArrayBuffer>, addrs: [] })))
    expect(none.message).toMatch(/names no address/)
    const foreignAddr = await rejection(await seal(Invite.encode({ swarmKey: VECTOR.swarmKey as Uint8Array<ArrayBuffer>, addrs: [addr(`/ip4/127.0.0.1/tcp/1/p2p/${VECTOR.relay}`)] })))
    expect(foreignAddr.message).toMatch(/is not the inviting node's/)
    const many = await rejection(await seal(Invite.encode({ swarmKey: VECTOR.swarmKey as Uint8Array<ArrayBuffer>, addrs: Array.from({ length: 17 }, () => addr(own)) })))
    expect(many.message).toMatch(/more than 16 addresses/)
    const garbage = await rejection(await seal(Invite.encode({ swarmKey: VECTOR.swarmKey as Uint8Array<ArrayBuffer>, addrs: [new Uint8Array([0xff, 0xff, 0xff])] })))
    expect(garbage.message).toMatch(/not a valid multiaddr/)
    const notProtobuf = await rejection(await seal(new Uint8Array([0xff, 0xff, 0xff, 0xff])))
    expect(notProtobuf.reason).toBe('malformed')
  })

  it('parses --expires durations', () => {
    expect(parseDuration('1h')).toBe(3_600_000)
    expect(parseDuration('90s')).toBe(90_000)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration('7d')).toBe(7 * 86_400_000)
    expect(parseDuration('soon')).toBeUndefined()
    expect(parseDuration('0s')).toBeUndefined()
    expect(parseDuration('')).toBeUndefined()
  })
})
