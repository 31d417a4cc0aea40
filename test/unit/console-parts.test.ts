import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { RequestLog, tokensPerSecond } from '../../src/api/request-log.js'
import { uiAssetsDir } from '../../src/ui/index.js'

const ROOT = resolve(import.meta.dirname, '../..')

describe('the request log', () => {
  it('keeps the last N finished requests, newest first, and tells local from remote', () => {
    let now = 1000
    const log = new RequestLog({ selfId: 'SELF', capacity: 3, now: () => now })
    for (let i = 0; i < 5; i++) {
      now += 10
      log.record({ model: `m${i}`, peerId: i === 4 ? 'SELF' : 'PEER', tokens: 11, durationMs: 1100, outcome: 'done', ttftMs: 100 })
    }
    const recent = log.recent()
    expect(recent.map(r => r.model)).toEqual(['m4', 'm3', 'm2'])
    expect(recent[0]).toEqual({ at: 1050, model: 'm4', peerId: 'SELF', local: true, tokens: 11, durationMs: 1100, ttftMs: 100, tokensPerSecond: 10, outcome: 'done' })
    expect(recent[1].local).toBe(false)
  })

  it('measures speed after the first token, and says null when it cannot', () => {
    expect(tokensPerSecond(11, 1100, 100)).toBe(10)
    expect(tokensPerSecond(10, 2000, null)).toBe(5)
    expect(tokensPerSecond(0, 500, null)).toBeNull()
    expect(tokensPerSecond(1, 0, null)).toBeNull()
    const log = new RequestLog({ selfId: 'SELF' })
    expect(log.record({ model: 'm', peerId: '', tokens: 0, durationMs: 5, outcome: 'failed' })).toMatchObject({ ttftMs: null, tokensPerSecond: null, local: false })
  })
})

describe('the console files', () => {
  it('are found from the source tree, from the compiled tree and from an installed package layout', () => {
    const assets = join(ROOT, 'src', 'ui', 'assets')
    expect(uiAssetsDir()).toBe(assets)
    expect(uiAssetsDir(join(ROOT, 'src', 'ui'))).toBe(assets)
    expect(uiAssetsDir(join(ROOT, 'dist', 'ui'))).toBe(assets)
    expect(uiAssetsDir(join(ROOT, 'dist-test', 'src', 'ui'))).toBe(assets)
    expect(() => uiAssetsDir('/')).toThrow(/console's files are missing/)
  })

  it('ship in the npm package', async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 })
    const files: string[] = JSON.parse(stdout)[0].files.map((f: { path: string }) => f.path)
    for (const name of ['index.html', 'app.js', 'api.js', 'chat.js', 'graph.js', 'style.css', 'krill.svg']) {
      expect(existsSync(join(ROOT, 'src', 'ui', 'assets', name)), name).toBe(true)
      expect(files, name).toContain(`src/ui/assets/${name}`)
    }
    expect(files).toContain('dist/ui/index.js')
  }, 60_000)
})
