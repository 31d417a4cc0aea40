/**
 * Time to first token, one request at a time, each path against the same stand-in
 * in the same loop (paths take turns, so drift in the machine hits all alike).
 *
 * Paths, each next to the same client straight to the stand-in:
 * - consumer hop: the consumer's /api/chat (consumer → libp2p → provider → stand-in),
 *   from the `ollama` client and from plain fetch (undici, as apps call it);
 *   krill's OpenAI SSE (/v1/chat/completions) from fetch;
 * - provider's own API: the provider's /api/chat over its local stand-in (no
 *   network hop: what krill's HTTP side and router cost alone);
 * - protocol: OllamaEngine.chat straight to the stand-in vs requestChat from a
 *   node in this process to the provider — the libp2p part alone, so that
 *   (consumer hop added) − (protocol added) is what the consumer's HTTP side costs.
 *
 * Modes:
 * - warm: back to back, keep-alive (the steady state);
 * - spaced: 300 ms of quiet before every request, keep-alive (how people chat:
 *   timers, caches and the CPU go cold between requests);
 * - cold: a fresh HTTP connection for every request (`connection: close`), back to
 *   back. The libp2p connection between consumer and provider stays open in every
 *   mode, as it does in a running swarm; a first request to a provider not yet
 *   connected also pays the dial, which this section does not measure.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { tokenScript } from '../../fixtures/standin-main.js'
import { engineChat, fetchNdjson, ollamaChat, openAiSse, protocolChat, type StreamOptions, type StreamTiming } from '../clients.js'
import type { Section } from '../context.js'
import { line, TOKEN_BYTES } from '../line.js'
import { cpuDuring } from '../cpu.js'
import { latencyFigure, type Figure, type Target } from '../report.js'

/** short answers: TTFT is about the first token */
const TOKENS = 4
/** the quiet before each request in the spaced mode */
const SPACING_MS = 300

type Mode = 'warm' | 'spaced' | 'cold'

interface PathDef { key: string, call: (o: StreamOptions) => Promise<StreamTiming>, modes: Mode[] }

/** added ≤ limit median and ≤ 3 × limit p99 (issue 17: ≤ 1 / ≤ 3 ms per hop, ≤ 0.5 ms for the provider's own API) */
function hopTarget (limit: number): (added: { median: number, p99: number }) => Target {
  return added => ({ text: `added ≤ ${limit} ms median, ≤ ${3 * limit} ms p99`, met: added.median <= limit && added.p99 <= 3 * limit })
}

