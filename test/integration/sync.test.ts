/**
 * The sync exchange (/krill/sync/1.0.0) between real in-process daemons: a node
 * that joins lists the catalog from its first peer's answer, long before the next
 * periodic re-announcement (the provider here never re-announces for new
 * subscribers, and only every 40 s otherwise); an announcement handed on by a
 * middle node lives no longer than there; a peer that answers with junk is
 * penalized and changes nothing.
 */
import { readFile, rm } from 'node:fs/promises'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { noise } from '@chainsafe/libp2p-noise'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SYNC_PROTOCOL } from '../../src/discovery/sync-exchange.js'
import { SyncResponse } from '../../src/protocol/generated/sync.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { testSwarmKey } from '../helpers/test-swarm-key.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'

describe('sync exchange', () => {
  let standin: OllamaStandin
  const nodes: TestDaemon[] = []
  let provider: TestDaemon
  let providerStartedAt = 0
  let junk: Libp2p | undefined

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    // re-announcing every TTL/3 = 40 s: within this file, only new subscribers could make it announce again
    provider = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200, announceTtlMs: 120_000 })
    providerStartedAt = Date.now()
    nodes.push(provider)
    // the provider's first announcement went out to nobody
    await waitFor(() => provider.daemon.localModels().length > 0, 'the provider to share its model')
    // (held for a first sync answer that no peer gives: gossiped after at most 3 s)
    await waitFor(() => (provider.daemon.libp2p.services.discovery.announcer?.published.whole ?? 0) > 0, 'the provider\'s first announcement')
  })

  afterAll(async () => {
    await junk?.stop()
    await Promise.allSettled(nodes.map(async n => { await n.daemon.stop() }))
    await Promise.allSettled(nodes.map(async n => { await rm(n.config.dataDir, { recursive: true, force: true }) }))
    await standin?.stop()
  })

  it('lists the provider\'s model on a newcomer from the provider\'s own answer, well before any re-announcement', async () => {
    const seqBefore = provider.daemon.libp2p.services.discovery.announcer?.lastSeq
    const started = Date.now()
    const newcomer = await startTestDaemon({ bootstrap: [provider.daemon.addrs()[0]], serve: false, announceTtlMs: 60_000 })
    nodes.push(newcomer)
    // "just joined": its daemon is ready (the ready line); issue 13's figure is ≤ 2 s from here
    const ready = Date.now()
    await waitFor(() => newcomer.daemon.providers.providersFor(MODEL).length === 1, 'the newcomer to list the model', 15_000, 20)
    const tookMs = Date.now() - started
    const fromReadyMs = Date.now() - ready
    const entry = newcomer.daemon.providers.providersFor(MODEL)[0]
    expect(entry.peerId).toBe(provider.daemon.peerId.toString())
    expect(entry.source).toBe('gossip')
    expect(newcomer.daemon.libp2p.services.sync.stats.accepted).toBeGreaterThanOrEqual(1)
    expect(provider.daemon.libp2p.services.sync.stats.answered).toBeGreaterThanOrEqual(1)
    // the provider's periodic re-announcement is 40 s away: only the sync answer explains this
    expect(tookMs).toBeLessThan(15_000)
    // 2 s is the target; 5 s holds under stress-ng --cpu 2 on 2 cores, where every
    // step (dial, identify, the stream, two signature checks) waits for a starved
    // event loop. Seen at load average ~5: 50–420 ms.
    expect(fromReadyMs).toBeLessThan(5_000)
    console.log(`newcomer listed the model ${fromReadyMs} ms after it was ready, ${tookMs} ms after it started (in-process, loopback)`)
    // a new subscriber costs the network nothing: the provider sent no announcement for
    // it (an older krill did, at most 10 s after its previous one)
    await new Promise(resolve => setTimeout(resolve, Math.max(1_500, providerStartedAt + 11_000 - Date.now())))
    expect(provider.daemon.libp2p.services.discovery.announcer?.lastSeq).toBe(seqBefore)
  })

  it('hands on what a middle node holds, kept no longer than the middle node would keep it', async () => {
    const middle = nodes[1]
    const held = middle.daemon.providers.providersFor(MODEL)[0]
    const late = await startTestDaemon({ bootstrap: [middle.daemon.addrs()[0]], serve: false })
    nodes.push(late)
    await waitFor(() => late.daemon.providers.providersFor(MODEL).length === 1, 'the late node to list the model', 15_000, 20)
    const got = late.daemon.providers.providersFor(MODEL)[0]
    expect(got.peerId).toBe(provider.daemon.peerId.toString())
    // never later than the provider's own announcement ends where it came from (+ clock slack)
    expect(got.expiresAt).toBeLessThanOrEqual(held.expiresAt + 1_000)
  })

  it('penalizes a peer whose sync answer is junk, and takes nothing from it', async () => {
    const target = nodes[1]
    const psk = await readFile(testSwarmKey())
    junk = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: preSharedKey({ psk }),
      services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
    })
    const fake = SyncResponse.decode(SyncResponse.encode({ entries: [] }))
    // an entry "by the provider" with a signature that is not the provider's
    fake.entries.push({
      from: provider.daemon.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
      data: new Uint8Array([0x1a, 0x03, 0x62, 0x61, 0x64]),
      seqno: new Uint8Array(8),
      signature: new Uint8Array(64).fill(1),
      key: new Uint8Array(0),
      remainingMs: 60_000
    })
    await junk.handle(SYNC_PROTOCOL, async (stream) => {
      const lp = lpStream(stream)
      await lp.read()
      await lp.write(SyncResponse.encode(fake))
      await stream.close()
    })
    junk.services.pubsub.subscribe('krill/models/1')
    const before = target.daemon.libp2p.services.sync.stats.junk
    await junk.dial(multiaddr(target.daemon.addrs()[0]))
    await waitFor(() => target.daemon.libp2p.services.sync.stats.junk > before, 'the target to find the junk')
    const score = (target.daemon.libp2p.services.pubsub as unknown as { score: { score: (id: string) => number } }).score
    await waitFor(() => score.score(junk!.peerId.toString()) < 0, 'the junk peer\'s gossipsub score to fall')
    // the target still lists the real provider, from the real announcement
    expect(target.daemon.providers.providersFor(MODEL).map(e => e.peerId)).toEqual([provider.daemon.peerId.toString()])
  })
})
