import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { runKrill, spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
import { tempDir } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const base = ['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--ollama', 'http://127.0.0.1:9']
const dirs: string[] = []
const daemons: DaemonProcess[] = []

async function dataDir (): Promise<string> {
  const dir = await tempDir()
  dirs.push(dir)
  return dir
}

afterEach(async () => {
  await Promise.all(daemons.splice(0).map(async d => await d.stop('SIGKILL')))
})

afterAll(async () => {
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
})

describe('krill daemon (real processes)', () => {
  it('prints the ready line, joins a peer through --bootstrap and stops cleanly on SIGTERM', async () => {
    const a = await spawnDaemon([...base, '--data-dir', await dataDir()])
    daemons.push(a)
    expect(a.ready.peerId).toMatch(/^12D3KooW/)
    expect(a.ready.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(a.ready.addrs.length).toBeGreaterThan(0)
    for (const addr of a.ready.addrs) expect(addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${a.ready.peerId}$`))

    const b = await spawnDaemon([...base, '--data-dir', await dataDir(), '--bootstrap', a.ready.addrs[0]])
    daemons.push(b)
    await waitFor(() => b.events.some(e => e.event === 'peer:joined' && e.peerId === a.ready.peerId), 'b to report a as joined')
    const status = await (await fetch(`${a.ready.api}/krill/v1/status`)).json()
    expect(status.peerId).toBe(a.ready.peerId)
    expect(status.connections).toBeGreaterThanOrEqual(1)

    expect(await b.stop('SIGTERM')).toBe(0)
    expect(b.stderr()).toMatch(/shutting down/)
    expect(await a.stop('SIGINT')).toBe(0)
  })

  it('logs through libp2p\'s ComponentLogger: DEBUG=krill:*,libp2p:* shows both, KRILL_LOG alone the human lines', async () => {
    const debug = await spawnDaemon([...base, '--data-dir', await dataDir()], { env: { DEBUG: 'krill:*,libp2p:*' } })
    daemons.push(debug)
    await waitFor(() => /krill:discovery/.test(debug.stderr()), 'a krill line under DEBUG')
    expect(debug.stderr()).toMatch(/krill:daemon info peer id 12D3KooW/)
    expect(debug.stderr()).toMatch(/libp2p:[a-z-]+/)
    expect(await debug.stop('SIGTERM')).toBe(0)

    const human = await spawnDaemon([...base, '--data-dir', await dataDir()], { env: { DEBUG: '' } })
    daemons.push(human)
    await waitFor(() => /discovery: no Ollama/.test(human.stderr()), 'the human-readable Ollama line')
    expect(human.stderr()).toMatch(/^\S+ info  daemon: peer id 12D3KooW/m)
    expect(human.stderr()).not.toMatch(/libp2p:/)
    expect(await human.stop('SIGTERM')).toBe(0)
  })

  it('keeps its identity across restarts, with the key file readable by its owner only', async () => {
    const dir = await dataDir()
    const first = await spawnDaemon([...base, '--data-dir', dir])
    expect(await first.stop()).toBe(0)
    const key = await stat(join(dir, 'identity.key'))
    expect(key.mode & 0o777).toBe(0o600)
    const second = await spawnDaemon([...base, '--data-dir', dir])
    daemons.push(second)
    expect(second.ready.peerId).toBe(first.ready.peerId)

    const id = await runKrill(['id', '--json', '--data-dir', dir, '--api', second.ready.api])
    expect(id.code).toBe(0)
    const printed = JSON.parse(id.stdout)
    expect(printed.peerId).toBe(first.ready.peerId)
    expect(printed.running).toBe(true)
    expect(printed.addrs).toEqual(second.ready.addrs)
  })
})

describe('configuration mistakes get one clear line and the right exit code', () => {
  it('bad multiaddr → exit 2', async () => {
    const r = await runKrill(['daemon', ...base, '--data-dir', await dataDir(), '--bootstrap', '/ip4/not-an-ip/tcp/1'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--bootstrap "\/ip4\/not-an-ip\/tcp\/1" is not a valid multiaddr/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('bad JSON in krill.json → exit 2 naming the file', async () => {
    const dir = await dataDir()
    await writeFile(join(dir, 'krill.json'), '{ "slots": 4, ')
    const r = await runKrill(['daemon', ...base, '--data-dir', dir])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${join(dir, 'krill.json')} is not valid JSON`)
  })

  it('an unknown key in krill.json → exit 2 naming the key', async () => {
    const dir = await dataDir()
    await writeFile(join(dir, 'krill.json'), JSON.stringify({ slotz: 4 }))
    const r = await runKrill(['daemon', ...base, '--data-dir', dir])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/krill\.json.*slotz/)
  })

  it('a corrupt identity key → exit 1 with what to do', async () => {
    const dir = await dataDir()
    await writeFile(join(dir, 'identity.key'), 'garbage', { mode: 0o600 })
    const r = await runKrill(['daemon', ...base, '--data-dir', dir])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/identity key .* is corrupt/)
    expect(await readFile(join(dir, 'identity.key'), 'utf8')).toBe('garbage')
  })

  it('a port in use → exit 1', async () => {
    const blocker = createServer()
    await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      const r = await runKrill(['daemon', '--no-mdns', '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--api', '127.0.0.1:0', '--data-dir', await dataDir()])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/already in use/)
      const api = await runKrill(['daemon', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${port}`, '--data-dir', await dataDir()])
      expect(api.code).toBe(1)
      expect(api.stderr).toMatch(/API address 127\.0\.0\.1:\d+ is already in use/)
    } finally {
      blocker.close()
    }
  })

  it('an unknown flag → exit 2', async () => {
    const r = await runKrill(['daemon', '--frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown option/)
  })
})
