/**
 * CPU per token of every process on the one-stream flat-out path, direct and
 * through krill (paths take turns): `node dist-test/test/bench/tput-cpu.js [runs] [tokens] [direct,krill]`.
 * Prints, per path, the client's rate and each process's main-thread µs per token
 * (schedstat, so waiting for a core is not counted).
 */
import { loadavg } from 'node:os'
import { tokenScript } from '../fixtures/standin-main.js'
import { setLogLevel } from '../../src/log.js'
import { Cleanup } from './cleanup.js'
import { ollamaChat } from './clients.js'
import type { BenchContext } from './context.js'
import { processCpuNs } from './cpu.js'
import { line, TOKEN_BYTES } from './line.js'

async function main (): Promise<void> {
  setLogLevel('error')
  const runs = Number(process.argv[2] ?? 6)
  const tokens = Number(process.argv[3] ?? 20_000)
  const cleanup = new Cleanup()
  const cache = new Map<string, Promise<unknown>>()
  const ctx: BenchContext = {
    quick: false,
    cleanup,
    log: m => { process.stderr.write(`${m}\n`) },
    shared: async <T>(key: string, create: () => Promise<T>): Promise<T> => {
      let v = cache.get(key)
      if (v == null) { v = create(); cache.set(key, v) }
      return await (v as Promise<T>)
    }
  }
  try {
    const l = await line(ctx)
    await l.standin.setKnobs({ tokens: tokenScript(tokens, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    const pids = { standin: l.standin.pid, provider: l.provider.pid, consumer: l.consumer.pid, client: process.pid }
    const only = process.argv[4]?.split(',')
    const paths = [
      { key: 'direct', host: l.standin.url },
      { key: 'krill', host: l.consumer.ready.api }
    ].filter(p => only == null || only.includes(p.key))
    const acc = new Map<string, { rate: number[], cpu: Record<string, number[]> }>()
    const loadStart = loadavg()[0]
    for (let i = 0; i < runs + 1; i++) {
      for (const p of i % 2 === 0 ? paths : [...paths].reverse()) {
        const before = await Promise.all(Object.values(pids).map(processCpuNs))
        let first = NaN
        let last = NaN
        const t = await ollamaChat(p.host, { numPredict: tokens, onToken: at => { if (Number.isNaN(first)) first = at; last = at } })
        const after = await Promise.all(Object.values(pids).map(processCpuNs))
        if (t.tokens !== tokens) throw new Error(`got ${t.tokens} tokens`)
        if (i === 0) continue
        let a = acc.get(p.key)
        if (a == null) acc.set(p.key, a = { rate: [], cpu: {} })
        a.rate.push((tokens - 1) / ((last - first) / 1000))
        Object.keys(pids).forEach((name, j) => {
          (a.cpu[name] ??= []).push((after[j].main - before[j].main) / 1000 / tokens)
        })
      }
    }
    const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
    process.stdout.write(`load ${loadStart.toFixed(2)} → ${loadavg()[0].toFixed(2)}, ${runs} runs of ${tokens} tokens per path\n`)
    for (const [key, a] of acc) {
      const cpu = Object.entries(a.cpu).map(([n, xs]) => `${n} ${med(xs).toFixed(2)}`).join(', ')
      const total = Object.values(a.cpu).reduce((s, xs) => s + med(xs), 0)
      process.stdout.write(`${key}: ${med(a.rate).toFixed(0)} tok/s; µs CPU per token (main thread): ${cpu}; sum ${total.toFixed(2)}\n`)
    }
  } finally {
    await cleanup.closeAll()
  }
}

main().then(() => { setTimeout(() => process.exit(0), 500).unref() }, err => { console.error(err); process.exit(1) })