export const ttftSection: Section = {
  name: 'ttft',
  title: 'Time to first token',
  run: async (ctx) => {
    const l = await line(ctx)
    // the stand-in builds its whole script for every request: keep it as short as the answer
    await l.standin.setKnobs({ tokens: tokenScript(TOKENS, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    const consumer = l.consumer.ready.api
    const provider = l.provider.ready.api
    const all: Mode[] = ['warm', 'spaced', 'cold']
    const paths: PathDef[] = [
      { key: 'direct', call: async o => await ollamaChat(l.standin.url, o), modes: all },
      { key: 'direct-fetch', call: async o => await fetchNdjson(l.standin.url, o), modes: all },
      { key: 'krill', call: async o => await ollamaChat(consumer, o), modes: all },
      { key: 'krill-fetch', call: async o => await fetchNdjson(consumer, o), modes: all },
      { key: 'sse', call: async o => await openAiSse(consumer, o), modes: ['warm'] },
      { key: 'provider', call: async o => await ollamaChat(provider, o), modes: all },
      { key: 'provider-fetch', call: async o => await fetchNdjson(provider, o), modes: all },
      { key: 'engine', call: async o => await engineChat(l.engine, o), modes: ['warm', 'spaced'] },
      { key: 'protocol', call: async o => await protocolChat(l.probe.daemon.libp2p, l.providerId, o), modes: ['warm', 'spaced'] }
    ]
    const rounds: Record<Mode, { warmup: number, iterations: number }> = ctx.quick
      ? { warm: { warmup: 3, iterations: 15 }, spaced: { warmup: 0, iterations: 1 }, cold: { warmup: 1, iterations: 3 } }
      : { warm: { warmup: 100, iterations: 1_000 }, spaced: { warmup: 2, iterations: 50 }, cold: { warmup: 10, iterations: 200 } }
    const samples = new Map<string, number[]>()
    for (const mode of all) {
      const active = paths.filter(p => p.modes.includes(mode))
      const { warmup, iterations } = rounds[mode]
      ctx.log(`TTFT ${mode}: ${warmup} warm-up + ${iterations} rounds of ${active.length} paths`)
      for (let i = 0; i < warmup + iterations; i++) {
        for (let j = 0; j < active.length; j++) {
          // rotate the order each round: no path always runs right after the same other one
          const path = active[(i + j) % active.length]
          if (mode === 'spaced') await sleep(SPACING_MS)
          const t = await path.call({ numPredict: TOKENS, fresh: mode === 'cold' })
          if (t.tokens !== TOKENS) throw new Error(`${path.key} (${mode}): expected ${TOKENS} tokens, got ${t.tokens}`)
          if (i >= warmup) {
            const key = `${mode}:${path.key}`
            samples.set(key, [...(samples.get(key) ?? []), t.ttftMs])
          }
        }
        if (i % 200 === 199) await l.standin.reset()
      }
    }
    const get = (mode: Mode, k: string): number[] => samples.get(`${mode}:${k}`) ?? []
    const prefix = (mode: Mode): string => mode === 'warm' ? 'ttft' : `ttft.${mode}`
    const modeLabel: Record<Mode, string> = { warm: 'warm', spaced: `${SPACING_MS} ms apart`, cold: 'fresh HTTP connection' }
    const figures: Figure[] = []
    for (const mode of all) {
      const m = modeLabel[mode]
      figures.push(
        latencyFigure({ id: `${prefix(mode)}.http`, label: `TTFT ${m}, ollama client: direct vs consumer /api/chat (1 hop)`, baselineLabel: 'direct stand-in', baseline: get(mode, 'direct'), krill: get(mode, 'krill'), target: hopTarget(1) }),
        latencyFigure({ id: `${prefix(mode)}.fetch`, label: `TTFT ${m}, fetch: direct vs consumer /api/chat (1 hop)`, baselineLabel: 'direct stand-in', baseline: get(mode, 'direct-fetch'), krill: get(mode, 'krill-fetch'), target: hopTarget(1) })
      )
      if (mode === 'warm') {
        figures.push(latencyFigure({ id: 'ttft.sse', label: 'TTFT warm, fetch: direct /api/chat vs OpenAI SSE via consumer /v1/chat/completions', baselineLabel: 'direct stand-in (fetch)', baseline: get(mode, 'direct-fetch'), krill: get(mode, 'sse'), target: hopTarget(1) }))
      }
      figures.push(
        latencyFigure({ id: `${prefix(mode)}.provider.http`, label: `TTFT ${m}, ollama client: direct vs provider's own /api/chat (no hop)`, baselineLabel: 'direct stand-in', baseline: get(mode, 'direct'), krill: get(mode, 'provider'), target: hopTarget(0.5) }),
        latencyFigure({ id: `${prefix(mode)}.provider.fetch`, label: `TTFT ${m}, fetch: direct vs provider's own /api/chat (no hop)`, baselineLabel: 'direct stand-in', baseline: get(mode, 'direct-fetch'), krill: get(mode, 'provider-fetch'), target: hopTarget(0.5) })
      )
      if (mode !== 'cold') {
        figures.push(latencyFigure({ id: `${prefix(mode)}.protocol`, label: `TTFT ${m}, protocol: engine.chat vs requestChat`, baselineLabel: 'engine.chat', baseline: get(mode, 'engine'), krill: get(mode, 'protocol'), target: hopTarget(1) }))
      }
    }
    // CPU per request, load-independent (cpu.ts): batches of back-to-back requests on
    // one path at a time, each process's CPU read before and after every batch
    const cpuBatches = ctx.quick ? 1 : 5
    const cpuPerBatch = ctx.quick ? 5 : 100
    const pids = [l.standin.pid, l.provider.pid, l.consumer.pid]
    const cpu = new Map<string, number[]>()
    const note = (key: string, v: number): void => { cpu.set(key, [...(cpu.get(key) ?? []), v]) }
    ctx.log(`TTFT cpu: ${cpuBatches} batches of ${cpuPerBatch} requests on 3 paths`)
    // what each process burns with nothing to do (DHT, gossipsub, identify, metrics
    // timers), per ms of wall time: subtracted from each batch for its duration
    const idleMs = ctx.quick ? 300 : 2_000
    const idle = await cpuDuring(pids, async () => { await sleep(idleMs) })
    const idleRate = idle.map(u => ({ main: u.main / idleMs, all: u.all / idleMs }))
    for (let b = 0; b < cpuBatches; b++) {
      for (const [key, host] of [['direct', l.standin.url], ['hop', consumer], ['own', provider]] as const) {
        const started = performance.now()
        const used = await cpuDuring(pids, async () => {
          for (let i = 0; i < cpuPerBatch; i++) await ollamaChat(host, { numPredict: TOKENS })
        })
        const wall = performance.now() - started
        const [standinCpu, providerCpu, consumerCpu] = used.map((u, i) => ({
          main: Math.max(0, u.main - idleRate[i].main * wall),
          all: Math.max(0, u.all - idleRate[i].all * wall)
        }))
        note(`${key}:standin`, standinCpu.main / cpuPerBatch)
        note(`${key}:provider`, providerCpu.main / cpuPerBatch)
        note(`${key}:consumer`, consumerCpu.main / cpuPerBatch)
        note(`${key}:provider-all`, providerCpu.all / cpuPerBatch)
        note(`${key}:consumer-all`, consumerCpu.all / cpuPerBatch)
      }
    }
    const c = (k: string): number[] => cpu.get(k) ?? []
    const sum = (a: number[], b: number[]): number[] => a.map((v, i) => v + b[i])
    const cpuBase = { baselineLabel: 'stand-in, same answer direct', baseline: c('direct:standin'), unit: 'ms CPU' }
    figures.push(
      latencyFigure({ id: 'cpu.hop', label: 'CPU per request on the event loops, 1 hop: consumer + provider main threads', ...cpuBase, krill: sum(c('hop:consumer'), c('hop:provider')) }),
      latencyFigure({ id: 'cpu.hop.consumer', label: 'CPU per request, 1 hop: consumer main thread', ...cpuBase, krill: c('hop:consumer') }),
      latencyFigure({ id: 'cpu.hop.provider', label: 'CPU per request, 1 hop: provider main thread', ...cpuBase, krill: c('hop:provider') }),
      latencyFigure({ id: 'cpu.own', label: 'CPU per request, provider\'s own API: provider main thread', ...cpuBase, krill: c('own:provider') })
    )
    const mean = (a: number[]): string => (a.reduce((x, y) => x + y, 0) / Math.max(1, a.length)).toFixed(3)
    const cpuNote = `CPU per request from /proc/<pid>/schedstat (time on a CPU, not wall time: does not grow with the machine's load), ${cpuBatches} batches of ${cpuPerBatch} back-to-back requests per path, less each process's idle CPU over the same time (idle: stand-in, provider, consumer ${idleRate.map(r => (r.main * 1000).toFixed(0)).join(' / ')} ms/s on the main thread); all threads (libuv pool, V8 helpers) per request: consumer ${mean(c('hop:consumer-all'))} ms, provider ${mean(c('hop:provider-all'))} ms on the hop, provider ${mean(c('own:provider-all'))} ms for its own API`

    const n = (mode: Mode): string => `${rounds[mode].iterations} (after ${rounds[mode].warmup} warm-up rounds)`
    return {
      figures,
      notes: [
        `requests per path: warm ${n('warm')}, ${SPACING_MS} ms apart ${n('spaced')}, fresh HTTP connection ${n('cold')}; ${TOKENS}-token answers, stand-in with no first-token delay; paths take turns${ctx.quick ? '; QUICK RUN: too few requests for a steady p99' : ''}`,
        'consumer and provider are separate `krill daemon` processes; the protocol figure opens /krill/chat/1.0.0 from a node in the bench process straight to the provider; the libp2p connection between them stays open in every mode (a request to a provider not yet connected also pays the dial, not measured here)',
        cpuNote,
        'fetch is Node\'s built-in fetch (undici), reading NDJSON or SSE by hand; the ollama client is the `ollama` npm package, which parses each line with JSON.parse behind an async iterator'
      ]
    }
  }
}
