/**
 * Invite tokens (protocols/README.md, "Invite tokens"): what `krill invite` prints
 * and `krill daemon --join` reads. A token carries the swarm's pre-shared key and
 * the inviter's dialable addresses, optionally an expiry, in a libp2p signed
 * envelope (RFC 0002) sealed with the inviter's identity key:
 *
 *   krill-invite-v1-<base64url(Envelope{domain "krill-invite",
 *                                        payload type "/krill/invite/1.0.0",
 *                                        payload Invite})>
 *
 * The signature binds the addresses to the inviter (each must end in its peer id)
 * and turns a token damaged in copying into a clear error instead of a node that
 * silently connects to nobody. Everything read here may come from a stranger:
 * sizes, counts and formats are checked before use, and every failure is an
 * InviteError naming what is wrong.
 */
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { RecordEnvelope } from '@libp2p/peer-record'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { InviteError } from '../errors.js'
import { Invite } from '../protocol/generated/invite.js'

export const INVITE_PREFIX = 'krill-invite-v1-'
export const INVITE_DOMAIN = 'krill-invite'
export const INVITE_PAYLOAD_TYPE = '/krill/invite/1.0.0'
/** a token with 16 long addresses is about 2 KB; anything much bigger is not ours */
export const MAX_TOKEN_CHARS = 4096
export const MAX_INVITE_ADDRS = 16
const MAX_ADDR_BYTES = 512
const SWARM_KEY_BYTES = 32

const PAYLOAD_TYPE_BYTES = new TextEncoder().encode(INVITE_PAYLOAD_TYPE)
const BASE64URL = /^[A-Za-z0-9_-]+$/

export { InviteError }

/** What a token says, once it passed every check. */
export interface InviteContent {
  /** the swarm's 32-byte pnet key */
  swarmKey: Uint8Array
  /** where the inviter can be dialed, each ending in /p2p/<issuer> */
  addrs: Multiaddr[]
  /** the inviting node */
  issuer: PeerId
  createdMs: number
  /** undefined: the token never expires */
  expiresMs?: number
}

export interface InviteInput {
  swarmKey: Uint8Array
  addrs: Array<Multiaddr | string>
  createdMs: number
  expiresMs?: number
}

/** the envelope's record: the encoded Invite, under krill's domain and payload type */
class InviteRecord {
  readonly domain = INVITE_DOMAIN
  readonly codec = PAYLOAD_TYPE_BYTES
  constructor (private readonly bytes: Uint8Array) {}
  marshal (): Uint8Array { return this.bytes }
  equals (other: unknown): boolean {
    return other instanceof InviteRecord && Buffer.from(other.bytes).equals(Buffer.from(this.bytes))
  }
}

function base64url (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url')
}

/** Seals an invite with `privateKey` (the inviting node's identity) and returns its text form. */
export async function encodeInvite (input: InviteInput, privateKey: PrivateKey): Promise<string> {
  if (input.swarmKey.byteLength !== SWARM_KEY_BYTES) throw new Error(`a swarm key is ${SWARM_KEY_BYTES} bytes, not ${input.swarmKey.byteLength}`)
  const issuer = peerIdFromPublicKey(privateKey.publicKey).toString()
  const addrs = input.addrs.map(a => typeof a === 'string' ? multiaddr(a) : a)
    .map(a => a.getComponents().at(-1)?.name === 'p2p' ? a : a.encapsulate(`/p2p/${issuer}`))
    .filter(a => lastPeerId(a) === issuer)
    .slice(0, MAX_INVITE_ADDRS)
  if (addrs.length === 0) throw new Error('an invite needs at least one address of this node')
  const payload = Invite.encode({
    swarmKey: input.swarmKey as Uint8Array<ArrayBuffer>,
    addrs: addrs.map(a => a.bytes as Uint8Array<ArrayBuffer>),
    createdMs: input.createdMs,
    expiresMs: input.expiresMs ?? 0
  })
  const envelope = await RecordEnvelope.seal(new InviteRecord(payload), privateKey)
  return INVITE_PREFIX + base64url(envelope.marshal())
}

function lastPeerId (addr: Multiaddr): string | undefined {
  return addr.getComponents().filter(c => c.name === 'p2p').at(-1)?.value
}

/** A short description of what the text looks like when it is no invite at all. */
function notAToken (text: string): InviteError {
  const hint = text.startsWith('/key/swarm/psk/')
    ? 'that is a swarm key file; pass the file with --swarm-key FILE'
    : text.startsWith('/')
      ? 'that looks like a multiaddr; pass it with --bootstrap'
      : /^12D3Koo|^Qm/.test(text)
        ? 'that looks like a peer id'
        : `invite tokens start with ${INVITE_PREFIX}`
  return new InviteError('malformed', `not a krill invite token (${hint}); ask a member of the swarm to run \`krill invite\``)
}

