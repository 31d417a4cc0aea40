/**
 * Where the CPU of many simultaneous streams goes: `node dist-test/test/bench/conc-cpu.js [streams] [rounds]`.
 * One provider with as many slots as streams (as the concurrency section), the
 * consumer in its own process, clients here. Per round of `streams` simultaneous
 * chats of 200 and of 2 tokens, direct and through krill: each process's main-thread
 * CPU per stream (schedstat). The 2-token rounds are the per-request set-up alone;
 * (200-token − 2-token) / 198 is the per-token share. With a third argument `rss`:
 * only `rounds` bursts of 200-token streams through krill, and the provider's peak RSS of each.
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { tokenScript } from '../fixtures/standin-main.js'
import { setLogLevel } from '../../src/log.js'
import { Cleanup } from './cleanup.js'
import { ollamaChat } from './clients.js'
import { processCpuNs } from './cpu.js'
import { TOKEN_BYTES } from './line.js'
import { MODEL, OPEN_LIMITS, providersVia, sampleRss, startKrillProc, startStandinProc, until } from './procs.js'

async function main (): Promise<void> {
  setLogLevel('error')
  const streams = Number(process.argv[2] ?? 500)
  const rounds = Number(process.argv[3] ?? 3)
  const cleanup = new Cleanup()
  try {
    const standin = await startStandinProc(cleanup)
    const provider = await startKrillProc(cleanup, { ollama: standin.url, config: { slots: streams, maxQueue: 1_000, limits: OPEN_LIMITS } })
    const consumer = await startKrillProc(cleanup, { bootstrap: [provider.ready.addrs[0]] })
    await until(async () => (await providersVia(consumer.ready.api, MODEL)).some(p => p.peerId === provider.ready.peerId), 'the consumer to learn the provider')
    if (process.argv[4] === 'rss') {
      await standin.setKnobs({ tokens: tokenScript(200, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
      // warm up as the concurrency section does
      await Promise.all(Array.from({ length: 10 }, async () => await ollamaChat(consumer.ready.api, { numPredict: 200 })))
      const peaks: number[] = []
      for (let r = 0; r < rounds; r++) {
        const sampler = sampleRss(provider.pid)
        await Promise.all(Array.from({ length: streams }, async () => await ollamaChat(consumer.ready.api, { numPredict: 200 })))
        peaks.push(await sampler.stop())
        await standin.reset()
      }
      process.stdout.write(`load ${loadavg()[0].toFixed(2)}: provider peak RSS per burst of ${streams}: ${peaks.map(p => p.toFixed(0)).join(', ')} MB\n`)
      return
    }
    const pids = { standin: standin.pid, provider: provider.pid, consumer: consumer.pid, client: process.pid }
    const load = loadavg()[0]
    const out: string[] = []
    for (const tokens of [200, 2]) {
      await standin.setKnobs({ tokens: tokenScript(tokens, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
      const acc: Record<string, { cpu: Record<string, number>, wall: number }> = {}
      for (let r = 0; r < rounds + 1; r++) {
        for (const [key, host] of [['direct', standin.url], ['krill', consumer.ready.api]] as const) {
          const before = await Promise.all(Object.values(pids).map(processCpuNs))
          const t0 = performance.now()
          await Promise.all(Array.from({ length: streams }, async () => await ollamaChat(host, { numPredict: tokens })))
          const wall = performance.now() - t0
          const after = await Promise.all(Object.values(pids).map(processCpuNs))
          await standin.reset()
          if (r === 0) continue
          const a = (acc[key] ??= { cpu: {}, wall: 0 })
          a.wall += wall / rounds
          Object.keys(pids).forEach((name, j) => { a.cpu[name] = (a.cpu[name] ?? 0) + (after[j].main - before[j].main) / 1e6 / streams / rounds })
        }
      }
      for (const [key, a] of Object.entries(acc)) {
        const sum = Object.values(a.cpu).reduce((s, x) => s + x, 0)
        out.push(`${tokens} tokens, ${key}: ${(streams * tokens / (a.wall / 1000)).toFixed(0)} tok/s aggregate; ms CPU per stream: ${Object.entries(a.cpu).map(([n, x]) => `${n} ${x.toFixed(3)}`).join(', ')}; sum ${sum.toFixed(3)}`)
      }
    }
    process.stdout.write(`load ${load.toFixed(2)} → ${loadavg()[0].toFixed(2)}, ${streams} streams × ${rounds} rounds\n${out.join('\n')}\n`)
  } finally {
    await cleanup.closeAll()
  }
}

main().then(() => { setTimeout(() => process.exit(0), 500).unref() }, err => { console.error(err); process.exit(1) })
