/**
 * One abusive peer against one provider while two honest peers use it:
 *
 * - the flooder opens chat streams far past its request rate and its concurrent
 *   stream limit, and publishes announcements: valid ones far too often, then garbage;
 * - the honest peers chat through their own daemons' HTTP APIs meanwhile.
 *
 * The honest chats all complete with the full answer; the flooder gets RATE_LIMITED
 * (and BUSY or stream resets) and its gossipsub score on the provider falls below zero
 * to the graylist; the provider's heap stays within a stated bound.
 */
import { readFile } from 'node:fs/promises'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { preSharedKey } from '@libp2p/pnet'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeAnnouncement } from '../../src/discovery/announcement.js'
import { ANNOUNCE_TOPIC } from '../../src/discovery/announcer.js'
import { ANNOUNCE_SCORE_THRESHOLDS } from '../../src/discovery/gossip-scoring.js'
import { KrillError } from '../../src/errors.js'
import { requestChat } from '../../src/protocol/chat-client.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { heapUsedMiB } from '../fuzz/fuzz.js'
import { startSwarm, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { testSwarmKey } from '../helpers/test-swarm-key.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'
const TOKENS = Array.from({ length: 20 }, (_, i) => ` t${i}`)
const ANSWER = TOKENS.join('')
// an honest peer here sends 6 chats in a few seconds: within its burst; the flooder sends 600
const LIMITS = { maxStreamsPerPeer: 3, requestsPerMinute: 60, requestBurst: 10 }
/** chat requests the flooder sends: 60 times its burst, in a few seconds */
const FLOOD_CHATS = 600
const FLOOD_WAVE = 100
const VALID_ANNOUNCEMENTS = 40
const GARBAGE_ANNOUNCEMENTS = 200
const HONEST_CHATS_EACH = 5
/** the bound this test states for the provider's process heap growth under the flood */
const HEAP_BOUND_MIB = 16

interface Flooder {
  node: Libp2p<{ pubsub: GossipSub, identify: unknown }>
  stop: () => Promise<void>
}

async function startFlooder (): Promise<Flooder> {
  const node = await createLibp2p({
    // an abuser inside the swarm: it holds the swarm key, as any invited member does
    connectionProtector: preSharedKey({ psk: await readFile(testSwarmKey()) }),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
    }
  })
  return { node, stop: async () => { await node.stop() } }
}

