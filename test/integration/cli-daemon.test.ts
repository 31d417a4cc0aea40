import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { spawn, spawnSync } from 'node:child_process'
import { KRILL_BIN, runKrill, spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
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

describe('which node: id, stop and a second daemon by data dir', () => {
  it('id --data-dir prints that node: live when its daemon runs, from the data dir (and says so) when not', async () => {
    const dirA = await dataDir()
    const dirB = await dataDir()
    const a = await spawnDaemon([...base, '--data-dir', dirA])
    daemons.push(a)
    const b = await spawnDaemon([...base, '--data-dir', dirB])
    daemons.push(b)
    // each data dir names its own live node, whatever the default API is
    for (const [dir, d] of [[dirA, a], [dirB, b]] as const) {
      const r = await runKrill(['id', '--json', '--data-dir', dir], { env: { KRILL_API: '' } })
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ peerId: d.ready.peerId, addrs: d.ready.addrs, running: true, api: d.ready.api, dataDir: dir })
      const table = await runKrill(['id', '--data-dir', dir])
      expect(table.stdout).toContain(`peer id   ${d.ready.peerId}`)
      expect(table.stdout).toContain(`daemon    running, API ${d.ready.api}`)
    }
    // --api alone: the daemon asked
    const asked = JSON.parse((await runKrill(['id', '--json', '--api', b.ready.api])).stdout)
    expect(asked).toMatchObject({ peerId: b.ready.peerId, running: true, api: b.ready.api })

    // no daemon for B any more: B's identity from its data dir, configured addresses, and it says so;
    // the daemon that answers at --api is another node, and that is said too
    expect(await b.stop()).toBe(0)
    const offline = await runKrill(['id', '--json', '--data-dir', dirB, '--api', a.ready.api])
    expect(offline.code).toBe(0)
    const printed = JSON.parse(offline.stdout)
    expect(printed).toMatchObject({ peerId: b.ready.peerId, running: false, dataDir: dirB, api: null, otherDaemon: { api: a.ready.api, peerId: a.ready.peerId } })
    expect(printed.addrs.length).toBeGreaterThan(0)
    for (const addr of printed.addrs) expect(addr).toMatch(new RegExp(`/p2p/${b.ready.peerId}$`))
    const text = await runKrill(['id', '--data-dir', dirB, '--api', a.ready.api])
    expect(text.stdout).toContain(`peer id   ${b.ready.peerId}`)
    expect(text.stdout).toContain('daemon    not running: the addresses are the configured listen addresses')
    expect(text.stdout).toContain(`(the daemon at ${a.ready.api} is another node, ${a.ready.peerId})`)
  })

  it('a second daemon on the same data dir says which daemon holds it (exit 1, JSON with --json)', async () => {
    const dir = await dataDir()
    const first = await spawnDaemon([...base, '--data-dir', dir])
    daemons.push(first)
    const run = JSON.parse(await readFile(join(dir, 'daemon.json'), 'utf8'))
    expect(run).toMatchObject({ pid: first.child.pid, peerId: first.ready.peerId, api: first.ready.api })
    const second = await runKrill(['daemon', ...base, '--data-dir', dir])
    expect(second.code).toBe(1)
    expect(second.stderr).toContain(`another krill daemon holds the data dir ${dir} (pid ${first.child.pid}, API ${first.ready.api}, peer ${first.ready.peerId})`)
    expect(second.stderr).toContain(`krill stop --data-dir ${dir}`)
    const json = await runKrill(['daemon', '--json', ...base, '--data-dir', dir])
    expect(json.code).toBe(1)
    expect(json.stdout).toBe('')
    expect(JSON.parse(json.stderr.trim().split('\n').at(-1) ?? '')).toMatchObject({ error: { code: 'data_dir_in_use' } })
    // the first one is unharmed
    expect((await fetch(`${first.ready.api}/krill/v1/status`)).status).toBe(200)
  })

  it('a run file left by a killed daemon does not block the next one', async () => {
    const dir = await dataDir()
    const first = await spawnDaemon([...base, '--data-dir', dir])
    await first.stop('SIGKILL')
    const second = await spawnDaemon([...base, '--data-dir', dir])
    daemons.push(second)
    expect(second.ready.peerId).toBe(first.ready.peerId)
  })

  it('krill stop stops the daemon cleanly (exit 0) and waits until it is gone', async () => {
    const dir = await dataDir()
    const d = await spawnDaemon([...base, '--data-dir', dir])
    daemons.push(d)
    const exited = new Promise<number | null>(resolve => d.child.on('exit', code => resolve(code)))
    const r = await runKrill(['stop', '--json', '--data-dir', dir])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ stopped: true, peerId: d.ready.peerId, api: d.ready.api })
    // gone by the time stop returned
    expect(d.child.exitCode ?? d.child.signalCode).not.toBeNull()
    expect(await exited).toBe(0)
    expect(d.events.some(e => e.event === 'stopping')).toBe(true)
    await expect(stat(join(dir, 'daemon.json'))).rejects.toThrow()
    // nothing left to stop
    const again = await runKrill(['stop', '--data-dir', dir])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`no daemon is running for ${dir}`)

    // by API address too
    const e = await spawnDaemon([...base, '--data-dir', await dataDir()])
    daemons.push(e)
    const byApi = await runKrill(['stop', '--api', e.ready.api])
    expect(byApi.code).toBe(0)
    expect(byApi.stdout).toBe(`stopped ${e.ready.peerId} (API ${e.ready.api})\n`)
    expect(await e.stop()).toBe(0)
  })
})

describe('Ctrl-C is exit 130 however krill was started', () => {
  it('through the sh launcher, under the test\'s Node, and re-run by an older Node', async () => {
    const d = await spawnDaemon([...base, '--data-dir', await dataDir()])
    daemons.push(d)
    const oldNode = spawnSync('/usr/bin/node', ['--version'], { encoding: 'utf8' })
    const starts: Array<{ what: string, cmd: string, args: string[] }> = [
      { what: 'sh launcher', cmd: KRILL_BIN, args: [] },
      { what: 'node bin/krill', cmd: process.execPath, args: [KRILL_BIN] }
    ]
    if (oldNode.status === 0 && Number(oldNode.stdout.slice(1).split('.')[0]) < 22) starts.push({ what: `Node ${oldNode.stdout.trim()}`, cmd: '/usr/bin/node', args: [KRILL_BIN] })
    for (const start of starts) {
      for (const how of ['process group', 'process'] as const) {
        // detached: its own process group, so a signal to the group is what a terminal's Ctrl-C is
        const child = spawn(start.cmd, [...start.args, 'peers', '--watch', '--api', d.ready.api], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
        let out = ''
        child.stdout.on('data', (c: Buffer) => { out += c.toString() })
        const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
        try {
          await waitFor(() => out.includes('# krill peers at'), `${start.what}: the first frame`, 20_000)
          if (how === 'process group') process.kill(-(child.pid ?? 0), 'SIGINT')
          else child.kill('SIGINT')
          expect(await exited, `${start.what}, SIGINT to the ${how}`).toBe(130)
        } finally {
          try { process.kill(-(child.pid ?? 0), 'SIGKILL') } catch {}
        }
      }
    }
  })
})
