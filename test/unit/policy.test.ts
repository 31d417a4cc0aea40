import { mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { exitCodeFor } from '../../src/cli/exit-codes.js'
import { PolicyFileError } from '../../src/errors.js'
import { CompiledPolicy, parsePolicy, PolicyError } from '../../src/policy/peer-policy.js'
import { POLICY_FILE, PolicyStore } from '../../src/policy/policy-store.js'
import { waitFor } from '../helpers/wait.js'

let a: string, b: string, c: string

beforeAll(async () => {
  ;[a, b, c] = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
})

describe('peer policy', () => {
  it('is open by default: no allow-list means everyone not denied', () => {
    const p = new CompiledPolicy(parsePolicy({}))
    expect(p.check('serve', a)).toBeUndefined()
    expect(p.check('consume', a)).toBeUndefined()
  })

  it('serves only allowed peers, and deny wins over allow', () => {
    const p = new CompiledPolicy(parsePolicy({ serve: { allow: [a, b], deny: [b] }, consume: { deny: [c] } }))
    expect(p.check('serve', a)).toBeUndefined()
    expect(p.check('serve', b)).toMatch(/on the serve deny-list/)
    expect(p.check('serve', c)).toMatch(/not on the serve allow-list/)
    expect(p.check('consume', a)).toBeUndefined()
    expect(p.check('consume', c)).toMatch(/on the consume deny-list/)
  })

  it('an empty allow-list refuses everyone; null means no allow-list', () => {
    expect(new CompiledPolicy(parsePolicy({ serve: { allow: [] } })).check('serve', a)).toMatch(/not on the serve allow-list/)
    expect(new CompiledPolicy(parsePolicy({ serve: { allow: null } })).check('serve', a)).toBeUndefined()
  })

  it('rejects what is not a policy, naming the place', () => {
    expect(() => parsePolicy({ serve: { deny: ['not-a-peer'] } })).toThrow(/"serve\.deny\.0": "not-a-peer" is not a peer id/)
    expect(() => parsePolicy({ serve: { deny: [a] }, extra: 1 })).toThrow(PolicyError)
    expect(() => parsePolicy({ serve: { block: [a] } })).toThrow(/serve/)
    expect(() => parsePolicy({ consume: { allow: a } })).toThrow(/consume\.allow/)
    expect(() => parsePolicy([])).toThrow(PolicyError)
    expect(() => parsePolicy(null)).toThrow(PolicyError)
  })

  it('stores peer ids canonically and without duplicates', () => {
    const p = parsePolicy({ serve: { deny: [` ${a} `, a, b] } })
    expect(p.serve.deny).toEqual([a, b])
  })
})

describe('the policy store', () => {
  let dir: string | undefined
  let store: PolicyStore | undefined

  afterEach(async () => {
    store?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
    store = undefined
    dir = undefined
  })

  async function open (opts: { privateSwarm?: boolean, file?: string } = {}): Promise<PolicyStore> {
    dir = await mkdtemp(join(tmpdir(), 'krill-policy-'))
    if (opts.file != null) await writeFile(join(dir, POLICY_FILE), opts.file)
    store = new PolicyStore({ dataDir: dir, privateSwarm: opts.privateSwarm ?? false, debounceMs: 20 })
    await store.start()
    return store
  }

  const noise = { encryption: '/noise' }

  /** replaces the file in one step, as editors and `mv` do */
  async function put (text: string): Promise<void> {
    const tmp = join(dir as string, 'policy.json.tmp')
    await writeFile(tmp, text)
    await rename(tmp, join(dir as string, POLICY_FILE))
  }

  it('serves and consumes everyone without a file', async () => {
    const s = await open()
    expect(s.authorizeServe(a, noise)).toBeUndefined()
    expect(s.mayConsume(a)).toBe(true)
    expect(s.stats).toMatchObject({ serveRefused: 0, consumeSkipped: 0 })
  })

  it('refuses to start on a broken file, saying why (exit 1)', async () => {
    const err = await open({ file: '{"serve": {"deny": ["nope"]}}' }).catch(e => e)
    expect(err).toBeInstanceOf(PolicyFileError)
    expect(exitCodeFor(err)).toBe(1)
    expect(err.message).toMatch(/policy\.json: "serve\.deny\.0": "nope" is not a peer id.*fix it or remove the file/)
    const json = await open({ file: '{"serve": ' }).catch(e => e)
    expect(json.message).toMatch(/not valid JSON/)
  })

  it('applies an edited file without a restart, and keeps the old policy when an edit is bad', async () => {
    const s = await open({ file: JSON.stringify({ serve: { deny: [a] } }) })
    expect(s.authorizeServe(a, noise)).toMatch(/deny-list/)
    expect(s.authorizeServe(b, noise)).toBeUndefined()

    await put(JSON.stringify({ serve: { allow: [a] } }))
    await waitFor(() => s.authorizeServe(b, noise) != null, 'the edited policy to apply', 5_000)
    expect(s.authorizeServe(a, noise)).toBeUndefined()

    const reloadsBefore = s.stats.reloads
    await put('{"serve": {"allow": ["12D3KooWbroken"]}}')
    await waitFor(() => s.stats.reloadErrors === 1, 'the bad edit to be noticed', 5_000)
    expect(s.lastError).toMatch(/"serve\.allow\.0"/)
    expect(s.stats.reloads).toBe(reloadsBefore)
    // still the previous policy
    expect(s.authorizeServe(a, noise)).toBeUndefined()
    expect(s.authorizeServe(b, noise)).toMatch(/allow-list/)

    // a removed file means no policy
    await unlink(join(dir as string, POLICY_FILE))
    await waitFor(() => s.authorizeServe(b, noise) == null, 'the removal to apply', 5_000)
    expect(s.lastError).toBeUndefined()
  })

  it('replace() validates, writes the file and applies at once', async () => {
    const s = await open()
    await expect(s.replace({ consume: { deny: ['x'] } })).rejects.toThrow(PolicyError)
    expect(s.mayConsume(c)).toBe(true)
    await s.replace({ consume: { deny: [c] } })
    expect(s.mayConsume(c)).toBe(false)
    expect(s.stats.consumeSkipped).toBe(1)
    expect(JSON.parse(await readFile(join(dir as string, POLICY_FILE), 'utf8'))).toEqual({ serve: { deny: [] }, consume: { deny: [c] } })
  })

  it('in a private swarm, serves only over connections that went through the swarm key and noise', async () => {
    const s = await open({ privateSwarm: true })
    expect(s.authorizeServe(a, noise)).toBeUndefined()
    expect(s.authorizeServe(a, { encryption: 'native' })).toMatch(/private swarm serves only over connections protected by its swarm key/)
    expect(s.authorizeServe(a, { encryption: undefined })).toMatch(/swarm key/)
    expect(s.stats.serveRefused).toBe(2)
  })
})
