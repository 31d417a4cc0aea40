/**
 * DHT keys (DESIGN §2): CIDv1, raw codec, sha2-256 of the UTF-8 strings
 * `krill/model/v1/<model id>` and `krill/digest/v1/<digest>` (krill's own DHT), and
 * `krill/rendezvous/v1/<network>` (the public IPFS DHT, where public nodes meet). The model id
 * and the digest form come from src/models (protocols/README.md, "DHT"); any
 * implementation computing the same bytes finds the same providers.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { modelId, normalizeDigest } from '../models/index.js'

function cidOf (text: string): CID {
  // node:crypto keeps this synchronous (multiformats' sha256 may return a promise)
  const hash = createHash('sha256').update(text, 'utf8').digest()
  return CID.createV1(raw.code, Digest.create(sha256.code, new Uint8Array(hash)))
}

/** The string a model name's key hashes: `Llama3` → `krill/model/v1/llama3:latest`. */
export function modelKeyString (name: string): string {
  return `krill/model/v1/${modelId(name)}`
}

/** Key providers of a model name publish under ("Llama3" and "llama3:latest" share it). */
export function modelKey (name: string): CID {
  return cidOf(modelKeyString(name))
}

/** Key providers of one exact model copy (manifest digest, 64 hex) publish under. */
export function digestKey (digest: string): CID {
  return cidOf(`krill/digest/v1/${normalizeDigest(digest) ?? digest.toLowerCase()}`)
}

/** The network whose nodes meet under `krill/rendezvous/v1/public`: the public krill network. */
export const PUBLIC_NETWORK = 'public'

/** The string the rendezvous key of `network` hashes: `krill/rendezvous/v1/public`. */
export function rendezvousKeyString (network: string = PUBLIC_NETWORK): string {
  return `krill/rendezvous/v1/${network}`
}

/**
 * The key every node of a public krill network provides, and looks up, on the
 * public IPFS (Amino) DHT to find the others (protocols/README.md, "Public rendezvous").
 */
export function rendezvousKey (network: string = PUBLIC_NETWORK): CID {
  return cidOf(rendezvousKeyString(network))
}
