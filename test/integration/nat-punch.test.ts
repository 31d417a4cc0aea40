/**
 * Two home NATs that both masquerade, with no UPnP and no forwarded port: the
 * routers drop everything unsolicited (test/helpers/netns.ts builds them). The
 * peers meet through a relay; krill's TCP hole punch (src/node/tcp-punch.ts) then
 * gives them a direct connection, and a chat started on it completes after the
 * relay is SIGKILLed.
 *
 *   relay/bootstrap (internet, --relay)
 *   provider behind r1, consumer behind r2: plain masquerade, drop-unsolicited
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { tokenScript } from '../fixtures/standin-main.js'
import { createNatLab, RELAY_IP, type NatLab, type NsDaemon, type NsProcess } from '../helpers/netns.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'punchllama:1b'
// 2000 tokens of 500 bytes at 500 tokens/s: a 4 s answer, long enough to kill the relay mid-way
const TOKENS = 2000
const TOKEN_SIZE = 500
const TPS = 500
const EXPECTED = tokenScript(TOKENS, TOKEN_SIZE).join('')
const PORT = 4747

interface PeerView { id: string, addr: string, type: 'direct' | 'relayed', direction: string, connections: number }

async function peerView (d: NsDaemon, peerId: string): Promise<PeerView | undefined> {
  const r = await d.krill(['peers', '--json'])
  if (r.code !== 0) throw new Error(`krill peers failed: ${r.stderr}`)
  return (JSON.parse(r.stdout).peers as PeerView[]).find(p => p.id === peerId)
}

async function relayedAddr (d: NsDaemon, relayId: string): Promise<string | undefined> {
  const r = await d.krill(['status', '--json'])
  if (r.code !== 0) throw new Error(`krill status failed: ${r.stderr}`)
  return (JSON.parse(r.stdout).addrs as string[]).find(a => a.includes(`/p2p/${relayId}/p2p-circuit`))
}

describe('TCP hole punching between two masquerading NATs (network namespaces)', () => {
  let lab: NatLab
  let relay: NsDaemon
  let provider: NsDaemon
  let consumer: NsDaemon
  const dirs: string[] = []
  const dataDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'krill-punch-'))
    dirs.push(d)
    return d
  }

  beforeAll(async () => {
    lab = createNatLab('krillpunch')
    const r1 = lab.router('r1')
    const r2 = lab.router('r2')
    relay = await lab.startDaemon(lab.inet, ['--relay', '--no-upnp', '--no-serve',
      '--listen', `/ip4/${RELAY_IP}/tcp/${PORT}`, '--announce', `/ip4/${RELAY_IP}/tcp/${PORT}`,
      '--api', '127.0.0.1:0', '--data-dir', await dataDir()])
    const bootstrap = `/ip4/${RELAY_IP}/tcp/${PORT}/p2p/${relay.ready.peerId}`
    const standin = await lab.startStandin(r1.host, { model: MODEL, tokensCount: TOKENS, tokenSize: TOKEN_SIZE, tps: TPS })
    provider = await lab.startDaemon(r1.host, ['--no-upnp', '--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0',
      '--bootstrap', bootstrap, '--ollama', standin.url, '--data-dir', await dataDir()])
    consumer = await lab.startDaemon(r2.host, ['--no-upnp', '--no-serve', '--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0',
      '--bootstrap', bootstrap, '--data-dir', await dataDir()])
  }, 60_000)

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const [name, d] of [['relay', relay], ['provider', provider], ['consumer', consumer]] as const) {
        if (d != null) console.error(`---- ${name} (${d.ready.peerId}) stderr, last 4000 chars ----\n${d.stderr().slice(-4000)}`)
      }
      if (lab != null) for (const r of lab.routers) console.error(`---- ${r.name} ruleset ----\n${lab.ruleset(r.ns)}`)
    })
  })

  afterAll(async () => {
    lab?.teardown()
    await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  it('replaces the relayed connection by a direct one, and a chat on it survives the relay\'s death', async () => {
    const relayId = relay.ready.peerId
    const circuit = await waitFor(async () => await relayedAddr(provider, relayId), 'the provider to advertise a relayed address', 30_000, 250)
    // the consumer reaches the provider the only way there is: through the relay
    const dial = await consumer.krill(['connect', circuit, '--json'])
    expect(dial.code, dial.stderr).toBe(0)

    let seen: PeerView | undefined
    const direct = await waitFor(async () => {
      seen = await peerView(consumer, provider.ready.peerId)
      return seen?.type === 'direct' && seen.connections === 1 ? seen : undefined
    }, 'the connection to the provider to become direct (hole punch)', 30_000, 250)
      .catch((err: Error) => { throw new Error(`${err.message}; last seen: ${JSON.stringify(seen)}`) })
    // the punched connection runs between the two routers' public addresses
    expect(direct.addr).toMatch(new RegExp(`^/ip4/${lab.router('r1').wanIp.replace(/\./g, '\\.')}/tcp/\\d+/p2p/${provider.ready.peerId}$`))
    // no forwarding rule was needed: the routers still forward nothing unsolicited
    for (const r of lab.routers) expect(lab.ruleset(r.ns)).not.toMatch(/dnat/)

    await consumer.waitForEvent(e => e.event === 'model:appeared' && e.model === MODEL && e.peerId === provider.ready.peerId, 'the consumer to know the model', 30_000)
    const chat: NsProcess = consumer.spawnKrill(['chat', '-m', MODEL, 'tell me a long story'])
    await waitFor(() => chat.stdout().length > 64 * 1024 || chat.child.exitCode != null, 'the answer to start streaming', 30_000)
    expect(chat.child.exitCode, `the chat is still streaming; stderr: ${chat.stderr()}`).toBeNull()
    await relay.stop('SIGKILL')

    expect(await chat.exited, chat.stderr()).toBe(0)
    const out = chat.stdout()
    expect(out.length).toBe(EXPECTED.length)
    expect(out === EXPECTED).toBe(true)
    expect(relay.child.signalCode).toBe('SIGKILL')
    expect((await peerView(consumer, provider.ready.peerId))?.type).toBe('direct')
  }, 120_000)
})
