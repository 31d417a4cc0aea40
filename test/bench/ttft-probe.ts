/**
 * A quick look at one request path's cost, for working on it: starts the bench's
 * line (stand-in, provider, consumer: test/bench/line.ts) and runs back-to-back
 * 4-token chats on the chosen paths, taking turns, reporting each path's TTFT
 * (median, p90) and main-thread CPU per request of the provider and the consumer
 * (schedstat, idle CPU subtracted). With BENCH_CPU_PROF=DIR the daemons write
 * CPU profiles there when they stop.
 *
 *   node dist-test/test/bench/ttft-probe.js [--paths own,hop,direct] [--n 300] [--spaced MS] [--client ollama|fetch]
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { tokenScript } from '../fixtures/standin-main.js'
import { Cleanup } from './cleanup.js'
import { fetchNdjson, ollamaChat, type StreamOptions, type StreamTiming } from './clients.js'
import { processCpuNs } from './cpu.js'
import { line, TOKEN_BYTES } from './line.js'
import { MODEL, OPEN_LIMITS, providersVia, startKrillProc, until } from './procs.js'

const { values } = parseArgs({
  options: {
    paths: { type: 'string', default: 'direct,own,hop' },
    n: { type: 'string', default: '300' },
    spaced: { type: 'string', default: '0' },
    client: { type: 'string', default: 'ollama' },
    fresh: { type: 'boolean', default: false },
    // a script taking (stand-in URL) and printing its own URL: a path "floor" to compare with
    floor: { type: 'string' },
    // count the daemons' system calls during the measured requests (strace -c into DIR)
    strace: { type: 'string' },
    // another build's dist-test/test/bench/krill-cli.js: its provider and consumer too, as paths ownB and hopB
    base: { type: 'string' }
  }
})

const cleanup = new Cleanup()
try {
  const ctx = { quick: true, cleanup, log: (m: string) => { process.stderr.write(`probe: ${m}\n`) }, shared: async <T>(_k: string, f: () => Promise<T>) => await f() }
  const l = await line(ctx)
  await l.standin.setKnobs({ tokens: tokenScript(4, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
  const client = values.client === 'fetch' ? fetchNdjson : ollamaChat
  const hosts: Record<string, string> = { direct: l.standin.url, own: l.provider.ready.api, hop: l.consumer.ready.api }
  const pids: Record<string, number> = { provider: l.provider.pid, consumer: l.consumer.pid, standin: l.standin.pid }
  for (const [i, script] of (values.floor?.split(',') ?? []).entries()) {
    const child = spawn(process.execPath, [script, l.standin.url], { stdio: ['ignore', 'pipe', 'inherit'] })
    cleanup.add('floor', () => { child.kill() })
    const [url] = await once(createInterface({ input: child.stdout }), 'line') as [string]
    hosts[`floor${i}`] = url
    pids[`floor${i}`] = child.pid as number
  }
  if (values.base != null) {
    const providerB = await startKrillProc(cleanup, { ollama: l.standin.url, config: { slots: 16, maxQueue: 1_000, limits: OPEN_LIMITS }, entry: values.base })
    const consumerB = await startKrillProc(cleanup, { bootstrap: [providerB.ready.addrs[0]], entry: values.base })
    await until(async () => (await providersVia(consumerB.ready.api, MODEL)).some(p => p.peerId === providerB.ready.peerId), 'consumer B to learn provider B')
    hosts.ownB = providerB.ready.api
    hosts.hopB = consumerB.ready.api
    pids.providerB = providerB.pid
    pids.consumerB = consumerB.pid
  }
  const paths = values.paths.split(',')
  const n = Number(values.n)
  const spaced = Number(values.spaced)
  const opts: StreamOptions = { numPredict: 4, fresh: values.fresh }
  const call = async (p: string): Promise<StreamTiming> => await client(hosts[p], opts)
  for (let i = 0; i < 30; i++) for (const p of paths) await call(p)
  const read = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, pid]) => [k, (await processCpuNs(pid)).main / 1e6])))
  // idle rate
  const i0 = await read(); const t0 = performance.now(); await sleep(1000); const i1 = await read(); const idleWall = performance.now() - t0
  const idle = Object.fromEntries(Object.keys(pids).map(k => [k, (i1[k] - i0[k]) / idleWall]))
  const ttft = new Map<string, number[]>(paths.map(p => [p, []]))
  const cpu = new Map<string, Record<string, number>>(paths.map(p => [p, { ...Object.fromEntries(Object.keys(pids).map(k => [k, 0])), wall: 0 }]))
  const tracers = values.strace == null ? [] : Object.entries(pids).map(([k, pid]) => spawn('strace', [...(process.env.PROBE_STRACE_ARGS ?? '-c').split(' '), '-f', '-p', String(pid), '-o', `${values.strace}/${k}.txt`], { stdio: 'ignore' }))
  if (tracers.length > 0) await sleep(1000)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < paths.length; j++) {
      const p = paths[(i + j) % paths.length]
      if (spaced > 0) await sleep(spaced)
      const before = await read(); const w = performance.now()
      const t = await call(p)
      const wall = performance.now() - w
      const after = await read()
      ttft.get(p)?.push(t.ttftMs)
      const c = cpu.get(p) as Record<string, number>
      for (const k of Object.keys(pids)) c[k] += after[k] - before[k] - idle[k] * wall
      c.wall += wall
    }
  }
  for (const t of tracers) { t.kill('SIGINT'); await once(t, 'exit') }
  const q = (a: number[], f: number): number => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(f * s.length))] }
  const load = loadavg()[0].toFixed(2)
  for (const p of paths) {
    const a = ttft.get(p) as number[]
    const c = cpu.get(p) as Record<string, number>
    console.log(`${p.padEnd(7)} ttft median ${q(a, 0.5).toFixed(2)} p90 ${q(a, 0.9).toFixed(2)} ms | cpu/req ${Object.keys(pids).map(k => `${k} ${(c[k] / n).toFixed(3)}`).join(' ')} ms | load ${load}`)
  }
} finally {
  await cleanup.closeAll()
}
