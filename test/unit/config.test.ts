import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { UsageError } from '../../src/errors.js'
import { parseHostPort, resolveConfig, normalizeOllamaUrl, defaultDataDir } from '../../src/node/config.js'
import { tempDir } from '../helpers/swarm.js'
import { whoCanUse } from '../../src/network/network-mode.js'

const dirs: string[] = []
afterEach(async () => { await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) })) })

async function dir (file?: unknown): Promise<string> {
  const d = await tempDir()
  dirs.push(d)
  if (file !== undefined) await writeFile(join(d, 'krill.json'), JSON.stringify(file))
  return d
}

describe('configuration precedence: flags > env > krill.json > defaults', () => {
  it('uses the defaults of DESIGN.md when nothing is set', async () => {
    const c = await resolveConfig({ dataDir: await dir() }, {})
    expect(c.api).toEqual({ host: '127.0.0.1', port: 11435 })
    expect(c.ollama).toBe('http://127.0.0.1:11434')
    expect(c.mdns).toBe(true)
    expect(c.serve).toBe(true)
    expect(c.relay).toBe(false)
    expect(c.listen.some(a => a.includes('/tcp/11434') || a.includes('/tcp/4001'))).toBe(false)
    expect(c.listen.some(a => a.endsWith('/ws'))).toBe(true)
    // AutoNAT v2 on, and the DHT mode follows reachability
    expect(c.autonat).toBe(true)
    expect(c.dhtMode).toBe('auto')
  })

  it('is private and leaves the home router alone unless asked (UPnP only with --upnp / "upnp": true)', async () => {
    const c = await resolveConfig({ dataDir: await dir() }, {})
    expect(c.network).toBe('private')
    expect(c.upnp).toBe(false)
    expect((await resolveConfig({ dataDir: await dir(), upnp: true }, {})).upnp).toBe(true)
    expect((await resolveConfig({ dataDir: await dir({ upnp: true }) }, {})).upnp).toBe(true)
    // --no-upnp over a file that asks for it
    expect((await resolveConfig({ dataDir: await dir({ upnp: true }), upnp: false }, {})).upnp).toBe(false)
    // an invite token comes from --join or KRILL_JOIN, never from krill.json
    expect((await resolveConfig({ dataDir: await dir() }, { KRILL_JOIN: ' krill-invite-v1-abc ' })).join).toBe('krill-invite-v1-abc')
    expect((await resolveConfig({ dataDir: await dir(), join: 'krill-invite-v1-x' }, { KRILL_JOIN: 'krill-invite-v1-y' })).join).toBe('krill-invite-v1-x')
  })

  it('takes autonat and every dhtMode from krill.json, and a flag over the file', async () => {
    const d = await dir({ autonat: false, dhtMode: 'server' })
    expect(await resolveConfig({ dataDir: d }, {})).toMatchObject({ autonat: false, dhtMode: 'server' })
    expect((await resolveConfig({ dataDir: d, autonat: true }, {})).autonat).toBe(true)
    expect((await resolveConfig({ dataDir: await dir({ dhtMode: 'auto' }) }, {})).dhtMode).toBe('auto')
    await expect(resolveConfig({ dataDir: await dir({ dhtMode: 'sometimes' }) }, {})).rejects.toThrow(UsageError)
  })

  it('lets the file override defaults, env override the file and flags override env', async () => {
    const d = await dir({ api: '127.0.0.1:1000', ollama: 'http://127.0.0.1:1', slots: 2, mdns: false })
    const fileOnly = await resolveConfig({ dataDir: d }, {})
    expect(fileOnly.api.port).toBe(1000)
    expect(fileOnly.slots).toBe(2)
    expect(fileOnly.mdns).toBe(false)

    const env = { KRILL_API: '127.0.0.1:2000', OLLAMA_HOST: '127.0.0.1:2', KRILL_BOOTSTRAP: '/ip4/127.0.0.1/tcp/5/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK' }
    const withEnv = await resolveConfig({ dataDir: d }, env)
    expect(withEnv.api.port).toBe(2000)
    expect(withEnv.ollama).toBe('http://127.0.0.1:2')
    expect(withEnv.bootstrap).toHaveLength(1)

    const withFlags = await resolveConfig({ dataDir: d, api: '127.0.0.1:3000', mdns: true }, env)
    expect(withFlags.api.port).toBe(3000)
    expect(withFlags.mdns).toBe(true)
  })

  it('finds the data dir from KRILL_HOME, then XDG_DATA_HOME', () => {
    expect(defaultDataDir({ KRILL_HOME: '/x/k' })).toBe('/x/k')
    expect(defaultDataDir({ XDG_DATA_HOME: '/x/data' })).toBe('/x/data/krill')
    expect(defaultDataDir({ HOME: '/h' })).toMatch(/\.local\/share\/krill$/)
  })

  it('rejects mistakes with a UsageError that says what to do', async () => {
    const d = await dir()
    await expect(resolveConfig({ dataDir: d, listen: ['/ip4/1.2.3.4/tcpx/1'] }, {})).rejects.toThrow(/--listen .* is not a valid multiaddr/)
    await expect(resolveConfig({ dataDir: d, bootstrap: ['/ip4/127.0.0.1/tcp/1'] }, {})).rejects.toThrow(/no \/p2p\/<peer id> part/)
    await expect(resolveConfig({ dataDir: d, api: 'localhost' }, {})).rejects.toBeInstanceOf(UsageError)
    await expect(resolveConfig({ dataDir: await dir({ slots: 'four' }) }, {})).rejects.toThrow(/"slots"/)
  })

  it("refuses an Ollama URL that is krill's own API (OLLAMA_HOST set for clients)", async () => {
    const d = await dir()
    await expect(resolveConfig({ dataDir: d }, { OLLAMA_HOST: '127.0.0.1:11435' })).rejects.toThrow(/krill's own API address/)
    await expect(resolveConfig({ dataDir: d, api: '127.0.0.1:9000' }, { OLLAMA_HOST: 'http://localhost:9000' })).rejects.toThrow(UsageError)
    // the flag fixes it, as the message says
    const fixed = await resolveConfig({ dataDir: d, ollama: 'http://127.0.0.1:11434' }, { OLLAMA_HOST: '127.0.0.1:11435' })
    expect(fixed.ollama).toBe('http://127.0.0.1:11434')
  })

  it('parses API addresses and Ollama URLs the way users write them', () => {
    expect(parseHostPort('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 })
    expect(parseHostPort('[::1]:8080')).toEqual({ host: '::1', port: 8080 })
    expect(parseHostPort('http://127.0.0.1:11435')).toEqual({ host: '127.0.0.1', port: 11435 })
    expect(() => parseHostPort('127.0.0.1:99999')).toThrow(UsageError)
    expect(normalizeOllamaUrl('127.0.0.1')).toBe('http://127.0.0.1:11434')
    expect(normalizeOllamaUrl('http://gpu-box:8000/')).toBe('http://gpu-box:8000')
  })
})

describe('the public network (--public, --rendezvous)', () => {
  const peer = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7'

  it('is private unless asked; public serves only with --serve and maps ports with UPnP', async () => {
    const d = await dir()
    expect(await resolveConfig({ dataDir: d }, {})).toMatchObject({ network: 'private', rendezvous: [] })
    expect(await resolveConfig({ dataDir: d, public: true }, {})).toMatchObject({ network: 'public', serve: false, upnp: true, rendezvous: [] })
    expect((await resolveConfig({ dataDir: d, public: true, serve: true }, {})).serve).toBe(true)
    expect((await resolveConfig({ dataDir: await dir({ public: true }) }, {})).network).toBe('public')
  })

  it('takes rendezvous peers from the flag over KRILL_RENDEZVOUS over krill.json', async () => {
    const other = peer.replace('/tcp/4001', '/tcp/4002')
    const d = await dir({ public: true, rendezvous: [other] })
    expect((await resolveConfig({ dataDir: d }, {})).rendezvous).toEqual([other])
    expect((await resolveConfig({ dataDir: d }, { KRILL_RENDEZVOUS: `${peer}, ${other}` })).rendezvous).toEqual([peer, other])
    expect((await resolveConfig({ dataDir: d, rendezvous: [peer] }, { KRILL_RENDEZVOUS: other })).rendezvous).toEqual([peer])
  })

  it('refuses contradictions and addresses without a peer id, with one clear line', async () => {
    const d = await dir()
    await expect(resolveConfig({ dataDir: d, public: true, swarmKey: '/tmp/x.key' }, {})).rejects.toThrow(/--public and --swarm-key/)
    await expect(resolveConfig({ dataDir: d, rendezvous: [peer] }, {})).rejects.toThrow(/--rendezvous only means something on the public network/)
    await expect(resolveConfig({ dataDir: d, public: true, rendezvous: ['/ip4/127.0.0.1/tcp/4001'] }, {})).rejects.toThrow(UsageError)
    await expect(resolveConfig({ dataDir: d, public: true, rendezvous: ['not a multiaddr'] }, {})).rejects.toThrow(UsageError)
  })

  it('says in the banner who can use the Ollama of a public node, serving or not', () => {
    expect(whoCanUse('public', true)).toMatch(/anyone on the public krill network.*prompts in clear/)
    expect(whoCanUse('public', false)).toMatch(/serves nobody on the public network.*--serve/)
    expect(whoCanUse('private', false)).toMatch(/--no-serve/)
  })
})
