/**
 * Time to first token, one request at a time, each path against the same stand-in
 * in the same loop (paths take turns, so drift in the machine hits all alike):
 *
 * - HTTP: the `ollama` client straight to the stand-in vs the same client to the
 *   consumer's /api/chat (consumer → libp2p → provider → stand-in);
 * - OpenAI SSE: krill's /v1/chat/completions, against the same direct baseline;
 * - protocol: OllamaEngine.chat straight to the stand-in vs requestChat from a
 *   node in this process to the provider — the libp2p part alone, so that
 *   (HTTP added) − (protocol added) is what the consumer's HTTP side costs.
 */
import { tokenScript } from '../../fixtures/standin-main.js'
import { engineChat, ollamaChat, openAiSse, protocolChat, type StreamTiming } from '../clients.js'
import type { Section } from '../context.js'
import { line, TOKEN_BYTES } from '../line.js'
import { latencyFigure } from '../report.js'

/** short answers: TTFT is about the first token */
const TOKENS = 4

export const ttftSection: Section = {
  name: 'ttft',
  title: 'Time to first token',
  run: async (ctx) => {
    const l = await line(ctx)
    // the stand-in builds its whole script for every request: keep it as short as the answer
    await l.standin.setKnobs({ tokens: tokenScript(TOKENS, TOKEN_BYTES), tokensPerSecond: 0, firstTokenDelayMs: 0 })
    const warmup = ctx.quick ? 10 : 100
    const iterations = ctx.quick ? 40 : 1_000
    const paths: Array<{ key: string, call: () => Promise<StreamTiming> }> = [
      { key: 'direct', call: async () => await ollamaChat(l.standin.url, { numPredict: TOKENS }) },
      { key: 'krill', call: async () => await ollamaChat(l.consumer.ready.api, { numPredict: TOKENS }) },
      { key: 'sse', call: async () => await openAiSse(l.consumer.ready.api, { numPredict: TOKENS }) },
      { key: 'engine', call: async () => await engineChat(l.engine, { numPredict: TOKENS }) },
      { key: 'protocol', call: async () => await protocolChat(l.probe.daemon.libp2p, l.providerId, { numPredict: TOKENS }) }
    ]
    const samples = new Map<string, number[]>(paths.map(p => [p.key, []]))
    ctx.log(`TTFT: ${warmup} warm-up + ${iterations} rounds of ${paths.length} paths`)
    for (let i = 0; i < warmup + iterations; i++) {
      for (let j = 0; j < paths.length; j++) {
        // rotate the order each round: no path always runs right after the same other one
        const path = paths[(i + j) % paths.length]
        const t = await path.call()
        if (t.tokens !== TOKENS) throw new Error(`${path.key}: expected ${TOKENS} tokens, got ${t.tokens}`)
        if (i >= warmup) samples.get(path.key)?.push(t.ttftMs)
      }
      if (i % 200 === 199) await l.standin.reset()
    }
    const get = (k: string): number[] => samples.get(k) ?? []
    const addedTarget = (added: { median: number }): { text: string, met: boolean } => ({ text: 'added ≤ 2 ms median', met: added.median <= 2 })
    return {
      figures: [
        latencyFigure({ id: 'ttft.http', label: 'TTFT, ollama client: direct vs via krill /api/chat', baselineLabel: 'direct stand-in', baseline: get('direct'), krill: get('krill'), target: addedTarget }),
        latencyFigure({ id: 'ttft.sse', label: 'TTFT, OpenAI SSE via krill /v1/chat/completions', baselineLabel: 'direct stand-in', baseline: get('direct'), krill: get('sse') }),
        latencyFigure({ id: 'ttft.protocol', label: 'TTFT, protocol: engine.chat vs requestChat', baselineLabel: 'engine.chat', baseline: get('engine'), krill: get('protocol') })
      ],
      notes: [
        `${iterations} requests per path (after ${warmup} warm-up rounds), ${TOKENS}-token answers, stand-in with no first-token delay; paths take turns`,
        'consumer and provider are separate `krill daemon` processes; the protocol figure opens /krill/chat/1.0.0 from a node in the bench process straight to the provider'
      ]
    }
  }
}
