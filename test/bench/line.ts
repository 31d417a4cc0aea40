/**
 * The set-up TTFT and throughput are measured on, as a real deployment has it:
 *
 *   bench client ──HTTP──► consumer (krill process, --no-serve)
 *                              │ libp2p
 *   probe node (in this    ──►provider (krill process) ──HTTP──► stand-in (own process)
 *   process, requestChat)
 *
 * and the baselines go straight to the same stand-in: the `ollama` client for the
 * HTTP figures, krill's OllamaEngine (in this process) for the protocol figures.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import type { TestDaemon } from '../helpers/swarm.js'
import type { BenchContext } from './context.js'
import { MODEL, OPEN_LIMITS, providersVia, startKrillInProcess, startKrillProc, startStandinProc, until, type KrillProc, type StandinProc } from './procs.js'

/** bytes per stand-in token: about what an LLM token is in English text */
export const TOKEN_BYTES = 6

export interface Line {
  standin: StandinProc
  provider: KrillProc
  providerId: PeerId
  consumer: KrillProc
  /** in-process node the protocol-level figures use (requestChat) */
  probe: TestDaemon
  /** krill's engine straight to the stand-in (the protocol-level baseline) */
  engine: OllamaEngine
}

export async function line (ctx: BenchContext): Promise<Line> {
  return await ctx.shared('line', async () => {
    ctx.log('starting stand-in, provider and consumer processes')
    // each section sets the stand-in's script to what it needs
    const standin = await startStandinProc(ctx.cleanup)
    const provider = await startKrillProc(ctx.cleanup, {
      ollama: standin.url,
      config: { slots: 16, maxQueue: 1_000, limits: OPEN_LIMITS }
    })
    const bootstrap = [provider.ready.addrs[0]]
    const consumer = await startKrillProc(ctx.cleanup, { bootstrap })
    const probe = await startKrillInProcess(ctx.cleanup, { bootstrap })
    const providerId = peerIdFromString(provider.ready.peerId)
    await until(async () => (await providersVia(consumer.ready.api, MODEL)).some(p => p.peerId === provider.ready.peerId), 'the consumer to learn the provider')
    await until(() => probe.daemon.providers.providersFor(MODEL).some(p => p.peerId === provider.ready.peerId), 'the probe node to learn the provider')
    return { standin, provider, providerId, consumer, probe, engine: new OllamaEngine({ host: standin.url }) }
  })
}

export { MODEL }
