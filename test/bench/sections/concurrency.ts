/**
 * Many simultaneous streams through one provider. The provider is a real
 * `krill daemon` process with as many slots as the largest level (so every stream
 * really runs at once), serving a fast stand-in in its own process; the consumer is
 * another process; the clients (the `ollama` npm client) run here. Each level runs
 * the same streams straight to the stand-in as its baseline.
 *
 * Per level: aggregate tokens/s (all tokens / wall time of the round), TTFT of
 * every stream (median, p99), and the provider's peak RSS, sampled from
 * /proc/<pid>/status every 50 ms while the level runs.
 */
import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import { tokenScript } from '../../fixtures/standin-main.js'
import { ollamaChat, type StreamTiming } from '../clients.js'
import type { Section } from '../context.js'
import { TOKEN_BYTES } from '../line.js'
import { latencyFigure, rateFigure, type Figure } from '../report.js'
import { summarize } from '../stats.js'
import { MODEL, OPEN_LIMITS, processMemory, providersVia, sampleRss, startKrillProc, startStandinProc, until } from '../procs.js'

interface Round { tokS: number, ttfts: number[], failed: number, errors: string[] }

async function round (host: string, streams: number, tokens: number): Promise<Round> {
  const started = performance.now()
  const results = await Promise.allSettled(Array.from({ length: streams }, async () => await ollamaChat(host, { numPredict: tokens })))
  const wall = (performance.now() - started) / 1000
  const ok = results.filter((r): r is PromiseFulfilledResult<StreamTiming> => r.status === 'fulfilled' && r.value.tokens === tokens)
  const errors = results.flatMap(r => r.status === 'rejected' ? [String(r.reason?.message ?? r.reason)] : [])
  return {
    tokS: ok.reduce((n, r) => n + r.value.tokens, 0) / wall,
    ttfts: ok.map(r => r.value.ttftMs),
    failed: streams - ok.length,
    errors
  }
}

export const concurrencySection: Section = {
  name: 'concurrency',
  title: 'Concurrency through one provider',
  run: async (ctx) => {
    // 1000: the provider's memory across repeated bursts (issue 17: RSS < 400 MB)
    const levels = ctx.quick ? [1, 10, 100] : [1, 10, 100, 500, 1_000]
    const tokens = ctx.quick ? 50 : 200
    // enough streams per level for a steady median at the low levels
    const rounds = (level: number): number => level === 1 ? (ctx.quick ? 5 : 50) : level <= 10 ? (ctx.quick ? 2 : 10) : level <= 100 ? (ctx.quick ? 1 : 5) : level <= 500 ? (ctx.quick ? 1 : 3) : (ctx.quick ? 1 : 4)
    const maxLevel = Math.max(...levels)

    const standin = await startStandinProc(ctx.cleanup)
    await standin.setKnobs({ tokens: tokenScript(tokens, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    const provider = await startKrillProc(ctx.cleanup, {
      ollama: standin.url,
      config: { slots: maxLevel, maxQueue: 1_000, limits: OPEN_LIMITS }
    })
    const consumer = await startKrillProc(ctx.cleanup, { bootstrap: [provider.ready.addrs[0]] })
    await until(async () => (await providersVia(consumer.ready.api, MODEL)).some(p => p.peerId === provider.ready.peerId), 'the consumer to learn the provider')
    // warm both paths (connections, JIT) before anything is measured
    await round(standin.url, 10, tokens)
    await round(consumer.ready.api, 10, tokens)
    const idle = await processMemory(provider.pid)

    const figures: Figure[] = []
    const notes: string[] = [
      `${tokens} tokens × ${TOKEN_BYTES} bytes per stream; the provider has ${maxLevel} slots, so no stream waits in its queue`,
      `provider idle RSS before the levels: ${idle.rssMb.toFixed(0)} MB; clients, consumer, provider and stand-in share the machine's ${availableParallelism()} cores`
    ]
    for (const level of levels) {
      const direct: Round[] = []
      const krill: Round[] = []
      const rssPeaks: number[] = []
      ctx.log(`concurrency: ${level} streams × ${rounds(level)} round(s)`)
      for (let r = 0; r < rounds(level); r++) {
        direct.push(await round(standin.url, level, tokens))
        const sampler = sampleRss(provider.pid)
        krill.push(await round(consumer.ready.api, level, tokens))
        rssPeaks.push(await sampler.stop())
        await standin.reset()
      }
      const failed = krill.reduce((n, r) => n + r.failed, 0)
      const directFailed = direct.reduce((n, r) => n + r.failed, 0)
      const errors = [...new Set(krill.flatMap(r => r.errors))].slice(0, 3)
      const completedNote = `${level * rounds(level) - failed}/${level * rounds(level)} streams completed via krill${directFailed > 0 ? `, ${directFailed} direct streams failed` : ''}${errors.length > 0 ? `; errors: ${errors.join(' | ')}` : ''}`
      figures.push(rateFigure({
        id: `concurrency.${level}.tokens`,
        label: `${level} streams: aggregate throughput`,
        baselineLabel: 'direct stand-in',
        baseline: direct.map(r => r.tokS),
        krill: krill.map(r => r.tokS),
        target: level >= 500 ? ratio => ({ text: '≥ 90 % of direct', met: ratio >= 0.9 }) : undefined,
        note: completedNote
      }))
      figures.push(latencyFigure({
        id: `concurrency.${level}.ttft`,
        label: `${level} streams: TTFT`,
        baselineLabel: 'direct stand-in',
        baseline: direct.flatMap(r => r.ttfts),
        krill: krill.flatMap(r => r.ttfts)
      }))
      const peak = summarize(rssPeaks)
      figures.push({
        id: `concurrency.${level}.rss`,
        label: `${level} streams: provider peak RSS`,
        unit: 'MB',
        baselineLabel: 'provider idle',
        baseline: summarize([idle.rssMb]),
        krill: peak,
        delta: { kind: 'added', median: peak.median - idle.rssMb, p99: peak.p99 - idle.rssMb },
        target: level >= 500 ? { text: `all ${level} complete, RSS < 400 MB in every burst`, met: failed === 0 && peak.max < 400 } : undefined,
        // V8 keeps the heap it grew for a burst: the peak creeps up over the first rounds
        note: level >= 100 && rssPeaks.length > 1 ? `peak RSS by round: ${rssPeaks.map(mb => mb.toFixed(0)).join(', ')} MB` : undefined
      })
    }
    const after = await processMemory(provider.pid)
    notes.push(`provider RSS after all levels: ${after.rssMb.toFixed(0)} MB (VmHWM ${after.peakRssMb.toFixed(0)} MB)`)
    return { figures, notes }
  }
}
