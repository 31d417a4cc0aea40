/**
 * DHT keys for model discovery (DESIGN §2): CIDv1, raw codec, sha2-256 of the UTF-8
 * strings `krill/model/v1/<name>` and `krill/digest/v1/<digest>`. Any implementation
 * computing the same bytes finds the same providers, so nothing here may change.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

function cidOf (text: string): CID {
  // node:crypto keeps this synchronous (multiformats' sha256 may return a promise)
  const hash = createHash('sha256').update(text, 'utf8').digest()
  return CID.createV1(raw.code, Digest.create(sha256.code, new Uint8Array(hash)))
}

/**
 * The name as Ollama lists it: a name without a tag means `:latest`, which is how
 * Ollama reports it, so "llama3" and "llama3:latest" share one key.
 */
export function canonicalModelName (name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1)
  return base.includes(':') ? name : `${name}:latest`
}

/** Key providers of a model name publish under. */
export function modelKey (name: string): CID {
  return cidOf(`krill/model/v1/${canonicalModelName(name)}`)
}

/** Key providers of one exact model copy (manifest digest, 64 hex) publish under. */
export function digestKey (digest: string): CID {
  return cidOf(`krill/digest/v1/${digest.replace(/^sha256:/, '').toLowerCase()}`)
}
