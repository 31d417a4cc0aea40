/**
 * Private by default, invite to grow (real daemon processes, loopback): a fresh
 * node is its own swarm and refuses everyone; `krill invite` hands out a token,
 * `krill daemon --join` uses it (no --bootstrap), remembers it across restarts,
 * and chats; bad tokens stop the daemon with one line and exit 2.
 */
import { spawn } from 'node:child_process'
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { KRILL_BIN, runKrill, spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
import { tempDir } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'
const base = ['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0']
const dirs: string[] = []
const daemons: DaemonProcess[] = []
let standin: OllamaStandin

async function dataDir (): Promise<string> {
  const dir = await tempDir('krill-invite-')
  dirs.push(dir)
  return dir
}

/** a daemon of the product default: nothing says which swarm */
async function fresh (args: string[], dir?: string): Promise<DaemonProcess> {
  const d = await spawnDaemon([...base, '--data-dir', dir ?? await dataDir(), ...args], { ownSwarm: true })
  daemons.push(d)
  return d
}

async function invite (d: DaemonProcess, extra: string[] = []): Promise<{ token: string, expires: number | null }> {
  const run = await runKrill(['invite', '--json', '--api', d.ready.api.replace('http://', ''), ...extra])
  expect(run.code, run.stderr).toBe(0)
  return JSON.parse(run.stdout)
}

beforeAll(async () => {
  standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
})

afterEach(async () => {
  await Promise.all(daemons.splice(0).map(async d => await d.stop('SIGKILL')))
})

afterAll(async () => {
  await standin?.stop()
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
})

describe('private by default', () => {
  it('makes a fresh node its own swarm: its key in the data dir, "network":"private", and an uninvited peer cannot connect', async () => {
    const dir = await dataDir()
    const a = await fresh(['--ollama', standin.url], dir)
    expect((a.ready as any).network).toBe('private')
    const key = await stat(join(dir, 'swarm.key'))
    expect(key.mode & 0o777).toBe(0o600)
    expect(await readFile(join(dir, 'swarm.key'), 'utf8')).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}/)

    // another fresh node knows a's address but not its key
    const stranger = await fresh(['--no-serve', '--bootstrap', a.ready.addrs[0]])
    const dial = await runKrill(['connect', a.ready.addrs[0], '--json', '--api', stranger.ready.api.replace('http://', '')])
    expect(dial.code).not.toBe(0)
    const peers = await (await fetch(`${a.ready.api}/krill/v1/peers`)).json() as { peers?: unknown[] } | unknown[]
    const list = Array.isArray(peers) ? peers : (peers.peers ?? [])
    expect(list).toHaveLength(0)
    expect(a.events.some(e => e.event === 'peer:joined')).toBe(false)
    // and the stranger never learned a's model
    const models = await (await fetch(`${stranger.ready.api}/v1/models`)).json() as { data: unknown[] }
    expect(models.data).toHaveLength(0)
  })

  it('joins by invite token without --bootstrap, chats, and needs nothing on the next start', async () => {
    const a = await fresh(['--ollama', standin.url])
    const { token, expires } = await invite(a)
    expect(token).toMatch(/^krill-invite-v1-[A-Za-z0-9_-]+$/)
    expect(expires).toBeNull()

    const dirB = await dataDir()
    const b = await fresh(['--no-serve', '--join', token], dirB)
    await waitFor(() => b.events.some(e => e.event === 'model:appeared' && e.model === MODEL && e.peerId === a.ready.peerId), 'b to list a\'s model')
    const chat = await runKrill(['chat', '-m', MODEL, 'hi', '--api', b.ready.api.replace('http://', '')])
    expect(chat.code, chat.stderr).toBe(0)
    expect(chat.stdout).toContain(DEFAULT_TOKENS.join(''))
    const status = async (d: DaemonProcess): Promise<any> => JSON.parse((await runKrill(['status', '--json', '--api', d.ready.api.replace('http://', '')])).stdout)
    expect((await status(a)).network).toEqual({ mode: 'private', swarm: 'own' })
    expect((await status(b)).network).toEqual({ mode: 'private', swarm: 'joined' })
    const remembered = JSON.parse(await readFile(join(dirB, 'network.json'), 'utf8'))
    expect(remembered.joined.issuer).toBe(a.ready.peerId)

    // next start: no token, no --bootstrap, and b still finds a
    expect(await b.stop()).toBe(0)
    daemons.splice(daemons.indexOf(b), 1)
    const again = await fresh(['--no-serve'], dirB)
    await waitFor(() => again.events.some(e => e.event === 'peer:joined' && e.peerId === a.ready.peerId), 'b to rejoin a after a restart')
  })

  it('refuses wrong, foreign and expired tokens with one line and exit 2 (one JSON line with --json)', { timeout: 180_000 }, async () => {
    const a = await fresh(['--no-serve'])
    const { token, expires } = await invite(a, ['--expires', '1s'])
    expect(expires).toBeGreaterThan(Date.now() - 5_000)
    await new Promise(resolve => setTimeout(resolve, 1_500))
    const cases: Array<[string, RegExp]> = [
      [token, /^krill: this invite expired at .* ago\); ask for a new one with `krill invite`\n$/],
      ['not-a-token', /^krill: not a krill invite token .*\n$/],
      [token.replace('-v1-', '-v7-'), /^krill: this is a version 7 invite token; this krill reads version 1 only.*\n$/],
      [token.slice(0, 60), /^krill: the invite token is damaged or cut short.*\n$/]
    ]
    for (const [bad, message] of cases) {
      const dir = await dataDir()
      const run = await runKrill(['daemon', ...base, '--no-serve', '--data-dir', dir, '--join', bad])
      expect(run.code, run.stderr).toBe(2)
      expect(run.stderr).toMatch(message)
      // nothing was written: a bad token changes no data dir
      await expect(stat(join(dir, 'swarm.key'))).rejects.toThrow(/ENOENT/)
    }
    const json = await runKrill(['daemon', ...base, '--no-serve', '--json', '--data-dir', await dataDir()], { env: { KRILL_JOIN: token } })
    expect(json.code).toBe(2)
    const lines = json.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(JSON.parse(lines[0]).error).toMatchObject({ code: 'invite_expired' })
    expect(json.stdout).toBe('')
  })

  it('says on start-up who can use this node\'s Ollama and what to do next (human mode)', async () => {
    const dir = await dataDir()
    const child = spawn(process.execPath, [KRILL_BIN, 'daemon', ...base, '--data-dir', dir, '--ollama', standin.url], { env: { ...process.env, KRILL_LOG: 'warn' } })
    let stderr = ''
    let stdout = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    try {
      await waitFor(() => /next steps:/.test(stderr) && /status/.test(stderr), 'the banner')
      const api = /api +(http:\/\/\S+)/.exec(stdout)?.[1] as string
      expect(stdout).toMatch(/network +private/)
      expect(stderr).toContain(`krill: only members of this private swarm (nodes you invite with \`krill invite\`) can use this node's Ollama (${standin.url})`)
      expect(stderr).toContain(`point OpenAI clients at ${api}/v1`)
      expect(stderr).toContain(`krill invite --api ${api.replace('http://', '')}`)
      expect(stderr).toContain(`krill status --api ${api.replace('http://', '')}`)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
