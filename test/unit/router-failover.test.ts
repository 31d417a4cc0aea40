/**
 * The Router's attempt loop against real engines: each "peer" is an OllamaEngine on
 * its own stand-in, reached through the same RemoteChat seam the daemon binds to
 * the chat protocol. Network failover is covered by test/integration/api*.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ProviderTable } from '../../src/discovery/provider-table.js'
import { sameModel } from '../../src/models/index.js'
import { POLICY_FILE, PolicyStore } from '../../src/policy/policy-store.js'
import type { ProviderDirectory, ProviderEntry } from '../../src/discovery/types.js'
import { OllamaEngine } from '../../src/engine/ollama-engine.js'
import type { ChatEvent, ChatRequest, ModelInfo } from '../../src/engine/types.js'
import { KrillError } from '../../src/errors.js'
import type { RemoteChat } from '../../src/router/provider.js'
import { Router, type RouterDeps, type ServedInfo } from '../../src/router/router.js'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'

const MODEL = 'llama3.2:1b'
const SCRIPT = DEFAULT_TOKENS.join('')

interface Peer { id: string, standin: OllamaStandin, engine: OllamaEngine, info: ModelInfo }

let peers: Peer[] = []

async function startPeer (id: string, name = MODEL): Promise<Peer> {
  const standin = await OllamaStandin.start({ models: [{ name }] })
  const engine = new OllamaEngine({ host: standin.url })
  const [info] = await engine.listModels()
  return { id, standin, engine, info }
}

function directory (list: () => Peer[], capacity: Record<string, number> = {}): ProviderDirectory {
  const entries = (): ProviderEntry[] => list().map(p => ({
    peerId: p.id,
    model: p.info,
    capacity: { slots: capacity[p.id] ?? 1, active: 0, queued: 0 },
    version: 'krill/0.1.0',
    source: 'gossip' as const,
    receivedAt: Date.now(),
    expiresAt: Date.now() + 60_000
  }))
  return {
    // like the real ProviderTable: names compare by model id (src/models)
    providersFor: (model, digest) => entries().filter(e => sameModel(e.model.name, model) && (digest == null || e.model.digest === digest)),
    catalog: () => [],
    all: entries
  }
}

const remoteChat: RemoteChat = async function * (peerId, request, signal) {
  const peer = peers.find(p => p.id === peerId)
  if (peer == null) throw new KrillError('NO_PROVIDER', `cannot reach ${peerId}`, { peer: peerId })
  yield { type: 'accepted', peer: peerId, digest: peer.info.digest, queuePosition: 0 }
  yield * peer.engine.chat(request, signal)
}

function router (over: Partial<RouterDeps> = {}, capacity: Record<string, number> = {}): Router {
  return new Router({ selfId: 'self', providers: directory(() => peers, capacity), remoteChat, ...over }, { random: () => 0.5, firstTokenTimeoutMs: 3_000, stallTimeoutMs: 3_000 })
}

async function collect (events: AsyncIterable<ChatEvent>): Promise<{ content: string, events: ChatEvent[] }> {
  const all: ChatEvent[] = []
  let content = ''
  for await (const e of events) {
    all.push(e)
    if (e.type === 'delta') content += e.content ?? ''
  }
  return { content, events: all }
}

const request = (over: Partial<ChatRequest> = {}): ChatRequest => ({ model: MODEL, messages: [{ role: 'user', content: 'say hello' }], ...over })

beforeEach(async () => {
  peers = [await startPeer('peer-a'), await startPeer('peer-b')]
})

afterEach(async () => {
  await Promise.all(peers.map(async p => { await p.standin.stop() }))
})

describe('Router', () => {
  it('streams one accepted, the deltas and one done from the best provider', async () => {
    const r = router({}, { 'peer-a': 4, 'peer-b': 1 })
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events[0]).toMatchObject({ type: 'accepted', peer: 'peer-a' })
    expect(events.filter(e => e.type === 'accepted')).toHaveLength(1)
    expect(events.at(-1)).toMatchObject({ type: 'done', usage: { completionTokens: DEFAULT_TOKENS.length, doneReason: 'stop' } })
    expect(peers[0].standin.requests).toHaveLength(1)
    expect(peers[1].standin.requests).toHaveLength(0)
    expect(r.stats).toMatchObject({ requests: 1, completed: 1, remote: 1, tokens: DEFAULT_TOKENS.length, failovers: 0 })
    expect(r.stats.ttftMs).toHaveLength(1)
  })

  it('finds providers under the other spelling of a name ("llama3" = "llama3:latest")', async () => {
    for (const p of peers) p.standin.addModel({ name: 'llama3:latest' })
    peers = await Promise.all(peers.map(async p => ({ ...p, info: (await p.engine.listModels()).find(m => m.name === 'llama3:latest') as ModelInfo })))
    const { content } = await collect(router().chat(request({ model: 'llama3' })))
    expect(content).toBe(SCRIPT)
    const served = peers.flatMap(p => p.standin.requests)
    expect(served).toHaveLength(1)
    expect(served[0].body.model).toBe('llama3:latest')
  })

  it('moves to the next provider invisibly when the first fails before any token', async () => {
    peers[0].standin.knobs.failWith = { status: 500, error: 'out of memory' }
    const r = router({}, { 'peer-a': 4, 'peer-b': 1 })
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'accepted')).toHaveLength(1)
    expect(peers[1].standin.requests).toHaveLength(1)
    expect(r.stats).toMatchObject({ failovers: 1, continuations: 0, completed: 1 })
    expect(r.backoff.until('peer-a')).toBeGreaterThan(Date.now())
    // the failed peer is backed off: the next chat goes to peer-b first
    await collect(r.chat(request()))
    expect(peers[0].standin.requests).toHaveLength(1)
    expect(peers[1].standin.requests).toHaveLength(2)
  })

  it('continues the same answer on another provider when the first dies mid-stream', async () => {
    peers[0].standin.knobs.dieAfterTokens = 5
    // the stand-in does not continue a trailing assistant message on its own: give
    // the second provider exactly the rest of the script, as a real model would write it
    peers[1].standin.knobs.tokens = DEFAULT_TOKENS.slice(5)
    const served: ServedInfo[] = []
    const r = router({ onServed: s => served.push(s) }, { 'peer-a': 4, 'peer-b': 1 })
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'delta')).toHaveLength(DEFAULT_TOKENS.length)
    const done = events.at(-1)
    expect(done).toMatchObject({ type: 'done', usage: { completionTokens: DEFAULT_TOKENS.length } })
    const continued = peers[1].standin.requests[0].body
    expect(continued.messages).toEqual([
      { role: 'user', content: 'say hello' },
      { role: 'assistant', content: DEFAULT_TOKENS.slice(0, 5).join('') }
    ])
    expect(r.stats).toMatchObject({ failovers: 1, continuations: 1, completed: 1 })
    expect(served).toEqual([expect.objectContaining({ outcome: 'done', peerId: 'peer-b', tokens: DEFAULT_TOKENS.length, failovers: 1 })])
  })

  it('uses the local engine first when it has the model and a free slot', async () => {
    const local = await startPeer('self')
    try {
      const r = router({ local: () => ({ engine: local.engine, models: [local.info] }) })
      const { content, events } = await collect(r.chat(request()))
      expect(content).toBe(SCRIPT)
      expect(events[0]).toMatchObject({ type: 'accepted', peer: 'self', digest: local.info.digest })
      expect(local.standin.requests).toHaveLength(1)
      expect(r.stats.local).toBe(1)
    } finally {
      await local.standin.stop()
    }
  })

  it('throws UNKNOWN_MODEL when nobody serves the model, after asking the DHT', async () => {
    const asked: string[] = []
    const r = router({ findProviders: async (model) => { asked.push(model); return [] } })
    await expect(collect(r.chat(request({ model: 'nope:1b' })))).rejects.toMatchObject({ code: 'UNKNOWN_MODEL' })
    expect(asked).toEqual(['nope:1b'])
  })

  it('asks the DHT when the table knows nobody and uses what it finds', async () => {
    const dhtEntry: ProviderEntry = {
      peerId: 'peer-b',
      model: { name: '', digest: '', size: 0, family: '', parameterSize: '', quantization: '', contextLength: 0 },
      capacity: { slots: 0, active: 0, queued: 0 },
      version: '',
      source: 'dht',
      receivedAt: Date.now(),
      expiresAt: Date.now() + 60_000
    }
    const r = router({ providers: directory(() => []), findProviders: async () => [dhtEntry] })
    const { content } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(peers[1].standin.requests).toHaveLength(1)
  })

  it('throws ENGINE_FAILED naming every reason once all providers failed', async () => {
    for (const p of peers) p.standin.knobs.failWith = { status: 500, error: `broken ${p.id}` }
    const r = router()
    const err = await collect(r.chat(request())).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(KrillError)
    expect(err).toMatchObject({ code: 'ENGINE_FAILED' })
    expect((err as Error).message).toMatch(/broken peer-a/)
    expect((err as Error).message).toMatch(/broken peer-b/)
    expect(r.stats).toMatchObject({ failed: 1, failovers: 2, errors: { ENGINE_FAILED: 1 } })
  })

  it('does not retry a request every provider would reject (BAD_REQUEST)', async () => {
    for (const p of peers) p.standin.knobs.failWith = { status: 400, error: 'invalid format' }
    await expect(collect(router().chat(request()))).rejects.toMatchObject({ code: 'BAD_REQUEST' })
    expect(peers.flatMap(p => p.standin.requests)).toHaveLength(1)
  })

  it('fails over on a provider that sends no token in time', async () => {
    peers[0].standin.knobs.firstTokenDelayMs = 10_000
    const r = new Router({ selfId: 'self', providers: directory(() => peers, { 'peer-a': 4 }), remoteChat }, { firstTokenTimeoutMs: 300 })
    const { content } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    await peers[0].standin.waitForAbort(2_000)
  })

  it('aborts the provider when the caller aborts, and reports CANCELLED', async () => {
    peers[0].standin.knobs.tokensPerSecond = 20
    const ac = new AbortController()
    const r = router({}, { 'peer-a': 4 })
    const seen: string[] = []
    const run = (async () => {
      for await (const e of r.chat(request(), { signal: ac.signal })) {
        if (e.type === 'delta') seen.push(e.content ?? '')
        if (seen.length === 2) ac.abort()
      }
    })()
    await expect(run).rejects.toMatchObject({ code: 'CANCELLED' })
    const aborted = await peers[0].standin.waitForAbort(2_000)
    expect(aborted.tokensSent).toBeLessThan(DEFAULT_TOKENS.length)
    expect(peers[1].standin.requests).toHaveLength(0)
    expect(r.running()).toEqual([])
    expect(r.stats.cancelled).toBe(1)
  })

  it('stops the provider when the caller stops iterating early', async () => {
    peers[0].standin.knobs.tokensPerSecond = 20
    const r = router({}, { 'peer-a': 4 })
    for await (const e of r.chat(request())) {
      if (e.type === 'delta') break
    }
    await peers[0].standin.waitForAbort(2_000)
    expect(r.running()).toEqual([])
  })

  it('drains on shutdown: lets a chat finish within the grace time, refuses new ones', async () => {
    peers[0].standin.knobs.tokensPerSecond = 50
    const r = router({}, { 'peer-a': 4 })
    const running = collect(r.chat(request()))
    await peers[0].standin.waitForRequests(1, 2_000)
    const drained = r.drain({ graceMs: 5_000 })
    await expect(collect(r.chat(request()))).rejects.toMatchObject({ code: 'SHUTTING_DOWN' })
    expect((await running).content).toBe(SCRIPT)
    await drained
  })

  it('drains on shutdown: ends a chat still running after the grace time with SHUTTING_DOWN', async () => {
    peers[0].standin.knobs.tokensPerSecond = 5
    const r = router({}, { 'peer-a': 4 })
    const started = Date.now()
    const running = collect(r.chat(request()))
    await peers[0].standin.waitForRequests(1, 2_000)
    await r.drain({ graceMs: 300 })
    await expect(running).rejects.toMatchObject({ code: 'SHUTTING_DOWN' })
    expect(Date.now() - started).toBeLessThan(2_000)
    await peers[0].standin.waitForAbort(2_000)
    // not a provider failure: nobody else was asked
    expect(peers[1].standin.requests).toHaveLength(0)
  })

  /**
   * A remote chat whose connection dies after `after` tokens on its first `times`
   * attempts, the way chat-client reports it when another connection to the peer
   * took over (DCUtR): the provider is fine, only the stream under it is gone.
   */
  function replacedConnection (after: number, times = 1): { remote: RemoteChat, calls: () => number } {
    let calls = 0
    const remote: RemoteChat = async function * (peerId, req, signal) {
      const call = ++calls
      let tokens = 0
      for await (const event of remoteChat(peerId, req, signal)) {
        if (event.type === 'delta' && call <= times && tokens++ === after) {
          throw new KrillError('ENGINE_FAILED', `peer ${peerId} closed the stream without a terminal frame: its connection closed and another one took its place`, { peer: peerId, connectionReplaced: true })
        }
        yield event
      }
    }
    return { remote, calls: () => calls }
  }

  it('asks the same provider again when the connection under the chat was replaced mid-answer, and continues the answer', async () => {
    // one provider only: before, the chat ended with "tried 1" because the failed peer is never asked twice
    peers = [peers[0]]
    const { remote, calls } = replacedConnection(5)
    const served: ServedInfo[] = []
    const r = router({ remoteChat: remote, onServed: s => served.push(s) })
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'accepted')).toHaveLength(1)
    expect(events.filter(e => e.type === 'delta')).toHaveLength(DEFAULT_TOKENS.length)
    expect(events.at(-1)).toMatchObject({ type: 'done', usage: { completionTokens: DEFAULT_TOKENS.length } })
    expect(calls()).toBe(2)
    // the second request continues the partial answer, as a failover would
    expect(peers[0].standin.requests[1].body.messages).toEqual([
      { role: 'user', content: 'say hello' },
      { role: 'assistant', content: DEFAULT_TOKENS.slice(0, 5).join('') }
    ])
    // not the provider's fault: no failover, no backoff
    expect(r.stats).toMatchObject({ reconnects: 1, failovers: 0, continuations: 0, completed: 1 })
    expect(r.backoff.until('peer-a')).toBe(0)
    expect(served).toEqual([expect.objectContaining({ outcome: 'done', peerId: 'peer-a', failovers: 0 })])
  })

  it('asks again invisibly when the connection was replaced before the first token', async () => {
    peers = [peers[0]]
    const { remote, calls } = replacedConnection(0)
    const r = router({ remoteChat: remote })
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'accepted')).toHaveLength(1)
    expect(calls()).toBe(2)
    // nothing had reached the client: the original request went out again
    expect(peers[0].standin.requests[1].body.messages).toEqual([{ role: 'user', content: 'say hello' }])
    expect(r.stats).toMatchObject({ reconnects: 1, failovers: 0 })
  })

  it('asks the same provider again only once per chat, then fails over as usual', async () => {
    const { remote, calls } = replacedConnection(2, 2)
    // peer-a first; after its second replaced connection the answer moves to peer-b
    const r = router({ remoteChat: remote }, { 'peer-a': 4, 'peer-b': 1 })
    const { content } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(calls()).toBe(3)
    expect(peers[0].standin.requests).toHaveLength(2)
    expect(peers[1].standin.requests).toHaveLength(1)
    expect(r.stats).toMatchObject({ reconnects: 1, failovers: 1, continuations: 1 })
  })

  it('does not ask a provider again after an ordinary failure', async () => {
    peers = [peers[0]]
    peers[0].standin.knobs.dieAfterTokens = 5
    const r = router()
    await expect(collect(r.chat(request()))).rejects.toThrow(/tried 1/)
    expect(peers[0].standin.requests).toHaveLength(1)
    expect(r.stats).toMatchObject({ reconnects: 0, failovers: 1 })
  })

  it('lists running chats', async () => {
    peers[0].standin.knobs.firstTokenDelayMs = 300
    const r = router({}, { 'peer-a': 4 })
    const it = r.chat(request())
    const first = await it.next()
    expect(first.value).toMatchObject({ type: 'accepted' })
    expect(r.running()).toEqual([expect.objectContaining({ model: MODEL, peerId: 'peer-a', local: false, digest: peers[0].info.digest })])
    await collect(it)
    expect(r.running()).toEqual([])
  })
})

