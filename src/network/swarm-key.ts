/**
 * Swarm key files (libp2p pnet, the same format IPFS/Kubo uses):
 *
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits: a 32-byte pre-shared key>
 *
 * @libp2p/pnet's own decoder only checks the third line's length and fails at the
 * first connection with a generic "invalid psk". krill checks the whole file when it
 * starts and says exactly what is wrong, so a typo never turns into a node that
 * silently connects to nobody.
 */
import { readFile } from 'node:fs/promises'
import { SwarmKeyError } from '../errors.js'

export const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
const CODEC = '/base16/'
const HEX_64 = /^[0-9a-fA-F]{64}$/
/** a real key file is 95 bytes; anything much bigger is the wrong file */
const MAX_FILE_BYTES = 1024
const HOW_TO_CREATE = 'create one with `krill swarm-key new > swarm.key` and give the same file to every member'

/**
 * Checks the text of a swarm key file and returns it in the canonical form
 * @libp2p/pnet expects (lower-case hex, \n line ends). Throws SwarmKeyError.
 */
export function parseSwarmKey (bytes: Uint8Array, path: string): Uint8Array {
  const bad = (why: string): SwarmKeyError => new SwarmKeyError(`swarm key ${path} is not a valid swarm key: ${why}; ${HOW_TO_CREATE}`)
  if (bytes.byteLength > MAX_FILE_BYTES) throw bad(`${bytes.byteLength} bytes is far more than a key file (95 bytes)`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw bad('it is not text')
  }
  // tolerate a BOM, CRLF line ends and trailing blank lines (editors add them)
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/).map(l => l.trim())
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  if (lines[0] !== SWARM_KEY_HEADER) throw bad(`the first line must be ${SWARM_KEY_HEADER}`)
  if (lines[1] !== CODEC) throw bad(`the second line must be ${CODEC} (the only encoding krill reads)`)
  if (lines.length < 3) throw bad('the third line (64 hex digits) is missing')
  if (lines.length > 3) throw bad('it has more than three lines')
  if (!HEX_64.test(lines[2])) throw bad(`the third line must be exactly 64 hex digits (a 32-byte key), got ${lines[2].length} characters`)
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${CODEC}\n${lines[2].toLowerCase()}`)
}

/** Reads and checks a swarm key file; every failure is a SwarmKeyError. */
export async function readSwarmKey (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err: any) {
    throw new SwarmKeyError(`cannot read swarm key ${path}: ${err.code ?? err.message}; ${HOW_TO_CREATE}`, { cause: err })
  }
  return parseSwarmKey(bytes, path)
}

/** The 32 key bytes of a checked swarm key file (as parseSwarmKey returns it). */
export function swarmKeyBytes (file: Uint8Array): Uint8Array {
  const hex = new TextDecoder().decode(file).split('\n')[2]
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** The swarm key file text (pnet PSK v1) for 32 key bytes. */
export function swarmKeyFile (key: Uint8Array): Uint8Array {
  if (key.byteLength !== 32) throw new Error(`a swarm key is 32 bytes, not ${key.byteLength}`)
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${CODEC}\n${Buffer.from(key).toString('hex')}\n`)
}
