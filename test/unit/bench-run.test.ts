/**
 * The benchmark harness end to end: `npm run bench -- --quick --json --only ttft`
 * as a real process (the build the bench runs from, dist-test/, comes from
 * `npm run build:test`, which `npm test` runs first). Only the shape of the report is
 * checked, never a timing: performance targets live in the bench output alone.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const RUN = fileURLToPath(new URL('../../dist-test/test/bench/run.js', import.meta.url))

async function bench (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  expect(existsSync(RUN), `${RUN} is missing: run \`npm run build:test\` first`).toBe(true)
  const child = spawn(process.execPath, ['--expose-gc', RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KRILL_LOG: 'error' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // generous: on a loaded machine the daemons alone take tens of seconds to start
  const timer = setTimeout(() => child.kill('SIGKILL'), 110_000)
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

describe('npm run bench', () => {
  it('runs one quick section and prints a JSON report', async () => {
    const { code, stdout, stderr } = await bench(['--quick', '--json', '--only', 'ttft'])
    expect(code, stderr).toBe(0)
    const report = JSON.parse(stdout)
    expect(report.options).toEqual({ quick: true, sections: ['ttft'] })
    expect(report.machine).toMatchObject({ cores: expect.any(Number), node: process.version, krill: expect.any(String) })
    expect(report.sections).toHaveLength(1)
    const [section] = report.sections
    expect(section.error).toBeUndefined()
    // per hop and the provider's own API, warm, 300 ms apart and on a fresh HTTP connection
    expect(section.figures.map((f: { id: string }) => f.id)).toEqual([
      'ttft.http', 'ttft.fetch', 'ttft.sse', 'ttft.provider.http', 'ttft.provider.fetch', 'ttft.protocol',
      'ttft.spaced.http', 'ttft.spaced.fetch', 'ttft.spaced.provider.http', 'ttft.spaced.provider.fetch', 'ttft.spaced.protocol',
      'ttft.cold.http', 'ttft.cold.fetch', 'ttft.cold.provider.http', 'ttft.cold.provider.fetch',
      // CPU per request (load-independent)
      'cpu.hop', 'cpu.hop.consumer', 'cpu.hop.provider', 'cpu.own'
    ])
    // the quick run says it is one
    expect(section.notes.join(' ')).toMatch(/QUICK RUN/)
    for (const f of section.figures) {
      expect(f.krill.n).toBeGreaterThan(0)
      expect(Number.isFinite(f.krill.median)).toBe(true)
      expect(Number.isFinite(f.baseline.p99)).toBe(true)
      expect(f.delta.kind).toBe('added')
    }
    // everything it started is gone: no daemon or stand-in outlives the run
    expect(stderr).not.toMatch(/cleanup of .* failed/)
  }, 120_000)

  it('refuses an unknown section', async () => {
    const { code, stderr } = await bench(['--quick', '--only', 'nope'])
    expect(code).toBe(2)
    expect(stderr).toMatch(/unknown section/)
  })
})
