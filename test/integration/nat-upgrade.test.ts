/**
 * A chat whose relayed connection is replaced by a direct one mid-answer, the way
 * DCUtR replaces it: the new direct connection opens, then the relayed one is
 * closed (dcutr.js: `relayedConnection.close({ signal: AbortSignal.timeout(5000) })`),
 * and every stream on it ends. On loopback and in-process: DCUtR itself only
 * upgrades to public addresses, which loopback has none of, so the provider does
 * here exactly what DCUtR's unilateral upgrade does on its side — dial the consumer
 * directly, then close the relayed connection with DCUtR's own call.
 *
 * The provider listens only through the relay: nobody can dial it directly, so
 * until it dials out, the relayed connection is the only one the consumer has.
 * Consumer and provider are DHT clients (as nodes behind NATs are). As DHT servers
 * they turned up in each other's peer lookups and routing tables: the provider's
 * peer dialer connected to the consumer directly in the background, and libp2p's
 * reconnect queue redialed the provider (kad-dht tags its closest peers keep-alive)
 * the moment the relayed connection closed — on a loaded machine in the middle of
 * these tests, so that a "replacement" arrived before the test made one.
 */
import { rm } from 'node:fs/promises'
import type { Connection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChatEvent } from '../../src/engine/types.js'
import { isRelayedAddr } from '../../src/peers/index.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { tokenScript } from '../fixtures/standin-main.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'upgrade:1b'
// 300 tokens at 150/s: a 2 s answer, long enough to replace the connection in the middle
const SCRIPT = tokenScript(300, 16)
const REPLACE_AFTER_TOKENS = 40
/** dcutr.js's default timeout, used for its close of the relayed connection */
const DCUTR_TIMEOUT_MS = 5_000

describe('a chat on a relayed connection that DCUtR replaces by a direct one', () => {
  const nodes: TestDaemon[] = []
  let standin: OllamaStandin
  let relay: TestDaemon
  let provider: TestDaemon
  let consumer: TestDaemon
  let circuitAddr: string

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }], knobs: { tokens: SCRIPT, tokensPerSecond: 150 } })
    relay = await startTestDaemon({ relay: true, serve: false })
    nodes.push(relay)
    provider = await startTestDaemon({ ollama: standin.url, listen: [`${relay.daemon.addrs()[0]}/p2p-circuit`], modelRefreshMs: 200, dhtMode: 'client' })
    nodes.push(provider)
    consumer = await startTestDaemon({ serve: false, dhtMode: 'client' })
    nodes.push(consumer)
    const found = provider.daemon.addrs().find(a => a.includes('/p2p-circuit/'))
    if (found == null) throw new Error(`the provider has no relayed address: ${provider.daemon.addrs().join(', ')}`)
    circuitAddr = found
  })

  afterAll(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    await standin?.stop()
  })

  const providerId = (): string => provider.daemon.peerId.toString()
  const consumerConns = (): Connection[] => consumer.daemon.libp2p.getConnections(provider.daemon.peerId)

  /** dials the provider through the relay and waits until its model is known */
  async function relayedOnly (): Promise<void> {
    await consumer.daemon.libp2p.dial(multiaddr(circuitAddr))
    expect(consumerConns().map(c => isRelayedAddr(c.remoteAddr))).toEqual([true])
    await waitFor(() => consumer.daemon.providers.providersFor(MODEL).some(e => e.peerId === providerId()), 'the consumer to learn the provider\'s model over the relayed connection', 15_000)
  }

  /** Starts a chat through the consumer's router, collecting its events. */
  function chat (): { events: ChatEvent[], deltas: () => number, done: Promise<unknown> } {
    const events: ChatEvent[] = []
    const done = (async () => {
      for await (const e of consumer.daemon.router.chat({ model: MODEL, messages: [{ role: 'user', content: 'a long story, please' }] })) events.push(e)
    })()
    return { events, deltas: () => events.filter(e => e.type === 'delta').length, done }
  }

  /** On the provider: what DCUtR's unilateral upgrade does once it sees the relayed connection. */
  async function upgradeLikeDcutr (opts: { direct: boolean }): Promise<void> {
    const provLibp2p = provider.daemon.libp2p
    const relayed = provLibp2p.getConnections(consumer.daemon.peerId).find(c => isRelayedAddr(c.remoteAddr))
    if (relayed == null) throw new Error('the provider has no relayed connection to the consumer')
    // the chat is streaming on exactly this connection
    expect(relayed.streams.some(s => s.protocol === CHAT_PROTOCOL)).toBe(true)
    if (opts.direct) {
      const direct = await provLibp2p.dial(multiaddr(consumer.daemon.addrs()[0]), { force: true })
      expect(isRelayedAddr(direct.remoteAddr)).toBe(false)
    }
    await relayed.close({ signal: AbortSignal.timeout(DCUTR_TIMEOUT_MS) })
  }

  it('ends the chat as before when the relayed connection closes and nothing replaces it (one provider: nobody left)', async () => {
    await relayedOnly()
    const before = standin.requests.length
    const c = chat()
    await waitFor(() => c.deltas() >= REPLACE_AFTER_TOKENS, 'the answer to start streaming', 10_000)
    await upgradeLikeDcutr({ direct: false })
    await expect(c.done).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringMatching(/tried 1/) })
    // asked once: a connection that went away with no successor is an ordinary failure
    expect(standin.requests.length - before).toBe(1)
    expect(consumer.daemon.router.stats).toMatchObject({ reconnects: 0, failovers: 1 })
    // the provider's backoff must not hide it from the next test
    consumer.daemon.router.backoff.succeed(providerId())
  })

  it('asks the provider again on the direct connection and delivers the whole answer once', async () => {
    await waitFor(() => consumerConns().length === 0, 'the closed relayed connection to go away', 5_000)
    await relayedOnly()
    const before = standin.requests.length
    const c = chat()
    await waitFor(() => c.deltas() >= REPLACE_AFTER_TOKENS, 'the answer to start streaming', 10_000)
    await upgradeLikeDcutr({ direct: true })
    await c.done

    // one unbroken answer: one accepted, every token exactly once, in order, one done
    expect(c.events.filter(e => e.type === 'accepted')).toHaveLength(1)
    const text = c.events.map(e => e.type === 'delta' ? e.content ?? '' : '').join('')
    expect(text).toBe(SCRIPT.join(''))
    expect(c.events.at(-1)).toMatchObject({ type: 'done', usage: { completionTokens: SCRIPT.length } })

    // the same provider, asked a second time: to continue the partial answer
    const asked = standin.requests.slice(before)
    expect(asked).toHaveLength(2)
    expect(asked[0].aborted).toBe(true)
    const partial = asked[1].body.messages.at(-1)
    expect(partial.role).toBe('assistant')
    expect(partial.content.length).toBeGreaterThan(0)
    expect(SCRIPT.join('').startsWith(partial.content)).toBe(true)
    expect(consumer.daemon.router.stats).toMatchObject({ reconnects: 1, failovers: 1, completed: 1 })

    // and the continuation ran on the direct connection, the only one left (the
    // consumer's end of the relayed one may close a moment after the provider's)
    await waitFor(() => consumerConns().filter(c => c.status === 'open').every(c => !isRelayedAddr(c.remoteAddr)), 'the consumer\'s end of the relayed connection to close', 10_000)
    const left = consumerConns().filter(c => c.status === 'open')
    expect(left.map(c => isRelayedAddr(c.remoteAddr))).toEqual([false])
  })
})
