/**
 * Failover: the delay a client sees when the provider serving its chat is SIGKILLed,
 * against the same request when nothing is killed.
 *
 * Two providers are real `krill daemon` processes, each serving its own stand-in
 * (in this process, so the bench sees at once which one received the chat); the
 * consumer runs in this process and the client is the `ollama` npm client on its
 * /api/chat. Each killed provider is replaced by a fresh process before the next
 * trial, so every trial starts with two healthy providers.
 *
 * - before the first token: the stand-ins wait FIRST_TOKEN_DELAY_MS before their
 *   first token; the serving provider is killed the moment its stand-in has the
 *   request. Figure: time to first token, with vs without the kill.
 * - mid-stream: the stand-ins emit a token every 1000/TPS ms; the serving provider
 *   is killed the moment the client has MID_STREAM_AFTER tokens. Figure: the gap
 *   between that token and the next, with vs without the kill.
 */
import { performance } from 'node:perf_hooks'
import { DEFAULT_TOKENS, OllamaStandin } from '../../fixtures/ollama-standin.js'
import type { TestDaemon } from '../../helpers/swarm.js'
import { ollamaChat } from '../clients.js'
import type { BenchContext, Section } from '../context.js'
import { latencyFigure } from '../report.js'
import { MODEL, OPEN_LIMITS, startKrillInProcess, startKrillProc, until, type KrillProc } from '../procs.js'

const FIRST_TOKEN_DELAY_MS = 200
const TPS = 50
const TOKENS = 30
const MID_STREAM_AFTER = 10

interface Slot { standin: OllamaStandin, proc?: KrillProc }

class Providers {
  readonly slots: Slot[] = []
  constructor (private readonly ctx: BenchContext, private readonly consumer: TestDaemon) {}

  async start (): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
      this.ctx.cleanup.add(`failover stand-in ${i}`, async () => { await standin.stop() })
      const slot: Slot = { standin }
      this.slots.push(slot)
      await this.respawn(slot)
    }
  }

  /** (Re)starts the provider process of `slot` and waits until the consumer lists it. */
  async respawn (slot: Slot): Promise<void> {
    await slot.proc?.close()
    slot.proc = await startKrillProc(this.ctx.cleanup, {
      ollama: slot.standin.url,
      bootstrap: [this.consumer.daemon.addrs()[0]],
      config: { slots: 4, limits: OPEN_LIMITS }
    })
    const id = slot.proc.ready.peerId
    await until(() => this.consumer.daemon.providers.providersFor(MODEL).some(p => p.peerId === id), 'the consumer to learn a provider')
  }

  knobs (k: Partial<OllamaStandin['knobs']>): void {
    for (const s of this.slots) {
      s.standin.knobs = { tokens: DEFAULT_TOKENS.slice(0, 1), tokensPerSecond: 0, firstTokenDelayMs: 0, ...k }
      s.standin.requests = []
    }
  }

  /** the slot whose stand-in received the chat, as soon as one has */
  async serving (): Promise<Slot> {
    let found: Slot | undefined
    await until(() => (found = this.slots.find(s => s.standin.requests.length > 0)) != null, 'a provider to receive the chat', 10_000, 1)
    return found as Slot
  }
}

function tokens (n: number): string[] {
  return Array.from({ length: n }, (_, i) => ` t${i}`)
}