async function honestChat (node: TestDaemon): Promise<{ ok: boolean, content: string, status: number, ms: number }> {
  const started = Date.now()
  const res = await fetch(`${node.daemon.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'tell me about krill' }] })
  })
  const text = await res.text()
  const content = text.split('\n')
    .filter(l => l.startsWith('data: {'))
    .map(l => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? '')
    .join('')
  return { ok: res.status === 200 && text.trimEnd().endsWith('data: [DONE]'), content, status: res.status, ms: Date.now() - started }
}

describe('a flooding peer next to honest ones', () => {
  let standin: OllamaStandin
  let swarm: Swarm
  let provider: TestDaemon
  let honest: TestDaemon[]
  let flooder: Flooder

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokens: TOKENS, tokensPerSecond: 200 } })
    swarm = await startSwarm(3, i => i === 0
      ? { ollama: standin.url, modelRefreshMs: 200, slots: 2, maxQueue: 8, limits: LIMITS }
      : {})
    provider = swarm.nodes[0]
    honest = swarm.nodes.slice(1)
    for (const h of honest) await waitFor(() => h.daemon.providers.providersFor(MODEL).length === 1, 'the honest peers to learn the provider')

    flooder = await startFlooder()
    flooder.node.services.pubsub.subscribe(ANNOUNCE_TOPIC)
    await flooder.node.dial(multiaddr(provider.daemon.addrs()[0]))
    await waitFor(() => flooder.node.services.pubsub.getSubscribers(ANNOUNCE_TOPIC).map(String).includes(provider.daemon.peerId.toString()),
      'the flooder to see the provider on the announcement topic')
  })

  afterAll(async () => {
    await flooder?.stop()
    await swarm?.stop()
    await standin?.stop()
  })

  it('serves the honest peers in full while the flooder is limited, scored down and graylisted, within bounded memory', async () => {
    const pubsub = provider.daemon.libp2p.services.pubsub
    const flooderId = flooder.node.peerId.toString()
    // warm up, then take the baseline
    expect((await honestChat(honest[0])).content).toBe(ANSWER)
    const heapBefore = heapUsedMiB()

    // --- the flood ---------------------------------------------------------------
    const chatOutcomes: Record<string, number> = {}
    let resetSample = ''
    const floodStartedAt = Date.now()
    let floodMs = 0
    const chatFlood = (async () => {
      for (let sent = 0; sent < FLOOD_CHATS; sent += FLOOD_WAVE) {
        await Promise.all(Array.from({ length: FLOOD_WAVE }, async () => {
          let key = 'done'
          try {
            for await (const _ of requestChat(flooder.node, provider.daemon.peerId, { model: MODEL, messages: [{ role: 'user', content: 'flood' }] }, { totalTimeoutMs: 20_000 })) { /* drain */ }
          } catch (err) {
            key = err instanceof KrillError
              ? (err.code === 'ENGINE_FAILED' ? 'stream reset by libp2p' : err.code)
              : 'local stream limit'
            if (key === 'stream reset by libp2p') resetSample ||= (err as Error).message
          }
          chatOutcomes[key] = (chatOutcomes[key] ?? 0) + 1
        }))
      }
      floodMs = Date.now() - floodStartedAt
    })()

    const gossip = flooder.node.services.pubsub
    const announcementFlood = (async () => {
      // valid but far too frequent: the provider takes a burst, then ignores the rest
      for (let seq = 1; seq <= VALID_ANNOUNCEMENTS; seq++) {
        const { bytes } = encodeAnnouncement({
          models: [{ name: 'flood:1b', digest: 'f'.repeat(64), size: 1, family: 'x', parameterSize: '1B', quantization: 'Q4', contextLength: 1 }],
          capacity: { slots: 1, active: 0, queued: 0 },
          version: 'krill/0.1.0',
          seq,
          timestampMs: Date.now(),
          ttlMs: 60_000
        })
        await gossip.publish(ANNOUNCE_TOPIC, bytes).catch(() => {})
      }
      await waitFor(() => (provider.daemon.announcementStats?.ignoredByReason['rate-limited'] ?? 0) > 0, 'the provider to rate-limit the valid flood')
      // then garbage: every message is Rejected and costs the sender score
      for (let i = 0; i < GARBAGE_ANNOUNCEMENTS; i++) {
        await gossip.publish(ANNOUNCE_TOPIC, Uint8Array.from({ length: 32 + (i % 64) }, (_, j) => (i * 31 + j * 7) & 0xff)).catch(() => {})
      }
    })()

    // --- meanwhile, the honest peers ---------------------------------------------
    const honestResults = await Promise.all(honest.map(async h => {
      const results = []
      for (let i = 0; i < HONEST_CHATS_EACH; i++) results.push(await honestChat(h))
      return results
    }))
    await Promise.all([chatFlood, announcementFlood])

    // --- verdicts --------------------------------------------------------------------
    const all = honestResults.flat()
    const honestMs = all.map(r => r.ms)
    await waitFor(() => pubsub.getScore(flooderId) < ANNOUNCE_SCORE_THRESHOLDS.graylistThreshold!, 'the flooder to be graylisted', 10_000)
    const score = pubsub.getScore(flooderId)
    const honestScores = honest.map(h => pubsub.getScore(h.daemon.peerId.toString()))
    const counters = provider.daemon.chatServer!.stats.counters
    const ann = provider.daemon.announcementStats!
    const heapAfter = heapUsedMiB()
    console.log([
      `honest: ${all.filter(r => r.ok && r.content === ANSWER).length}/${all.length} complete, ${Math.min(...honestMs)}-${Math.max(...honestMs)} ms each`,
      `flooder chats (${FLOOD_CHATS}): ${JSON.stringify(chatOutcomes)}${resetSample !== '' ? ` (e.g. "${resetSample}")` : ''}`,
      `provider refused: ${JSON.stringify(counters.refused)}`,
      `announcements: rejected ${ann.rejected} ${JSON.stringify(ann.rejectedByReason)}, ignored ${JSON.stringify(ann.ignoredByReason)}, accepted ${ann.accepted}`,
      `flooder score on the provider ${score.toFixed(1)} (graylist below ${ANNOUNCE_SCORE_THRESHOLDS.graylistThreshold}), honest ${honestScores.map(s => s.toFixed(2)).join(', ')}`,
      `heap ${heapBefore.toFixed(1)} → ${heapAfter.toFixed(1)} MiB (${(heapAfter - heapBefore).toFixed(1)}, bound ${HEAP_BOUND_MIB})`
    ].join('\n'))

    // honest peers: every chat complete, with the full answer
    for (const r of all) {
      expect(r.status).toBe(200)
      expect(r.ok).toBe(true)
      expect(r.content).toBe(ANSWER)
    }
    // the flooder: only about its burst ran, plus what arrived while a slot was free
    // (the per-minute limit is an abuse limit that never refuses while a slot is
    // free: at most the 2 slots at the start of each wave), plus what the bucket
    // refilled (requestsPerMinute) while the flood lasted — a few seconds, longer on a
    // loaded machine; the rest was refused by the per-minute limit, the
    // concurrent-stream limit, or (beyond 2 × streams + 16 open streams on one
    // connection) by libp2p itself before krill saw them
    const refilled = Math.ceil(floodMs / 60_000 * LIMITS.requestsPerMinute)
    expect(chatOutcomes.done ?? 0).toBeLessThanOrEqual(LIMITS.requestBurst + refilled + 2 + 2 * (FLOOD_CHATS / FLOOD_WAVE))
    expect(chatOutcomes.RATE_LIMITED).toBeGreaterThan(20)
    expect((chatOutcomes.RATE_LIMITED ?? 0) + (chatOutcomes['stream reset by libp2p'] ?? 0) + (chatOutcomes.BUSY ?? 0)).toBe(FLOOD_CHATS - (chatOutcomes.done ?? 0))
    // both per-peer limits bite; how the refusals split between them depends on how
    // fast the flood arrives (under load more of it meets the stream limit first)
    expect(counters.refused['requests-per-minute']).toBeGreaterThan(0)
    expect(counters.refused['requests-per-minute'] + counters.refused['streams-per-peer']).toBeGreaterThan(20)
    expect(counters.refused['streams-per-peer']).toBeGreaterThan(0)
    // announcements: valid ones rate-limited, garbage rejected, and the sender graylisted
    expect(ann.ignoredByReason['rate-limited']).toBeGreaterThan(0)
    expect(ann.rejected).toBeGreaterThanOrEqual(3)
    expect(score).toBeLessThan(0)
    for (const s of honestScores) expect(s).toBeGreaterThanOrEqual(0)
    // memory: a flood costs the provider a bounded amount
    expect(heapAfter - heapBefore).toBeLessThan(HEAP_BOUND_MIB)

    // the flooder's table entries are bounded too, and the honest view is intact
    expect(provider.daemon.providers.all().filter(e => e.peerId === flooderId).length).toBeLessThanOrEqual(1)
    expect((await honestChat(honest[1])).content).toBe(ANSWER)
    // a breach is visible in /metrics
    const metrics = await (await fetch(`${provider.daemon.apiUrl}/metrics`)).text()
    expect(metrics).toMatch(/^krill_chat_refused_total\{reason="requests-per-minute"\} [1-9]/m)
    expect(metrics).toMatch(/^krill_announcements_ignored_total\{reason="rate-limited"\} [1-9]/m)
  })
})

