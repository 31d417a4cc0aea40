/**
 * protocols/README.md is the contract for other implementations: keep its tables in
 * step with the code.
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { digestKey, modelKey, modelKeyString } from '../../src/discovery/keys.js'
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
})
