/**
 * The router tells discovery about a provider it could not reach at all (the chat
 * client's `unreachable` failure): the provider table forgets it until it announces
 * again. A provider that answered, even with BUSY, stays listed. The healthy peer
 * is an OllamaEngine on the stand-in, behind the same RemoteChat seam the daemon
 * binds to the chat protocol.
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ValidAnnouncement } from '../../src/discovery/announcement.js'
import { ProviderTable } from '../../src/discovery/provider-table.js'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import type { ChatEvent, ModelInfo } from '../../src/engine/types.js'
import { KrillError } from '../../src/errors.js'
import type { RemoteChat } from '../../src/router/provider.js'
import { Router } from '../../src/router/router.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'

const MODEL = 'llama3.2:1b'
const hex = (s: string): string => createHash('sha256').update(s).digest('hex')
const info: ModelInfo = { name: MODEL, digest: hex(MODEL), size: 1, family: 'llama', parameterSize: '1B', quantization: 'Q8_0', contextLength: 8192 }
// the gone peer looks idle (ranked first), the healthy one busy
const ann = (seq: number, slots: number, active: number): ValidAnnouncement => ({ models: [info], capacity: { slots, active, queued: 0 }, version: 'krill/0.1.0', seq, timestampMs: 0, ttlMs: 3_600_000 })

async function drain (events: AsyncIterable<ChatEvent>): Promise<ChatEvent[]> {
  const out: ChatEvent[] = []
  for await (const e of events) out.push(e)
  return out
}

describe('router: a provider it cannot dial', () => {
  let standin: OllamaStandin
  let engine: OllamaEngine
  let failure: () => KrillError
  const table = new ProviderTable({ selfId: 'self' })

  const remoteChat: RemoteChat = async function * (peerId, request, signal) {
    if (peerId === 'gone') throw failure()
    yield { type: 'accepted', peer: peerId, digest: info.digest, queuePosition: 0 }
    yield * engine.chat(request, signal)
  }
  const router = new Router({ selfId: 'self', providers: table, remoteChat, unreachable: peer => { table.forgetUnreachable(peer) } }, { random: () => 0.5 })

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    engine = new OllamaEngine({ host: standin.url })
    table.applyAnnouncement('healthy', ann(1, 1, 1))
  })

  afterAll(async () => { await standin.stop() })

  it('is forgotten until it announces again; one that answered BUSY is not', async () => {
    table.applyAnnouncement('gone', ann(1, 8, 0))
    failure = () => new KrillError('ENGINE_FAILED', 'could not open a chat stream to peer gone: connect ECONNREFUSED', { peer: 'gone', unreachable: true })
    const events = await drain(router.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }))
    expect(events.at(-1)?.type).toBe('done')
    expect(router.stats.failovers).toBe(1)
    expect(table.providersFor(MODEL).map(e => e.peerId)).toEqual(['healthy'])

    // it announces again (a higher seq): listed; this time it answers BUSY
    table.applyAnnouncement('gone', ann(2, 8, 0))
    failure = () => new KrillError('BUSY', 'all slots taken', { peer: 'gone' })
    router.backoff.succeed('gone')
    await drain(router.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }))
    expect(router.stats.failovers).toBe(2)
    expect(table.providersFor(MODEL).map(e => e.peerId).sort()).toEqual(['gone', 'healthy'])
  })
})
