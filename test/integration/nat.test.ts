/**
 * NAT traversal through real NATs: network namespaces, veth links, nftables
 * masquerading routers, and (for hole punching) the real miniupnpd on a router.
 * See test/helpers/netns.ts for the topology and why its internet is 11.0.113.0/24.
 *
 * Needs root (CI runs as root). When the namespaces cannot be built, beforeAll
 * throws and every test here fails: nothing is skipped.
 *
 *   relay/bootstrap (internet, --relay)
 *   provider  behind router r1 (plain masquerade; never directly reachable)
 *   consumer  behind router r2 (plain masquerade, later + UPnP via miniupnpd)
 *   for a while, two more nodes on the internet that do not --announce: one
 *   learns that it is public from AutoNAT v2, the other runs with --no-autonat
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { StatusAnswer } from '../../src/api/control.js'
import { tokenScript } from '../fixtures/standin-main.js'
import { createNatLab, INTERNET_NET, RELAY_IP, waitForText, type NatLab, type NsDaemon, type NsProcess } from '../helpers/netns.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'natllama:1b'
// 2300 tokens of 500 bytes: 1.15 MB, well past libp2p's default relay allowance of
// 128 KiB per relayed connection; 600 tokens/s keeps each answer streaming ~4 s,
// long enough to look at the connection (and kill the relay) while it flows
const TOKENS = 2300
const TOKEN_SIZE = 500
const TPS = 600
const EXPECTED = tokenScript(TOKENS, TOKEN_SIZE).join('')
const MID_CHAT_BYTES = 64 * 1024
const PORT = 4747

interface PeerView { id: string, addr: string, type: 'direct' | 'relayed', relay?: string, direction: string, connections: number }

async function status (d: NsDaemon): Promise<StatusAnswer> {
  const r = await d.krill(['status', '--json'])
  if (r.code !== 0) throw new Error(`krill status failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as StatusAnswer
}

async function statusAddrs (d: NsDaemon): Promise<string[]> {
  return (await status(d)).addrs
}

async function peerView (d: NsDaemon, peerId: string): Promise<PeerView | undefined> {
  const r = await d.krill(['peers', '--json'])
  if (r.code !== 0) throw new Error(`krill peers failed: ${r.stderr}`)
  return (JSON.parse(r.stdout).peers as PeerView[]).find(p => p.id === peerId)
}

/** the answer arrived complete and in order (compared without a megabyte-sized diff on failure) */
function expectFullAnswer (chat: NsProcess): void {
  const out = chat.stdout()
  expect(out.length, `answer length; stderr: ${chat.stderr().slice(-2000)}`).toBe(EXPECTED.length)
  const firstDiff = [...out].findIndex((c, i) => c !== EXPECTED[i])
  expect(firstDiff, `answer differs from the stand-in's script at byte ${firstDiff}: …${out.slice(Math.max(0, firstDiff - 40), firstDiff + 40)}…`).toBe(-1)
}

/** Waits until the first bytes of a long answer are out; a chat that ended before fails here with its stderr. */
async function streaming (chat: NsProcess): Promise<void> {
  await waitFor(() => chat.stdout().length > MID_CHAT_BYTES || chat.child.exitCode != null, 'the answer to start streaming', 30_000)
  if (chat.child.exitCode != null) throw new Error(`the chat ended (exit ${chat.child.exitCode}) after ${chat.stdout().length} bytes: ${chat.stderr()}`)
}