describe('Router candidates', () => {
  let dir: string | undefined
  let store: PolicyStore | undefined

  afterEach(async () => {
    store?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
    store = undefined
    dir = undefined
  })

  it('asks the directory once per chat: no repeated candidates, consume refusals counted once', async () => {
    const [goodId, deniedId] = await Promise.all([0, 1].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
    const good = await startPeer(goodId, 'llama3:latest')
    const denied = await startPeer(deniedId, 'llama3:latest')
    peers.push(good, denied)
    dir = await mkdtemp(join(tmpdir(), 'krill-router-'))
    await writeFile(join(dir, POLICY_FILE), JSON.stringify({ consume: { deny: [deniedId] } }))
    store = new PolicyStore({ dataDir: dir, privateSwarm: false })
    await store.start()
    const policy = store
    const table = new ProviderTable({ selfId: 'self' })
    for (const p of [good, denied]) {
      const ann = { models: [p.info], capacity: { slots: 1, active: 0, queued: 0 }, version: 'krill/0.1.0', seq: 1, timestampMs: Date.now(), ttlMs: 60_000 }
      expect(table.applyAnnouncement(p.id, ann).ok).toBe(true)
    }
    const asked: string[] = []
    const seen: string[] = []
    // what the daemon binds: the table, filtered by the consume side of the policy
    const providers: ProviderDirectory = {
      providersFor: (model, digest) => {
        asked.push(model)
        const found = table.providersFor(model, digest).filter(e => policy.mayConsume(e.peerId))
        seen.push(...found.map(e => e.peerId))
        return found
      },
      catalog: () => table.catalog(),
      all: () => table.all()
    }
    const r = router({ providers })
    const { content } = await collect(r.chat(request({ model: 'Llama3' })))
    expect(content).toBe(SCRIPT)
    expect(asked).toHaveLength(1)
    expect(seen).toEqual([goodId])
    expect(policy.stats.consumeSkipped).toBe(1)
    expect(good.standin.requests).toHaveLength(1)
    expect(denied.standin.requests).toHaveLength(0)
  })
})

describe('Router hedging (a provider that has not accepted in time)', () => {
  /** the remote side of a peer whose Accepted is held back `holdMs` (Infinity: a frozen peer); records when it is cancelled */
  function slowAccepting (holdMs: Record<string, number>, cancelled: Record<string, number>, startEngineFirst = false): RemoteChat {
    return async function * (peerId, req, signal) {
      const peer = peers.find(p => p.id === peerId) as Peer
      const hold = holdMs[peerId] ?? 0
      // a provider that already runs its engine while its Accepted is slow to arrive
      const engine = startEngineFirst && hold > 0 ? peer.engine.chat(req, signal)[Symbol.asyncIterator]() : undefined
      const first = engine?.next()
      first?.catch(() => {})
      signal.addEventListener('abort', () => { cancelled[peerId] = Date.now() }, { once: true })
      if (hold > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = hold === Infinity ? undefined : setTimeout(resolve, hold)
          signal.addEventListener('abort', () => { clearTimeout(t); reject(new KrillError('CANCELLED', 'cancelled')) }, { once: true })
        })
      }
      yield { type: 'accepted', peer: peerId, digest: peer.info.digest, queuePosition: 0 }
      if (engine != null && first != null) {
        let step = await first
        while (step.done !== true) {
          yield step.value
          step = await engine.next()
        }
        return
      }
      yield * peer.engine.chat(req, signal)
    }
  }

  it('asks the next provider when the best one has not accepted within the hedge delay, and cancels the frozen one', async () => {
    const cancelled: Record<string, number> = {}
    const r = new Router({ selfId: 'self', providers: directory(() => peers, { 'peer-a': 4, 'peer-b': 1 }), remoteChat: slowAccepting({ 'peer-a': Infinity }, cancelled) },
      { random: () => 0.5, firstTokenTimeoutMs: 30_000, stallTimeoutMs: 30_000, hedgeMs: 300 })
    const started = Date.now()
    const { content, events } = await collect(r.chat(request()))
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'accepted')).toEqual([expect.objectContaining({ peer: 'peer-b' })])
    // well before the 30 s first-token timeout: the hedge, not a timeout, moved it on
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(cancelled['peer-a']).toBeDefined()
    expect(r.stats).toMatchObject({ hedges: 1, failovers: 0, completed: 1 })
    // a hedge is no failure: the slow peer is not backed off
    expect(r.backoff.until('peer-a')).toBeLessThanOrEqual(Date.now())
    expect(peers[1].standin.requests).toHaveLength(1)
  })

  it('lets the first Accepted win: the hedged provider accepting later is cancelled, and its Ollama sees the abort', async () => {
    const cancelled: Record<string, number> = {}
    for (const p of peers) p.standin.knobs.firstTokenDelayMs = 1_500
    // peer-a accepts after 400 ms (hedged at 200 ms); peer-b, asked at 200 ms, would accept after 3 s
    const r = new Router({ selfId: 'self', providers: directory(() => peers, { 'peer-a': 4, 'peer-b': 1 }), remoteChat: slowAccepting({ 'peer-a': 400, 'peer-b': 3_000 }, cancelled, true) },
      { random: () => 0.5, firstTokenTimeoutMs: 30_000, stallTimeoutMs: 30_000, hedgeMs: 200 })
    const { content, events } = await collect(r.chat(request()))
    const doneAt = Date.now()
    expect(content).toBe(SCRIPT)
    expect(events.filter(e => e.type === 'accepted')).toEqual([expect.objectContaining({ peer: 'peer-a' })])
    expect(r.stats.hedges).toBe(1)
    // the loser is cancelled as soon as the winner accepted, long before the answer ends
    expect(cancelled['peer-b']).toBeLessThan(doneAt - 1_000)
    // peer-b had started its engine: the stand-in saw the request aborted
    const aborted = await peers[1].standin.waitForAbort()
    expect(aborted.path).toBe('/api/chat')
    expect(peers[0].standin.requests.filter(q => q.completed)).toHaveLength(1)
  })

  it('waits at least a few round trips for a far provider before hedging', async () => {
    const cancelled: Record<string, number> = {}
    // peer-a is 300 ms away: 4 round trips (1.2 s) beat the 200 ms hedge delay; it accepts after 700 ms
    const r = new Router({ selfId: 'self', providers: directory(() => peers, { 'peer-a': 4, 'peer-b': 1 }), remoteChat: slowAccepting({ 'peer-a': 700 }, cancelled), latencyMs: peer => peer === 'peer-a' ? 300 : 1 },
      { random: () => 0.5, firstTokenTimeoutMs: 30_000, stallTimeoutMs: 30_000, hedgeMs: 200 })
    const { events } = await collect(r.chat(request()))
    expect(events.filter(e => e.type === 'accepted')).toEqual([expect.objectContaining({ peer: 'peer-a' })])
    expect(r.stats.hedges).toBe(0)
    expect(peers[1].standin.requests).toHaveLength(0)
  })
})
