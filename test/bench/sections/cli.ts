/**
 * CLI start-up: how long `krill <command>` takes from exec to exit, as people run
 * it — bin/krill (the sh launcher execs the pinned Node on the compiled CLI in
 * dist/) against a running daemon with one peer. Baseline: the same Node doing
 * nothing (`node -e 0`), so "added" is what krill's own loading and the HTTP call
 * cost. Also `node bin/krill` under an older system Node (< 22), which re-runs
 * itself under the pinned one: that path costs a second Node start.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { Section } from '../context.js'
import { startKrillProc } from '../procs.js'
import { latencyFigure } from '../report.js'
import type { Target } from '../report.js'

const ROOT = fileURLToPath(new URL('../../../..', import.meta.url))
const LAUNCHER = `${ROOT}bin/krill`
const PINNED = `${ROOT}node_modules/node/bin/node`
const OLD_NODE = '/usr/bin/node'

const TIME = '/usr/bin/time'
const HAVE_TIME = existsSync(TIME)

interface Run { wallMs: number, cpuMs: number | null }

/**
 * One run: wall time, and CPU time (user + sys, from time(1) when present) — on a
 * machine shared with other work the wall time mostly measures the wait for a
 * core, the CPU time what the command itself costs. Throws when the command fails.
 */
function timeRun (cmd: string, args: string[]): Run {
  const argv = HAVE_TIME ? [TIME, ['-f', 'cpu %U %S', cmd, ...args]] as const : [cmd, args] as const
  const t0 = performance.now()
  const r = spawnSync(argv[0], [...argv[1]], { encoding: 'utf8', env: { ...process.env, KRILL_LOG: 'error' } })
  const wallMs = performance.now() - t0
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${String(r.status)}: ${r.stderr}`)
  const cpu = /cpu (\d+\.\d+) (\d+\.\d+)\s*$/.exec(r.stderr ?? '')
  return { wallMs, cpuMs: cpu != null ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : null }
}

const target = (_added: unknown, krill: { median: number }): Target => ({ text: 'median ≤ 200 ms', met: krill.median <= 200 })

export const cliSection: Section = {
  name: 'cli',
  title: 'CLI start-up',
  run: async (ctx) => {
    if (!existsSync(`${ROOT}dist/cli/main.js`)) throw new Error('dist/ is not built: run `npm run build`')
    const a = await startKrillProc(ctx.cleanup)
    const b = await startKrillProc(ctx.cleanup, { bootstrap: [a.ready.addrs[0]] })
    // wait until the two see each other, so `peers` lists one
    for (let i = 0; i < 200; i++) {
      const peers = await (await fetch(`${a.ready.api}/krill/v1/peers`)).json() as { peers: unknown[] }
      if (peers.peers.length > 0) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    void b
    const api = a.ready.api
    const runs = ctx.quick ? 5 : 30
    const node = existsSync(PINNED) ? PINNED : process.execPath
    const commands: Array<{ key: string, args: string[] }> = [
      { key: 'version', args: ['--version'] },
      { key: 'status', args: ['status', '--api', api] },
      { key: 'peers', args: ['peers', '--json', '--api', api] }
    ]
    const old = spawnSync(OLD_NODE, ['--version'], { encoding: 'utf8' })
    const oldMajor = old.status === 0 ? Number(old.stdout.trim().slice(1).split('.')[0]) : NaN
    const reexec = oldMajor < 22
    const samples = new Map<string, number[]>()
    const cpu = new Map<string, number[]>()
    ctx.log(`CLI: ${runs} runs of each command${reexec ? `, and --version under Node ${old.stdout.trim()}` : ''}`)
    // one warm-up round (page cache), then rounds in which every path takes a turn
    for (let i = -1; i < runs; i++) {
      const round: Array<[string, Run]> = [['baseline', timeRun(node, ['-e', '0'])]]
      for (const c of commands) round.push([c.key, timeRun(LAUNCHER, c.args)])
      if (reexec) {
        round.push(['oldBaseline', timeRun(OLD_NODE, ['-e', '0'])])
        round.push(['reexec', timeRun(OLD_NODE, [LAUNCHER, '--version'])])
      }
      if (i < 0) continue
      for (const [k, run] of round) {
        samples.set(k, [...(samples.get(k) ?? []), run.wallMs])
        if (run.cpuMs != null) cpu.set(k, [...(cpu.get(k) ?? []), run.cpuMs])
      }
    }
    const get = (k: string): number[] => samples.get(k) ?? []
    const figures = commands.map(c => latencyFigure({
      id: `cli.${c.key}`,
      label: `krill ${c.args.filter(a => a !== api && a !== '--api').join(' ')} (bin/krill → pinned Node)`,
      baselineLabel: 'node -e 0',
      baseline: get('baseline'),
      krill: get(c.key),
      target
    }))
    if (reexec) {
      figures.push(latencyFigure({
        id: 'cli.reexec',
        label: `node bin/krill --version under Node ${oldMajor} (re-runs under the pinned Node)`,
        baselineLabel: `Node ${oldMajor}: node -e 0`,
        baseline: get('oldBaseline'),
        krill: get('reexec'),
        target
      }))
    }
    // CPU time: what each command costs itself, whatever else the machine runs
    if (cpu.size > 0) {
      for (const c of commands) {
        figures.push(latencyFigure({ id: `cli.${c.key}.cpu`, label: `CPU time: krill ${c.args.filter(a => a !== api && a !== '--api').join(' ')}`, unit: 'ms cpu', baselineLabel: 'node -e 0', baseline: cpu.get('baseline') ?? [], krill: cpu.get(c.key) ?? [] }))
      }
      if (reexec) figures.push(latencyFigure({ id: 'cli.reexec.cpu', label: `CPU time: node bin/krill --version under Node ${oldMajor}`, unit: 'ms cpu', baselineLabel: `Node ${oldMajor}: node -e 0`, baseline: cpu.get('oldBaseline') ?? [], krill: cpu.get('reexec') ?? [] }))
    }
    return {
      figures,
      notes: [
        `${runs} runs per command after one warm-up round, commands taking turns; wall time from spawn to exit, against a running daemon with one peer`,
        'client commands load commander, the command module and node:http: no libp2p, fastify, zod or undici (test/unit/cli-lean.test.ts checks the module list)',
        'wall time on a shared machine is mostly the wait for a core: the CPU-time rows (user + sys from time(1), 10 ms resolution) are what the commands cost themselves',
        reexec ? 'the re-exec row is `node bin/krill` started by the older system Node: that Node starts, then spawns the pinned one; the sh launcher (`krill`, `./bin/krill`) skips it' : 'no Node older than 22 on this machine: the re-exec path was not measured'
      ]
    }
  }
}