describe('NAT traversal through real NATs (network namespaces)', () => {
  let lab: NatLab
  let relay: NsDaemon
  let provider: NsDaemon
  let consumer: NsDaemon
  let consumerDir: string
  let bootstrap: string
  const dirs: string[] = []
  const dataDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'krill-nat-'))
    dirs.push(d)
    return d
  }
  // these tests follow libp2p's own paths (the relay, DCUtR over UPnP); krill's TCP
  // hole punch would replace the relayed connection first: nat-punch.test.ts tests it
  const consumerArgs = (): string[] => ['--no-serve', '--no-hole-punch', '--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0', '--bootstrap', bootstrap, '--data-dir', consumerDir]

  beforeAll(async () => {
    lab = createNatLab()
    const r1 = lab.router('r1')
    const r2 = lab.router('r2')
    // the relay knows its public address: it is a server on the internet
    relay = await lab.startDaemon(lab.inet, ['--relay', '--no-upnp', '--no-serve',
      '--listen', `/ip4/${RELAY_IP}/tcp/${PORT}`, '--announce', `/ip4/${RELAY_IP}/tcp/${PORT}`,
      '--api', '127.0.0.1:0', '--data-dir', await dataDir()])
    bootstrap = `/ip4/${RELAY_IP}/tcp/${PORT}/p2p/${relay.ready.peerId}`
    const standin = await lab.startStandin(r1.host, { model: MODEL, tokensCount: TOKENS, tokenSize: TOKEN_SIZE, tps: TPS })
    provider = await lab.startDaemon(r1.host, ['--no-upnp', '--no-hole-punch', '--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0',
      '--bootstrap', bootstrap, '--ollama', standin.url, '--data-dir', await dataDir()])
    consumerDir = await dataDir()
    // no UPnP at first: both peers sit behind plain NATs
    consumer = await lab.startDaemon(r2.host, ['--no-upnp', ...consumerArgs()])
  }, 60_000)

  // a failure names its symptom; the daemons' logs say why
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const [name, d] of [['relay', relay], ['provider', provider], ['consumer', consumer]] as const) {
        if (d != null) console.error(`---- ${name} (${d.ready.peerId}) stderr, last 4000 chars ----\n${d.stderr().slice(-4000)}`)
      }
    })
  })

  afterAll(async () => {
    lab?.teardown()
    await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  it('relays a long streamed chat (> 1 MiB) between two peers behind NATs', async () => {
    const relayId = relay.ready.peerId
    // the provider reserved a slot on the relay it found through the swarm and advertises it
    await waitFor(async () => (await statusAddrs(provider)).some(a => a.includes(`/p2p/${relayId}/p2p-circuit`)), 'the provider to advertise a relayed address', 20_000, 250)
    // …and has no public address of its own: nothing but the relay reaches it
    expect((await statusAddrs(provider)).filter(a => a.startsWith('/ip4/11.') && !a.includes('p2p-circuit'))).toEqual([])
    // the consumer learns the model through the relay node (gossip, bootstrap).
    // Both NATed nodes are DHT clients (dhtMode auto), so neither finds the other
    // in the DHT to connect to: the announcement reaches the consumer through the
    // relay, when the provider re-announces (every TTL/3 = 20 s) if its first one
    // went out before the consumer joined the relay's gossip mesh.
    await consumer.waitForEvent(e => e.event === 'model:appeared' && e.model === MODEL && e.peerId === provider.ready.peerId, 'the consumer to discover the model', 45_000)

    const chat = consumer.spawnKrill(['chat', '-m', MODEL, 'tell me a long story'])
    await streaming(chat)
    const view = await peerView(consumer, provider.ready.peerId)
    expect(view, 'the consumer is connected to the provider').toBeDefined()
    expect(view?.type).toBe('relayed')
    expect(view?.relay).toBe(relayId)
    expect(view?.addr).toContain(`/p2p/${relayId}/p2p-circuit/p2p/${provider.ready.peerId}`)

    expect(await chat.exited, chat.stderr()).toBe(0)
    expectFullAnswer(chat)
    // one request, served completely by the provider: no failover, no retry
    const served = await provider.waitForEvent(e => e.event === 'request:served' && e.peerId === consumer.ready.peerId, 'the provider to report the request', 10_000)
    expect(served.outcome).toBe('done')
    expect(provider.events.filter(e => e.event === 'request:served')).toHaveLength(1)
  }, 90_000)

  it('confirms a public listen address by AutoNAT v2 dial-back (then relays and serves the DHT), never one behind masquerade', async () => {
    // Two nodes on the internet (the relay's IP, other ports), neither with
    // --announce: libp2p advertises a public listen address only once it is
    // confirmed, and here only a peer dialing it back (AutoNAT v2) can do that.
    const onInternet = async (port: number, extra: string[]): Promise<NsDaemon> => await lab.startDaemon(lab.inet, ['--no-upnp', '--no-serve',
      '--listen', `/ip4/${RELAY_IP}/tcp/${port}`, '--api', '127.0.0.1:0', '--bootstrap', bootstrap, '--data-dir', await dataDir(), ...extra])
    const [pub, control] = await Promise.all([onInternet(PORT + 3, []), onInternet(PORT + 4, ['--no-autonat'])])
    try {
      const confirmed = `/ip4/${RELAY_IP}/tcp/${PORT + 3}/p2p/${pub.ready.peerId}`
      let seen: StatusAnswer | undefined
      await waitFor(async () => { seen = await status(pub); return seen.nat.reachable }, 'AutoNAT v2 to confirm the public node\'s address', 30_000, 250)
        .catch((err: Error) => { throw new Error(`${err.message}; last status: ${JSON.stringify(seen?.nat)}; stderr: ${pub.stderr().slice(-2000)}`) })
      const s = seen as StatusAnswer
      expect(s.nat.publicAddrs).toEqual([confirmed])
      expect(s.addrs).toContain(confirmed)
      // autoRelay follows the verdict at once (it reads the confirmed addresses),
      // the DHT mode (auto) with libp2p's address update event, up to 1 s later
      expect(s.nat.relaying).toBe(true)
      expect(s.dht.configured).toBe('auto')
      await waitFor(async () => (await status(pub)).dht.mode === 'server', 'the public node to become a DHT server', 10_000, 250)

      // the same setup without AutoNAT: the address is never confirmed; the node
      // takes a relay slot like any unreachable node, and only asks the DHT
      const c = await status(control)
      expect(c.nat).toMatchObject({ autonat: false, reachable: false, publicAddrs: [], relaying: false })
      expect(c.addrs.filter(a => a.includes(`/tcp/${PORT + 4}/`))).toEqual([])
      expect(c.dht.mode).toBe('client')

      // the provider behind plain masquerade runs AutoNAT too and is connected to
      // AutoNAT servers (the relay, and now pub): nothing of it gets confirmed —
      // its own addresses are private (never sent for checking) and its router
      // forwards nothing — so it stays reachable only through its relay, and a
      // DHT client
      const p = await status(provider)
      expect(p.nat).toMatchObject({ autonat: true, reachable: false, publicAddrs: [], relays: [relay.ready.peerId], relaying: false })
      expect(p.addrs.filter(a => a.startsWith(`/ip4/${INTERNET_NET}.`) && !a.includes('p2p-circuit'))).toEqual([])
      expect(p.dht.mode).toBe('client')
      // the relay is public by --announce: a DHT server
      expect((await status(relay)).dht.mode).toBe('server')
    } finally {
      await Promise.all([pub.stop(), control.stop()])
    }
  }, 60_000)

  it('turns the relayed connection into a direct one (DCUtR) once the consumer\'s router forwards its port (UPnP), and chats on it', async () => {
    const r2 = lab.router('r2')
    await consumer.stop()
    // router r2 gets a UPnP gateway; the consumer comes back with UPnP on (same identity)
    const gateway = await lab.startUpnpGateway('r2')
    consumer = await lab.startDaemon(r2.host, [...consumerArgs(), '--upnp'])
    await waitForText(gateway, new RegExp(`redirecting port ${PORT} to ${r2.hostIp.replace(/\./g, '\\.')}:${PORT}`), 'miniupnpd to forward the consumer\'s port', 30_000)
    expect(lab.ruleset(r2.ns)).toMatch(new RegExp(`dnat ip to ${r2.hostIp.replace(/\./g, '\\.')}:${PORT}`))
    // the router-confirmed mapping is the consumer's public address
    await waitFor(async () => (await statusAddrs(consumer)).some(a => a.startsWith(`/ip4/${r2.wanIp}/tcp/${PORT}/p2p/`)), 'the consumer to be publicly reachable', 30_000, 250)
    await consumer.waitForEvent(e => e.event === 'model:appeared' && e.model === MODEL && e.peerId === provider.ready.peerId, 'the consumer to rediscover the model', 30_000)

    // The consumer can only reach the provider through the relay; the provider,
    // seeing the relayed connection, dials the consumer's public address (DCUtR's
    // unilateral upgrade) and closes the relayed one.
    const circuit = (await statusAddrs(provider)).find(a => a.includes(`/p2p/${relay.ready.peerId}/p2p-circuit`))
    expect(circuit, 'the provider still has its relayed address').toBeDefined()
    const dial = await consumer.krill(['connect', String(circuit), '--json'])
    expect(dial.code, dial.stderr).toBe(0)
    let seen: PeerView | undefined
    const direct = await waitFor(async () => {
      seen = await peerView(consumer, provider.ready.peerId)
      return seen?.type === 'direct' && seen.connections === 1 ? seen : undefined
    }, 'the connection to the provider to become direct', 20_000, 250)
      .catch((err: Error) => { throw new Error(`${err.message}; last seen: ${JSON.stringify(seen)}`) })
    // the provider dialed in through its own NAT (router r1's public address)
    expect(direct.direction).toBe('inbound')
    expect(direct.addr).toMatch(new RegExp(`^/ip4/${lab.router('r1').wanIp.replace(/\./g, '\\.')}/tcp/\\d+/p2p/${provider.ready.peerId}$`))

    const chat = consumer.spawnKrill(['chat', '-m', MODEL, 'tell me a long story'])
    await streaming(chat)
    const view = await peerView(consumer, provider.ready.peerId)
    expect(view?.type, JSON.stringify(view)).toBe('direct')
    // still the only connection: the answer is streaming on the direct one
    expect(view?.connections).toBe(1)
    expect(view?.addr).toBe(direct.addr)

    expect(await chat.exited, chat.stderr()).toBe(0)
    expectFullAnswer(chat)
    expect((await peerView(consumer, provider.ready.peerId))?.type).toBe('direct')
  }, 90_000)

  it('finishes a chat on the direct connection when the relay is killed mid-answer', async () => {
    expect((await peerView(consumer, provider.ready.peerId))?.type).toBe('direct')
    const chat = consumer.spawnKrill(['chat', '-m', MODEL, 'tell me another long story'])
    await streaming(chat)
    expect(chat.child.exitCode, 'the chat is still streaming when the relay dies').toBeNull()
    await relay.stop('SIGKILL')

    expect(await chat.exited, chat.stderr()).toBe(0)
    expectFullAnswer(chat)
    expect(relay.child.signalCode).toBe('SIGKILL')
    await waitFor(async () => (await peerView(consumer, relay.ready.peerId)) == null, 'the consumer to notice the relay is gone', 10_000, 250)

    // With the relay gone the provider needs another one: the consumer is publicly
    // reachable now, so (autoRelay) it relays, and the provider reserves a slot there.
    await waitFor(async () => (await statusAddrs(provider)).some(a => a.includes(`/p2p/${consumer.ready.peerId}/p2p-circuit`)), 'the provider to reserve a slot on the consumer', 30_000, 250)
  }, 90_000)
})