export const failoverSection: Section = {
  name: 'failover',
  title: 'Failover',
  run: async (ctx) => {
    const trials = ctx.quick ? 2 : 12
    const consumer = await startKrillInProcess(ctx.cleanup)
    const providers = new Providers(ctx, consumer)
    await providers.start()
    const api = consumer.daemon.apiUrl
    const result = { beforeBase: [] as number[], beforeKill: [] as number[], detect: [] as number[], midBase: [] as number[], midKill: [] as number[] }

    // warm the consumer's HTTP, router and connections
    providers.knobs({ tokens: tokens(4) })
    for (let i = 0; i < 4; i++) await ollamaChat(api, { numPredict: 4 })

    ctx.log(`failover: ${trials} trials per case`)
    for (let t = 0; t < trials; t++) {
      // before the first token, no kill
      providers.knobs({ tokens: tokens(TOKENS), firstTokenDelayMs: FIRST_TOKEN_DELAY_MS })
      result.beforeBase.push((await ollamaChat(api, { numPredict: TOKENS })).ttftMs)

      // before the first token, kill the serving provider as soon as its stand-in has the chat
      providers.knobs({ tokens: tokens(TOKENS), firstTokenDelayMs: FIRST_TOKEN_DELAY_MS })
      const pending = ollamaChat(api, { numPredict: TOKENS })
      pending.catch(() => {})
      const victim = await providers.serving()
      victim.proc?.child.kill('SIGKILL')
      const killedAt = performance.now()
      const other = providers.slots.find(s => s !== victim) as Slot
      await until(() => other.standin.requests.length > 0, 'the other provider to take over', 10_000, 1)
      result.detect.push(performance.now() - killedAt)
      const kill = await pending
      if (kill.tokens !== TOKENS) throw new Error(`failover before the first token: got ${kill.tokens} of ${TOKENS} tokens`)
      result.beforeKill.push(kill.ttftMs)
      await providers.respawn(victim)

      // mid-stream, no kill: the gap after token MID_STREAM_AFTER
      providers.knobs({ tokens: tokens(TOKENS), tokensPerSecond: TPS })
      result.midBase.push(await gapAfter(api, () => {}))

      // mid-stream, kill the serving provider when the client has MID_STREAM_AFTER tokens
      providers.knobs({ tokens: tokens(TOKENS), tokensPerSecond: TPS })
      let midVictim: Slot | undefined
      result.midKill.push(await gapAfter(api, (received) => {
        if (received !== MID_STREAM_AFTER) return
        midVictim = providers.slots.find(s => s.standin.requests.length > 0)
        midVictim?.proc?.child.kill('SIGKILL')
      }))
      if (midVictim == null) throw new Error('mid-stream: no provider was serving when the kill was due')
      await providers.respawn(midVictim)
    }
    const target = (added: { median: number }): { text: string, met: boolean } => ({ text: 'adds < 500 ms median', met: added.median < 500 })
    return {
      figures: [
        latencyFigure({ id: 'failover.before', label: 'failover before the first token: TTFT', baselineLabel: 'no kill', baseline: result.beforeBase, krill: result.beforeKill, target }),
        latencyFigure({ id: 'failover.detect', label: 'failover before the first token: kill → other provider asked', krill: result.detect }),
        latencyFigure({ id: 'failover.mid', label: `failover mid-stream: gap after token ${MID_STREAM_AFTER}`, baselineLabel: 'no kill', baseline: result.midBase, krill: result.midKill, target })
      ],
      notes: [
        `${trials} trials per case; the serving provider is a real \`krill daemon\` process killed with SIGKILL and replaced by a fresh one between trials`,
        `before the first token: stand-ins wait ${FIRST_TOKEN_DELAY_MS} ms before the first token (the kill comes within a few ms of the chat reaching Ollama, so the other provider's ${FIRST_TOKEN_DELAY_MS} ms is in both figures); mid-stream: ${TPS} tok/s, killed after ${MID_STREAM_AFTER} of ${TOKENS} tokens, the other provider continues the answer`
      ]
    }
  }
}

/** Streams one chat; the time between token MID_STREAM_AFTER and the next (ms). */
async function gapAfter (api: string, onToken: (received: number) => void): Promise<number> {
  const times: number[] = []
  const t = await ollamaChat(api, {
    numPredict: TOKENS,
    onToken: at => {
      times.push(at)
      onToken(times.length)
    }
  })
  if (t.tokens < TOKENS) throw new Error(`mid-stream: got ${t.tokens} of ${TOKENS} tokens`)
  return times[MID_STREAM_AFTER] - times[MID_STREAM_AFTER - 1]
}
