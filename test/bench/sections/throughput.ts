/**
 * Per-stream token throughput: one long answer at a time, the stand-in emitting as
 * fast as it can (tokensPerSecond 0), through krill vs straight to the stand-in.
 * The rate is the streaming rate the client sees: (tokens − 1) / (last token −
 * first token). A paced run (the stand-in at a fixed rate, as a real model is)
 * shows whether krill keeps up with a source slower than its own limit.
 */
import { performance } from 'node:perf_hooks'
import { tokenScript } from '../../fixtures/standin-main.js'
import { engineChat, ollamaChat, protocolChat, type StreamOptions, type StreamTiming } from '../clients.js'
import type { Section } from '../context.js'
import { line, TOKEN_BYTES } from '../line.js'
import { rateFigure } from '../report.js'

async function rate (call: (opts: StreamOptions) => Promise<StreamTiming>, tokens: number): Promise<number> {
  let first = NaN
  let last = NaN
  const t = await call({
    numPredict: tokens,
    onToken: at => {
      if (Number.isNaN(first)) first = at
      last = at
    }
  })
  if (t.tokens !== tokens) throw new Error(`expected ${tokens} tokens, got ${t.tokens}`)
  return (tokens - 1) / ((last - first) / 1000)
}

export const throughputSection: Section = {
  name: 'throughput',
  title: 'Per-stream throughput',
  run: async (ctx) => {
    const l = await line(ctx)
    const tokens = ctx.quick ? 3_000 : 20_000
    const runs = ctx.quick ? 3 : 20
    const paths: Array<{ key: string, call: (o: StreamOptions) => Promise<StreamTiming> }> = [
      { key: 'direct', call: async o => await ollamaChat(l.standin.url, o) },
      { key: 'krill', call: async o => await ollamaChat(l.consumer.ready.api, o) },
      { key: 'engine', call: async o => await engineChat(l.engine, o) },
      { key: 'protocol', call: async o => await protocolChat(l.probe.daemon.libp2p, l.providerId, o) }
    ]
    const samples = new Map<string, number[]>(paths.map(p => [p.key, []]))
    ctx.log(`throughput: 1 warm-up + ${runs} runs of ${tokens} tokens per path`)
    await l.standin.setKnobs({ tokens: tokenScript(tokens, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    for (let i = 0; i < runs + 1; i++) {
      for (let j = 0; j < paths.length; j++) {
        const path = paths[(i + j) % paths.length]
        const r = await rate(path.call, tokens)
        if (i > 0) samples.get(path.key)?.push(r)
      }
    }
    const get = (k: string): number[] => samples.get(k) ?? []
    const figures = [
      rateFigure({
        id: 'throughput.http',
        label: 'throughput, 1 stream, stand-in flat out: ollama client direct vs via krill',
        baselineLabel: 'direct stand-in',
        baseline: get('direct'),
        krill: get('krill'),
        target: ratio => ({ text: '≥ 80 % of direct (goal 95 %)', met: ratio >= 0.8 })
      }),
      rateFigure({ id: 'throughput.protocol', label: 'throughput, 1 stream, protocol: engine.chat vs requestChat', baselineLabel: 'engine.chat', baseline: get('engine'), krill: get('protocol') })
    ]
    const notes = [`${runs} runs per path of ${tokens} tokens × ${TOKEN_BYTES} bytes each, after one warm-up run; the stand-in emits as fast as it can`]

    // a source slower than krill's own limit: does krill keep up?
    const pacedTps = 500
    const pacedTokens = ctx.quick ? 250 : 1_000
    const pacedRuns = ctx.quick ? 1 : 3
    await l.standin.setKnobs({ tokensPerSecond: pacedTps })
    const paced = { direct: [] as number[], krill: [] as number[] }
    const started = performance.now()
    try {
      for (let i = 0; i < pacedRuns; i++) {
        paced.direct.push(await rate(paths[0].call, pacedTokens))
        paced.krill.push(await rate(paths[1].call, pacedTokens))
      }
    } finally {
      await l.standin.setKnobs({ tokens: tokenScript(tokens, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    }
    figures.push(rateFigure({
      id: 'throughput.paced',
      label: `throughput, 1 stream, stand-in paced at ${pacedTps} tok/s: direct vs via krill`,
      baselineLabel: 'direct stand-in',
      baseline: paced.direct,
      krill: paced.krill,
      target: ratio => ({ text: '≥ 95 % of direct', met: ratio >= 0.95 })
    }))
    notes.push(`paced: ${pacedRuns} run(s) of ${pacedTokens} tokens per path in ${((performance.now() - started) / 1000).toFixed(1)} s (the stand-in sleeps 1000/${pacedTps} ms between tokens, so its real rate is a little lower)`)
    return { figures, notes }
  }
}
