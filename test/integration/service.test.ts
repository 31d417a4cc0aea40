import { spawnSync } from 'node:child_process'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { KRILL_BIN, runKrill, spawnDaemon } from '../helpers/cli.js'
import { tempDir } from '../helpers/swarm.js'

const dirs: string[] = []
async function dir (): Promise<string> {
  const d = await tempDir('krill-service-')
  dirs.push(d)
  return d
}
afterAll(async () => { await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) })) })

/** systemd's ExecStart words: "a" "b c" → ['a', 'b c'] */
function execStartWords (unit: string): string[] {
  const line = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? ''
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map(m => m[1].replace(/\\(.)/g, '$1'))
}

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0

describe('krill service (systemd user unit, launchd agent)', () => {
  it('install --dir writes a unit that starts `krill daemon` with the given flags, logs to the journal, and verifies', async () => {
    const out = await dir()
    const data = await dir()
    const r = await runKrill(['service', 'install', '--dir', out, '--platform', 'linux', '--json', '--', '--data-dir', `${data}/with space`, '--no-mdns'])
    expect(r.code).toBe(0)
    const answer = JSON.parse(r.stdout)
    expect(answer).toEqual({ platform: 'linux', path: join(out, 'krill.service'), started: false, logs: 'journalctl --user -u krill -f' })
    const unit = await readFile(join(out, 'krill.service'), 'utf8')
    expect(execStartWords(unit)).toEqual([KRILL_BIN, 'daemon', '--data-dir', `${data}/with space`, '--no-mdns'])
    expect(unit).toMatch(/^Restart=on-failure$/m)
    expect(unit).toMatch(/^StandardError=journal$/m)
    expect(unit).toMatch(/^WantedBy=default\.target$/m)
    expect(unit).toMatch(/^Environment="PATH=/m)

    if (hasSystemdAnalyze) {
      const verify = spawnSync('systemd-analyze', ['verify', join(out, 'krill.service')], { encoding: 'utf8' })
      expect(verify.stderr).not.toMatch(/krill\.service:/)
      expect(verify.status).toBe(0)
      // the check can fail: a relative ExecStart is refused
      await writeFile(join(out, 'broken.service'), unit.replace(/^ExecStart="[^"]*"/m, 'ExecStart="bin/krill"'))
      const broken = spawnSync('systemd-analyze', ['verify', join(out, 'broken.service')], { encoding: 'utf8' })
      expect(broken.status).not.toBe(0)
    }

    // the unit's command really starts a daemon (with test ports added)
    const [launcher, ...args] = execStartWords(unit)
    expect(launcher).toBe(KRILL_BIN)
    const daemon = await spawnDaemon([...args.slice(1), '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--ollama', 'http://127.0.0.1:9'])
    try {
      expect(daemon.ready.peerId).toMatch(/^12D3KooW/)
      expect((await stat(join(data, 'with space', 'identity.key'))).isFile()).toBe(true)
    } finally {
      expect(await daemon.stop()).toBe(0)
    }

    const status = JSON.parse((await runKrill(['service', 'status', '--dir', out, '--platform', 'linux', '--json'])).stdout)
    expect(status).toMatchObject({ installed: true, path: join(out, 'krill.service') })
    const removed = await runKrill(['service', 'uninstall', '--dir', out, '--platform', 'linux'])
    expect(removed.code).toBe(0)
    expect(removed.stdout).toBe(`removed ${join(out, 'krill.service')}\n`)
    await expect(stat(join(out, 'krill.service'))).rejects.toThrow()
    expect(JSON.parse((await runKrill(['service', 'status', '--dir', out, '--platform', 'linux', '--json'])).stdout).installed).toBe(false)
  })

  it('--dry-run prints the unit and writes nothing', async () => {
    const out = await dir()
    const r = await runKrill(['service', 'install', '--dry-run', '--dir', out, '--platform', 'linux'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^\[Unit\]\n/)
    expect(execStartWords(r.stdout)).toEqual([KRILL_BIN, 'daemon'])
    await expect(stat(join(out, 'krill.service'))).rejects.toThrow()
  })

  it('macOS: a launchd agent that runs at load, restarts on failure and logs to a file', async () => {
    const out = await dir()
    const r = await runKrill(['service', 'install', '--dir', out, '--platform', 'darwin', '--', '--relay'])
    expect(r.code).toBe(0)
    const plist = await readFile(join(out, 'network.krill.daemon.plist'), 'utf8')
    expect(plist).toMatch(/<key>Label<\/key>\s*<string>network\.krill\.daemon<\/string>/)
    const args = [...(/<key>ProgramArguments<\/key>\s*<array>([\s\S]*?)<\/array>/.exec(plist)?.[1] ?? '').matchAll(/<string>([^<]*)<\/string>/g)].map(m => m[1])
    expect(args).toEqual([KRILL_BIN, 'daemon', '--relay'])
    expect(plist).toMatch(/<key>RunAtLoad<\/key>\s*<true\/>/)
    expect(plist).toMatch(/<key>SuccessfulExit<\/key>\s*<false\/>/)
    expect(plist).toMatch(/<key>StandardErrorPath<\/key>\s*<string>[^<]*Library\/Logs\/krill\/daemon\.log<\/string>/)
    // well-formed XML: every opened element closed
    const opened = [...plist.matchAll(/<(dict|array|plist)\b[^>]*>/g)].length
    const closed = [...plist.matchAll(/<\/(dict|array|plist)>/g)].length
    expect(opened).toBe(closed)
    const xmllint = spawnSync('xmllint', ['--noout', join(out, 'network.krill.daemon.plist')])
    if (xmllint.error == null) expect(xmllint.status).toBe(0)
  })

  it('an unsupported platform is a usage error', async () => {
    const r = await runKrill(['service', 'status', '--platform', 'win32', '--json'])
    expect(r.code).toBe(2)
    expect(JSON.parse(r.stderr).error.code).toBe('unsupported_platform')
  })
})
