/**
 * `npm run bench` — what the network costs, side by side with direct Ollama, and
 * how it scales. Everything runs on this machine, on 127.0.0.1 only, against
 * Ollama stand-ins that emit tokens as fast as asked.
 *
 *   npm run bench                      all sections (≈ 3 min on 2 cores)
 *   npm run bench -- --quick           a short smoke run (< 1 min)
 *   npm run bench -- --only ttft,throughput
 *   npm run -s bench -- --json         one JSON document on stdout (progress stays on stderr;
 *                                      -s keeps npm's own banner off stdout)
 *   npm run bench -- --out FILE        also write the JSON document to FILE
 *   npm run bench -- --markdown        the table as Markdown (for docs/benchmarks.md)
 *
 * Sections: ttft, throughput, concurrency, discovery, failover, receipts, cli. Every process, node
 * and stand-in a section starts is stopped when it ends, also on failure or Ctrl-C.
 * BENCH_CPU_PROF=DIR makes every krill daemon process write a V8 CPU profile to DIR
 * (read it with test/bench/cpuprofile-top.ts).
 */
import { writeFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setLogLevel } from '../../src/log.js'
import { Cleanup } from './cleanup.js'
import type { BenchContext, Section } from './context.js'
import { machineInfo } from './machine.js'
import { markdownTable, machineLine, textReport, type Report, type SectionResult } from './report.js'
import { cliSection } from './sections/cli.js'
import { concurrencySection } from './sections/concurrency.js'
import { discoverySection } from './sections/discovery.js'
import { failoverSection } from './sections/failover.js'
import { throughputSection } from './sections/throughput.js'
import { receiptsSection } from './sections/receipts.js'
import { ttftSection } from './sections/ttft.js'

/** the cleanups of runs in progress: a signal releases them before the process exits */
const active = new Set<Cleanup>()

export const SECTIONS: Section[] = [ttftSection, throughputSection, concurrencySection, discoverySection, failoverSection, receiptsSection, cliSection]

export interface BenchOptions {
  quick: boolean
  only?: string[]
  log?: (msg: string) => void
}

/** Runs the chosen sections and returns the report; a failing section is reported, not thrown. */
export async function runBench (opts: BenchOptions): Promise<Report> {
  const unknown = (opts.only ?? []).filter(name => !SECTIONS.some(s => s.name === name))
  if (unknown.length > 0) throw new Error(`unknown section(s): ${unknown.join(', ')}; choose from ${SECTIONS.map(s => s.name).join(', ')}`)
  const chosen = opts.only == null || opts.only.length === 0 ? SECTIONS : SECTIONS.filter(s => opts.only?.includes(s.name))
  const cleanup = new Cleanup()
  active.add(cleanup)
  const cache = new Map<string, Promise<unknown>>()
  const log = opts.log ?? (() => {})
  const ctx: BenchContext = {
    quick: opts.quick,
    cleanup,
    log,
    shared: async <T>(key: string, create: () => Promise<T>): Promise<T> => {
      let value = cache.get(key)
      if (value == null) {
        value = create()
        cache.set(key, value)
      }
      return await (value as Promise<T>)
    }
  }
  const started = performance.now()
  const loadAtStart = loadavg()[0]
  const sections: SectionResult[] = []
  try {
    for (const section of chosen) {
      const t0 = performance.now()
      log(`— ${section.title}`)
      try {
        const out = await section.run(ctx)
        sections.push({ name: section.name, title: section.title, ...out, seconds: (performance.now() - t0) / 1000 })
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        log(`${section.title} failed: ${err instanceof Error ? err.stack ?? message : message}`)
        sections.push({ name: section.name, title: section.title, figures: [], notes: [], seconds: (performance.now() - t0) / 1000, error: message })
      }
    }
  } finally {
    log('stopping everything the benchmarks started')
    await cleanup.closeAll()
    active.delete(cleanup)
  }
  return {
    machine: machineInfo(loadAtStart),
    options: { quick: opts.quick, sections: chosen.map(s => s.name) },
    sections,
    seconds: (performance.now() - started) / 1000
  }
}

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      markdown: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help === true) {
    process.stdout.write('usage: npm run bench -- [--quick] [--json | --markdown] [--out FILE] [--only ' + SECTIONS.map(s => s.name).join(',') + ']\n')
    return 0
  }
  // the daemons' own log lines would drown the progress; errors still show
  setLogLevel((process.env.KRILL_LOG as 'error' | undefined) ?? 'error')
  const only = values.only?.split(',').map(s => s.trim()).filter(s => s !== '')
  const log = (msg: string): void => { process.stderr.write(`bench: ${msg}\n`) }
  const report = await runBench({ quick: values.quick === true, only, log })
  if (values.out != null) await writeFile(values.out, JSON.stringify(report, null, 2) + '\n')
  if (values.json === true) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n')
  } else if (values.markdown === true) {
    const quick = report.options.quick ? 'QUICK RUN (--quick: few samples, not for publishing). ' : ''
    process.stdout.write(`${quick}Machine: ${machineLine(report.machine)}\n\n${markdownTable(report.sections)}\n`)
  } else {
    process.stdout.write(textReport(report) + '\n')
  }
  return report.sections.some(s => s.error != null) ? 1 : 0
}

if (process.argv[1] != null && fileURLToPath(import.meta.url) === process.argv[1]) {
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    // a second Ctrl-C leaves at once; the exit hook still SIGKILLs child processes
    if (interrupted) process.exit(130)
    interrupted = true
    process.stderr.write(`bench: ${signal}: stopping everything that was started (again to quit at once)\n`)
    void Promise.allSettled([...active].map(async c => { await c.closeAll() })).finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  main().then(code => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 2
  }).finally(() => {
    // everything we started is stopped; libp2p may leave unref'd timers or sockets closing
    setTimeout(() => process.exit(), 1_000).unref()
  })
}
