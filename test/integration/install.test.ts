/**
 * The package as people get it: `npm pack`, installed globally into a temporary
 * prefix (the registry supplies the dependencies, the pinned Node among them),
 * then `krill` from that prefix's bin with only the system's PATH — whose Node may
 * be older than 22 — and `npx <tarball> daemon`. Slow (an install): minutes.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/swarm.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PKG = JSON.parse(spawnSync('cat', [join(ROOT, 'package.json')], { encoding: 'utf8' }).stdout) as { name: string, version: string }
/** the system's directories only: `node` there is whatever the machine has (here v20) */
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin'
const INSTALL_MS = 15 * 60_000

function npm (args: string[], cwd: string): { status: number | null, stdout: string, stderr: string } {
  // npm itself under the test's Node: the machine's npm may want a newer one
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: INSTALL_MS, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } })
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') }
}

/** runs `cmd args` and resolves with the daemon's ready line (it keeps running) */
async function readyLine (cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ReturnType<typeof spawn>, ready: { peerId: string, api: string } }> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const lines = createInterface({ input: child.stdout! })
  const ready = await new Promise<{ peerId: string, api: string }>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ready line; stderr:\n${stderr}`)) }, INSTALL_MS)
    lines.on('line', line => {
      try {
        const event = JSON.parse(line)
        if (event.event === 'ready') { clearTimeout(timer); resolve(event) }
      } catch {}
    })
    child.on('exit', code => { clearTimeout(timer); reject(new Error(`exited ${code} before ready; stderr:\n${stderr}`)) })
  })
  return { child, ready }
}

async function runIn (cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stderr }
}

describe.skipIf(process.env.KRILL_SKIP_INSTALL_TEST === '1')('the packed package, installed', () => {
  let dir: string
  let tarball: string

  beforeAll(async () => {
    dir = await tempDir('krill-install-')
    // dist/ is what `npm test` (pretest) just built; --ignore-scripts keeps pack from rebuilding it
    const packed = npm(['pack', '--ignore-scripts', '--pack-destination', dir, '--json'], ROOT)
    expect(packed.status, packed.stderr).toBe(0)
    tarball = join(dir, JSON.parse(packed.stdout)[0].filename)
  }, INSTALL_MS)

  afterAll(async () => {
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('is named ours, and ships the launcher, the build and the docs', async () => {
    expect(PKG.name).toBe('krill-p2p')
    const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).stdout.split('\n')
    for (const f of ['package/bin/krill', 'package/dist/cli/main.js', 'package/dist/daemon/daemon.js', 'package/docs/cli.md', 'package/docs/http-api.md', 'package/README.md']) expect(list).toContain(f)
    // no tests and no TypeScript sources; the web console's static files are the one part of src/ that ships
    expect(list.filter(f => f.startsWith('package/test/') || f.startsWith('package/dist-test/') || (f.startsWith('package/src/') && !f.startsWith('package/src/ui/assets/')))).toEqual([])
    expect(list).toContain('package/src/ui/assets/index.html')
  })

  it('npm install -g gives a working `krill` (also with an older system Node) that runs a daemon', async () => {
    const prefix = join(dir, 'prefix')
    const installed = npm(['install', '-g', '--prefix', prefix, tarball], dir)
    expect(installed.status, installed.stderr).toBe(0)
    const krill = join(prefix, 'bin', 'krill')
    const env = { ...process.env, PATH: SYSTEM_PATH, KRILL_LOG: 'warn' }
    const version = spawnSync(krill, ['--version'], { env, encoding: 'utf8' })
    expect(version.stderr).toBe('')
    expect(version.stdout.trim()).toBe(PKG.version)
    // the pinned Node came along, inside the installed package
    expect(await readdir(join(prefix, 'lib', 'node_modules', PKG.name, 'node_modules', 'node', 'bin'))).toContain('node')

    const data = join(dir, 'data')
    const { child, ready } = await readyLine(krill, ['daemon', '--json', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--ollama', 'http://127.0.0.1:9', '--data-dir', data], env)
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      const status = spawnSync(krill, ['status', '--json', '--api', ready.api], { env, encoding: 'utf8' })
      expect(status.status, status.stderr).toBe(0)
      expect(JSON.parse(status.stdout).peerId).toBe(ready.peerId)
      // not spawnSync: this process must stay free to reap the daemon when it exits
      const stop = await runIn(krill, ['stop', '--data-dir', data], env)
      expect(stop.code, stop.stderr).toBe(0)
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
  }, INSTALL_MS)

  it('npx <tarball> daemon runs', async () => {
    const data = join(dir, 'npx-data')
    const env = { ...process.env, KRILL_LOG: 'warn', npm_config_yes: 'true', npm_config_audit: 'false', npm_config_fund: 'false' }
    const { child, ready } = await readyLine('npx', ['--package', tarball, '--', 'krill', 'daemon', '--json', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--ollama', 'http://127.0.0.1:9', '--data-dir', data], env)
    try {
      expect(ready.peerId).toMatch(/^12D3KooW/)
      const res = await fetch(`${ready.api}/krill/v1/status`)
      expect((await res.json()).peerId).toBe(ready.peerId)
      await fetch(`${ready.api}/krill/v1/shutdown`, { method: 'POST' })
      await new Promise(resolve => child.on('exit', resolve))
    } finally {
      child.kill('SIGKILL')
    }
  }, INSTALL_MS)
})