/**
 * Reads a token from the command line (or KRILL_JOIN) and checks it completely:
 * form, version, signature, payload bounds, addresses, expiry at `now`.
 * Throws InviteError.
 */
export async function decodeInvite (token: string, now = Date.now()): Promise<InviteContent> {
  const text = token.trim()
  if (text === '') throw new InviteError('malformed', 'the invite token is empty; ask a member of the swarm to run `krill invite`')
  if (text.length > MAX_TOKEN_CHARS) throw new InviteError('malformed', `the invite token is ${text.length} characters, far more than a krill invite (at most ${MAX_TOKEN_CHARS})`)
  const versioned = /^krill-invite-v(\d{1,6})-/.exec(text)
  if (versioned == null) throw notAToken(text)
  if (versioned[1] !== '1') {
    throw new InviteError('foreign', `this is a version ${versioned[1]} invite token; this krill reads version 1 only: update krill, or ask for a token from a node running this version`)
  }
  const body = text.slice(INVITE_PREFIX.length)
  if (!BASE64URL.test(body)) throw new InviteError('damaged', 'the invite token is damaged (characters that cannot be in a token); copy it again, whole and on one line')

  let envelope: RecordEnvelope
  try {
    envelope = RecordEnvelope.createFromProtobuf(Buffer.from(body, 'base64url'))
  } catch {
    throw new InviteError('damaged', 'the invite token is damaged or cut short; copy it again, whole and on one line')
  }
  if (!Buffer.from(envelope.payloadType).equals(Buffer.from(PAYLOAD_TYPE_BYTES))) {
    throw new InviteError('foreign', 'this signed token is not a krill invite (another program\'s or a newer krill\'s record); ask for a token from `krill invite`')
  }
  let valid = false
  try {
    valid = await envelope.validate(INVITE_DOMAIN)
  } catch {
    valid = false
  }
  if (!valid) throw new InviteError('damaged', 'the invite token is damaged or altered: its signature does not match; copy it again, whole')
  const issuer = peerIdFromPublicKey(envelope.publicKey)

  let invite: Invite
  try {
    invite = Invite.decode(envelope.payload, { limits: { addrs: MAX_INVITE_ADDRS } })
  } catch (err: any) {
    throw new InviteError('malformed', err?.name === 'MaxLengthError'
      ? `the invite lists more than ${MAX_INVITE_ADDRS} addresses`
      : 'the invite token\'s content does not decode')
  }
  if (invite.swarmKey.byteLength !== SWARM_KEY_BYTES) {
    throw new InviteError('malformed', `the invite's swarm key is ${invite.swarmKey.byteLength} bytes, not ${SWARM_KEY_BYTES}`)
  }
  if (invite.addrs.length === 0) throw new InviteError('malformed', 'the invite names no address to dial')
  const addrs: Multiaddr[] = []
  for (const bytes of invite.addrs) {
    let addr: Multiaddr
    try {
      if (bytes.byteLength > MAX_ADDR_BYTES) throw new Error('too long')
      addr = multiaddr(bytes)
    } catch {
      throw new InviteError('malformed', 'the invite holds an address that is not a valid multiaddr')
    }
    if (lastPeerId(addr) !== issuer.toString()) {
      throw new InviteError('malformed', `the invite's address ${addr.toString()} is not the inviting node's (${issuer.toString()})`)
    }
    addrs.push(addr)
  }
  if (!Number.isSafeInteger(invite.createdMs) || !Number.isSafeInteger(invite.expiresMs)) {
    throw new InviteError('malformed', 'the invite\'s times are out of range')
  }
  const expiresMs = invite.expiresMs === 0 ? undefined : invite.expiresMs
  if (expiresMs != null && expiresMs <= now) {
    throw new InviteError('expired', `this invite expired at ${new Date(expiresMs).toISOString()} (${formatAgo(now - expiresMs)} ago); ask for a new one with \`krill invite\``)
  }
  return { swarmKey: invite.swarmKey, addrs, issuer, createdMs: invite.createdMs, expiresMs }
}

function formatAgo (ms: number): string {
  if (ms < 60_000) return `${Math.max(1, Math.round(ms / 1000))} s`
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`
  return `${Math.round(ms / 86_400_000)} days`
}

/** "90s", "30m", "1h", "7d", "1h30m" → milliseconds; undefined when it is no duration. */
export function parseDuration (text: string): number | undefined {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text.trim())
  if (match == null || text.trim() === '') return undefined
  const [, d, h, m, s] = match.map(v => Number(v ?? 0))
  const ms = ((d * 24 + h) * 60 + m) * 60_000 + s * 1000
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined
}
