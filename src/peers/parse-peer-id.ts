import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'

// not re-exported from peers/index.ts: the CLI's light commands import that index,
// and must not load libp2p's peer-id and crypto modules

/** parsed ids by their text; cleared when full (a daemon talks to far fewer peers) */
const parsed = new Map<string, PeerId>()
const MAX_PARSED = 4096

/**
 * peerIdFromString, remembered: the router and the chat client turn the same few
 * provider ids into PeerIds on every chat (ranking by round-trip time, opening the
 * stream), and each parse is a base58 decode, a multihash and a public key
 * (~50–100 µs in the consumer's profile, twice before the request went out).
 * A PeerId never changes, so one per id is enough. Throws on a bad id, as
 * peerIdFromString does (bad ids are not remembered).
 */
export function parsePeerId (id: string): PeerId {
  let peer = parsed.get(id)
  if (peer == null) {
    peer = peerIdFromString(id)
    if (parsed.size >= MAX_PARSED) parsed.clear()
    parsed.set(id, peer)
  }
  return peer
}
