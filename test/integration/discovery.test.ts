import { createHash } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PeerId, PublicKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startDaemon, type Daemon } from '../../src/daemon/daemon.js'
import { encodeAnnouncement, type ValidAnnouncement } from '../../src/discovery/announcement.js'
import { ANNOUNCE_TOPIC } from '../../src/discovery/announcer.js'
import { modelKey } from '../../src/discovery/keys.js'
import type { ModelInfo } from '../../src/engine/types.js'
import { resolveConfig } from '../../src/node/config.js'
import { OllamaStandin } from '../fixtures/ollama-standin.js'
import { spawnDaemon, type DaemonProcess } from '../helpers/cli.js'
import { startSwarm, startTestDaemon, tempDir, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { testSwarmKey } from '../helpers/test-swarm-key.js'
import { waitFor } from '../helpers/wait.js'

const TTL = 5_000
const hex = (s: string): string => createHash('sha256').update(s).digest('hex')

function idOf (node: TestDaemon): string {
  return node.daemon.peerId.toString()
}

function servers (node: TestDaemon, model: string): string[] {
  return node.daemon.providers.providersFor(model).map(e => e.peerId).sort()
}

function model (name: string): ModelInfo {
  return { name, digest: hex(name), size: 1, family: 'llama', parameterSize: '1B', quantization: 'Q4_0', contextLength: 2048 }
}

function announcement (seq: number, models: ModelInfo[]): Uint8Array {
  const ann: ValidAnnouncement = { models, capacity: { slots: 1, active: 0, queued: 0 }, version: 'krill/0.1.0', seq, timestampMs: Date.now(), ttlMs: 60_000 }
  return encodeAnnouncement(ann).bytes
}

describe('model discovery in a 5-node swarm', () => {
  let standins: OllamaStandin[] = []
  let swarm: Swarm
  const processes: DaemonProcess[] = []
  const extraDirs: string[] = []
  let late: Daemon | undefined

  beforeAll(async () => {
    standins = await Promise.all([0, 1, 2, 3, 4].map(async i => await OllamaStandin.start({ models: i === 0 ? [{ name: 'llama3.2:1b' }] : [] })))
    swarm = await startSwarm(5, i => ({ ollama: standins[i].url, announceTtlMs: TTL, modelRefreshMs: 200 }))
  })

  afterAll(async () => {
    await Promise.allSettled(processes.map(async p => await p.stop('SIGKILL')))
    await late?.stop()
    await swarm?.stop()
    await Promise.allSettled(standins.map(async s => { await s.stop() }))
    await Promise.allSettled(extraDirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  const others = (i: number): TestDaemon[] => swarm.nodes.filter((_, j) => j !== i)

  it("lists a node's models at every other node, with digest, details and capacity", async () => {
    const [first] = swarm.nodes
    for (const node of others(0)) {
      await waitFor(() => servers(node, 'llama3.2:1b').includes(idOf(first)), `node to learn that the first node serves llama3.2:1b`)
    }
    // a gossip announcement lives its full TTL from receipt (a copy handed on by the
    // sync exchange lives only what was left of it at the giver: wait for the next
    // periodic announcement, due every TTL/3)
    const entry = await waitFor(() => swarm.nodes[3].daemon.providers.providersFor('llama3.2:1b').find(e => e.expiresAt - e.receivedAt === TTL), 'a gossip announcement of llama3.2:1b at node 3', TTL)
    expect(entry).toMatchObject({
      peerId: idOf(first),
      source: 'gossip',
      version: 'krill/0.1.0',
      capacity: { slots: first.config.slots, active: 0, queued: 0 },
      model: { name: 'llama3.2:1b', digest: hex('llama3.2:1b'), family: 'llama', parameterSize: '1.2B', quantization: 'Q8_0', contextLength: 131_072, size: 1_321_098_329 }
    })
    expect(entry.expiresAt - entry.receivedAt).toBe(TTL)
    // never itself, and its own models are local
    expect(first.daemon.providers.providersFor('llama3.2:1b')).toEqual([])
    expect(first.daemon.localModels().map(m => m.name)).toEqual(['llama3.2:1b'])

    // the control API shows the same
    const api = swarm.nodes[1].daemon.apiUrl
    const catalog = await (await fetch(`${api}/krill/v1/models`)).json()
    expect(catalog.models).toEqual([expect.objectContaining({ name: 'llama3.2:1b', digests: [hex('llama3.2:1b')], providers: 1 })])
    const providers = await (await fetch(`${api}/krill/v1/providers/llama3.2:1b`)).json()
    expect(providers.providers.map((p: { peerId: string }) => p.peerId)).toEqual([idOf(first)])
    expect((await fetch(`${api}/krill/v1/providers/bad%20name`)).status).toBe(400)
  })

  it('spreads a model added to one Ollama to all others, and its removal', async () => {
    const node = swarm.nodes[2]
    const digest = 'ab'.repeat(32)
    standins[2].addModel({ name: 'qwen3:0.6b', digest, contextLength: 40_960, family: 'qwen3', parameterSize: '751.63M', quantization: 'Q4_K_M' })
    for (const other of others(2)) {
      await waitFor(() => servers(other, 'qwen3:0.6b').includes(idOf(node)), 'qwen3:0.6b to appear everywhere')
      expect(other.daemon.providers.providersFor('qwen3:0.6b', digest)[0].model).toMatchObject({ digest, contextLength: 40_960, family: 'qwen3', parameterSize: '751.63M', quantization: 'Q4_K_M' })
      expect(other.events).toContainEqual({ event: 'model:appeared', model: 'qwen3:0.6b', digest, peerId: idOf(node) })
    }

    standins[2].removeModel('qwen3:0.6b')
    const removedAt = Date.now()
    for (const other of others(2)) {
      await waitFor(() => servers(other, 'qwen3:0.6b').length === 0, 'qwen3:0.6b to vanish everywhere', TTL)
      expect(other.events).toContainEqual({ event: 'model:vanished', model: 'qwen3:0.6b', digest, peerId: idOf(node) })
    }
    // withdrawn by a new announcement, not by expiry
    expect(Date.now() - removedAt).toBeLessThan(TTL - 1_000)
  })

  it('withdraws the models of an Ollama that goes away, and brings them back when it returns', async () => {
    const [first] = swarm.nodes
    const before = swarm.nodes[1].daemon.providers.lastSeq(idOf(first)) as number
    await standins[0].goDown()
    for (const other of others(0)) {
      await waitFor(() => servers(other, 'llama3.2:1b').length === 0, 'llama3.2:1b to be withdrawn', 3_000)
    }
    expect(swarm.nodes[1].daemon.providers.lastSeq(idOf(first))).toBeGreaterThan(before)
    expect(first.events).toContainEqual({ event: 'ollama:unreachable', url: standins[0].url })
    // still connected: it was the withdrawal, not a disconnect
    expect(first.daemon.libp2p.getConnections(swarm.nodes[1].daemon.peerId).length).toBeGreaterThan(0)

    await standins[0].comeUp()
    for (const other of others(0)) {
      await waitFor(() => servers(other, 'llama3.2:1b').includes(idOf(first)), 'llama3.2:1b to return')
    }
    expect(first.events).toContainEqual({ event: 'ollama:reachable', url: standins[0].url })
  })

  it('rejects or ignores malformed, oversized, replayed, stale, forged and unsigned announcements', async () => {
    const attacker = swarm.nodes[3]
    const victim = swarm.nodes[2]
    const observers = [swarm.nodes[0], swarm.nodes[1], swarm.nodes[4]]
    const pubsub = attacker.daemon.libp2p.services.pubsub as any
    const statsOf = (n: TestDaemon): any => structuredClone(n.daemon.announcementStats)
    const before = observers.map(statsOf)
    const delta = (i: number, kind: 'rejectedByReason' | 'ignoredByReason', reason: string): number =>
      (observers[i].daemon.announcementStats?.[kind][reason] ?? 0) - (before[i][kind][reason] ?? 0)

    // malformed and oversized: rejected by our validator
    await pubsub.publish(ANNOUNCE_TOPIC, new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]))
    await pubsub.publish(ANNOUNCE_TOPIC, new Uint8Array(70 * 1024).fill(0x2a))
    for (let i = 0; i < observers.length; i++) {
      await waitFor(() => delta(i, 'rejectedByReason', 'malformed') === 1 && delta(i, 'rejectedByReason', 'too-large') === 1, 'malformed and oversized announcements to be rejected', 60_000)
    }

    // a valid one gets in; the same seq again (a new gossipsub message) and an older seq do not
    const seq = Date.now()
    const bait = announcement(seq, [model('bait:1')])
    await pubsub.publish(ANNOUNCE_TOPIC, bait)
    for (const o of observers) await waitFor(() => servers(o, 'bait:1').includes(idOf(attacker)), 'the valid announcement to arrive')
    await pubsub.publish(ANNOUNCE_TOPIC, bait)
    await pubsub.publish(ANNOUNCE_TOPIC, announcement(seq - 1, [model('stale:1')]))
    for (let i = 0; i < observers.length; i++) {
      await waitFor(() => delta(i, 'ignoredByReason', 'stale-seq') === 2, 'the replay and the stale copy to be ignored')
    }

    // gossipsub checks signatures before any topic validator: record what it drops
    const dropped: string[][] = observers.map(() => [])
    const originals = observers.map((o, i) => {
      const ps = o.daemon.libp2p.services.pubsub as any
      const original = ps.validateReceivedMessage
      ps.validateReceivedMessage = async (source: unknown, rpcMsg: { topic?: string }) => {
        const result = await original.call(ps, source, rpcMsg)
        if (result.code === 'invalid' && rpcMsg.topic === ANNOUNCE_TOPIC) dropped[i].push(result.error)
        return result
      }
      return () => { ps.validateReceivedMessage = original }
    })

    // forged: claims to come from the victim but is signed with the attacker's key
    const honest = pubsub.publishConfig
    const honestMsgId = pubsub.msgIdFn
    try {
      pubsub.publishConfig = { ...honest, author: victim.daemon.peerId as PeerId }
      await pubsub.publish(ANNOUNCE_TOPIC, announcement(Date.now(), [model('forged:1')]))
      // with the victim's public key: the signature (attacker's key) does not verify
      pubsub.publishConfig = { ...honest, author: victim.daemon.peerId, key: publicKeyToProtobuf(victim.daemon.peerId.publicKey as PublicKey) }
      await pubsub.publish(ANNOUNCE_TOPIC, announcement(Date.now() + 1, [model('forged:2')]))
      // unsigned, no author at all (a StrictNoSign publisher)
      pubsub.publishConfig = { type: 1 }
      pubsub.msgIdFn = (msg: { data: Uint8Array }) => createHash('sha256').update(msg.data).digest()
      await pubsub.publish(ANNOUNCE_TOPIC, announcement(Date.now() + 2, [model('unsigned:1')]))
    } finally {
      pubsub.publishConfig = honest
      pubsub.msgIdFn = honestMsgId
    }
    // the same path still carries honest messages: sent after the forgeries, it arrives
    await pubsub.publish(ANNOUNCE_TOPIC, announcement(Date.now() + 3, [model('canary:1')]))
    for (const o of observers) await waitFor(() => servers(o, 'canary:1').includes(idOf(attacker)), 'the canary announcement to arrive')
    for (let i = 0; i < observers.length; i++) await waitFor(() => dropped[i].length === 3, 'the forgeries to be dropped by gossipsub')
    for (const restore of originals) restore()
    for (const errors of dropped) expect(errors.sort()).toEqual(['invalid_peerid', 'invalid_seqno', 'invalid_signature'])

    for (let i = 0; i < observers.length; i++) {
      const table = observers[i].daemon.providers
      for (const name of ['forged:1', 'forged:2', 'unsigned:1', 'stale:1', 'bait:1']) expect(table.providersFor(name)).toEqual([])
      expect(table.all().filter(e => e.peerId === idOf(victim))).toEqual([])
      expect(table.all().filter(e => e.peerId === idOf(attacker)).map(e => e.model.name)).toEqual(['canary:1'])
      const stats = observers[i].daemon.announcementStats
      expect(stats?.accepted).toBeGreaterThan(before[i].accepted)
      expect(stats?.rejected).toBe(before[i].rejected + 2)
    }

    // withdraw the test announcement so later tests see a clean network
    await pubsub.publish(ANNOUNCE_TOPIC, announcement(Date.now() + 4, []))
    for (const o of observers) await waitFor(() => servers(o, 'canary:1').length === 0, 'the canary to be withdrawn')
  })

  it('withdraws at once on a clean stop', async () => {
    const leaving = swarm.nodes[4]
    standins[4].addModel({ name: 'phi3:mini' })
    const observers = swarm.nodes.slice(0, 4)
    for (const o of observers) await waitFor(() => servers(o, 'phi3:mini').includes(idOf(leaving)), 'phi3:mini to appear')
    const seqBefore = observers.map(o => o.daemon.providers.lastSeq(idOf(leaving)) as number)
    const stoppedAt = Date.now()
    await leaving.daemon.stop()
    for (const [i, o] of observers.entries()) {
      await waitFor(() => servers(o, 'phi3:mini').length === 0, 'phi3:mini to vanish', 2_000)
      // the goodbye (a higher seq) arrived, not just the disconnect
      await waitFor(() => (o.daemon.providers.lastSeq(idOf(leaving)) ?? 0) > seqBefore[i], 'the withdrawal to arrive', 2_000)
    }
    expect(Date.now() - stoppedAt).toBeLessThan(TTL)
  })

  it('forgets a daemon process that hangs (SIGSTOP) or dies (SIGKILL) within its TTL', async () => {
    const shortTtl = 3_000
    const spawnProvider = async (name: string): Promise<DaemonProcess> => {
      const dir = await tempDir()
      extraDirs.push(dir)
      await writeFile(join(dir, 'krill.json'), JSON.stringify({ announceTtlMs: shortTtl, modelRefreshMs: 200 }))
      const standin = await OllamaStandin.start({ models: [{ name }] })
      standins.push(standin)
      const p = await spawnDaemon([
        '--data-dir', dir, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0',
        '--ollama', standin.url, '--bootstrap', swarm.nodes[0].daemon.addrs()[0]
      ], { env: { KRILL_LOG: 'warn' } })
      processes.push(p)
      return p
    }
    const [hung, killed] = await Promise.all([spawnProvider('hung:1b'), spawnProvider('killed:1b')])
    const observers = swarm.nodes.slice(0, 4)
    for (const o of observers) {
      await waitFor(() => servers(o, 'hung:1b').includes(hung.ready.peerId) && servers(o, 'killed:1b').includes(killed.ready.peerId), 'both processes to be listed')
    }

    // hung: connections stay open, announcements stop; only the TTL removes it
    const hungId = peerIdFromString(hung.ready.peerId)
    const connectedToHung = (): TestDaemon[] => observers.filter(o => o.daemon.libp2p.getConnections(hungId).length > 0)
    expect(connectedToHung().length).toBeGreaterThan(0)
    hung.child.kill('SIGSTOP')
    killed.child.kill('SIGKILL')
    const at = Date.now()
    for (const o of observers) {
      await waitFor(() => servers(o, 'killed:1b').length === 0, 'the killed process to vanish', shortTtl + 1_500)
      await waitFor(() => servers(o, 'hung:1b').length === 0, 'the hung process to vanish', shortTtl + 1_500)
    }
    expect(Date.now() - at).toBeLessThan(shortTtl + 1_500)
    // it expired while still connected: no disconnect did the job
    expect(connectedToHung().length).toBeGreaterThan(0)
    hung.child.kill('SIGKILL')
  })

  it('lets a late node without gossip find a provider through the DHT alone', async () => {
    const dataDir = await tempDir()
    extraDirs.push(dataDir)
    const config = {
      ...await resolveConfig({
        listen: ['/ip4/127.0.0.1/tcp/0'],
        api: '127.0.0.1:0',
        mdns: false,
        ollama: 'http://127.0.0.1:9',
        // not the provider: the lookup must go through the DHT
        bootstrap: [swarm.nodes[1].daemon.addrs()[0]],
        // the swarm's key (startSwarm gives every node the test process's shared key)
        swarmKey: testSwarmKey(),
        dataDir
      }, {}),
      serve: false,
      announceTtlMs: TTL
    }
    late = await startDaemon(config, { discovery: { gossip: false }, onProgress: () => {} })
    expect(late.libp2p.services.pubsub.getTopics()).not.toContain(ANNOUNCE_TOPIC)
    const provider = idOf(swarm.nodes[0])

    const found = await waitFor(async () => {
      // a DHT-found provider is listed once reached: the lookup dials it
      const entries = await (late as Daemon).findProviders('llama3.2:1b', { timeoutMs: 3_000 })
      return entries.find(e => e.peerId === provider)
    }, 'the DHT to name the provider of llama3.2:1b')
    expect(found).toMatchObject({ source: 'dht', model: { name: 'llama3.2:1b' } })
    expect(late.providers.all().every(e => e.source === 'dht')).toBe(true)

    // the digest key finds the same exact copy
    const byDigest = await late.findProviders('llama3.2:1b', { digest: hex('llama3.2:1b'), timeoutMs: 3_000, dial: 0 })
    expect(byDigest.map(e => e.peerId)).toContain(provider)
    expect(late.announcementStats).toBeUndefined()
  })

  it('lists a DHT-found provider only once it was reached: a provider record of a node that is gone names nobody', async () => {
    const standin = await OllamaStandin.start({ models: [{ name: 'ghost:1b' }] })
    standins.push(standin)
    const ghost = await startTestDaemon({ ollama: standin.url, modelRefreshMs: 200, bootstrap: [swarm.nodes[1].daemon.addrs()[0]] })
    extraDirs.push(ghost.config.dataDir)
    const ghostId = ghost.daemon.peerId
    const inDht = async (): Promise<boolean> => {
      for await (const p of (late as Daemon).libp2p.contentRouting.findProviders(modelKey('ghost:1b'), { signal: AbortSignal.timeout(3_000) })) {
        if (p.id.equals(ghostId)) return true
      }
      return false
    }
    await waitFor(inDht, 'the ghost\'s provider record to be in the DHT')
    // its provide reached other DHT servers (not only its own record store)
    const provided = (): Array<{ peersAtProvide: number }> => [...((ghost.daemon.libp2p.services as any).discovery.dht.provided as Map<string, { peersAtProvide: number }>).values()]
    await waitFor(() => provided().length === 2 && provided().every(p => p.peersAtProvide > 0), 'the ghost to provide its keys')
    await ghost.daemon.stop()
    await waitFor(() => (late as Daemon).libp2p.getConnections(ghostId).length === 0, 'the ghost to be gone')
    // the record is still there, and still names the ghost
    expect(await inDht()).toBe(true)
    const entries = await (late as Daemon).findProviders('ghost:1b', { timeoutMs: 3_000 })
    expect(entries).toEqual([])
    expect((late as Daemon).providers.providersFor('ghost:1b')).toEqual([])
  })
})
