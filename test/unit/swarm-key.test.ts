import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'
import { describe, expect, it } from 'vitest'
import { exitCodeFor } from '../../src/cli/exit-codes.js'
import { SwarmKeyError } from '../../src/errors.js'
import { parseSwarmKey, readSwarmKey, SWARM_KEY_HEADER } from '../../src/network/swarm-key.js'

const HEX = 'a1'.repeat(32)
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)

function fails (text: string | Uint8Array, pattern: RegExp): void {
  let error: unknown
  try {
    parseSwarmKey(typeof text === 'string' ? enc(text) : text, 'swarm.key')
  } catch (err) {
    error = err
  }
  expect(error).toBeInstanceOf(SwarmKeyError)
  expect(exitCodeFor(error)).toBe(1)
  expect((error as SwarmKeyError).message).toMatch(pattern)
  expect((error as SwarmKeyError).message).toMatch(/krill swarm-key new/)
}

describe('swarm key files', () => {
  it('accepts what generateKey (and so `krill swarm-key new`) writes, unchanged', () => {
    const key = new Uint8Array(95)
    generateKey(key)
    expect(dec(parseSwarmKey(key, 'k'))).toBe(dec(key))
  })

  it('tolerates CRLF, a trailing newline, a BOM and upper-case hex, and canonicalizes them', () => {
    const canonical = `${SWARM_KEY_HEADER}\n/base16/\n${HEX}`
    expect(dec(parseSwarmKey(enc(`\uFEFF${SWARM_KEY_HEADER}\r\n/base16/\r\n${HEX.toUpperCase()}\r\n\n`), 'k'))).toBe(canonical)
  })

  it('says what is wrong with a malformed file', () => {
    fails('', /first line must be \/key\/swarm\/psk\/1\.0\.0\//)
    fails(`/key/swarm/psk/2.0.0/\n/base16/\n${HEX}`, /first line/)
    fails(`${SWARM_KEY_HEADER}\n/base64/\n${HEX}`, /second line must be \/base16\//)
    fails(`${SWARM_KEY_HEADER}\n/base16/\n`, /third line .* is missing/)
    fails(`${SWARM_KEY_HEADER}\n/base16/\n${HEX.slice(2)}`, /exactly 64 hex digits .* got 62 characters/)
    fails(`${SWARM_KEY_HEADER}\n/base16/\n${'zz'.repeat(32)}`, /exactly 64 hex digits/)
    fails(`${SWARM_KEY_HEADER}\n/base16/\n${HEX}\nextra`, /more than three lines/)
    fails(Uint8Array.from([0xff, 0xfe, 0x00, 0x80]), /not text/)
    fails(new Uint8Array(4096).fill(0x41), /4096 bytes/)
  })

  it('reports an unreadable file with the reason and how to make one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'krill-key-'))
    try {
      await expect(readSwarmKey(join(dir, 'missing.key'))).rejects.toThrow(/cannot read swarm key .*missing\.key: ENOENT; create one with `krill swarm-key new/)
      await writeFile(join(dir, 'ok.key'), `${SWARM_KEY_HEADER}\n/base16/\n${HEX}\n`)
      expect(dec(await readSwarmKey(join(dir, 'ok.key')))).toContain(HEX)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
