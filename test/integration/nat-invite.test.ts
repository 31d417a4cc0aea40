/**
 * Invite and join across two NATs (network namespaces, test/helpers/netns.ts):
 * every node here runs with the product default (its own private swarm) and joins
 * only by invite token — no --bootstrap, no shared key file.
 *
 *   relay     on the internet: a fresh node, --relay; its invite lets the provider in
 *   provider  behind router r1: joins the relay's swarm, reachable only through it;
 *             its own invite carries its relayed address
 *   consumer  behind router r2: joins with the provider's invite, lists the model
 *             from the provider's sync answer and chats through the relay
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StatusAnswer } from '../../src/api/control.js'
import { tokenScript } from '../fixtures/standin-main.js'
import { createNatLab, RELAY_IP, type NatLab, type NsDaemon } from '../helpers/netns.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'invitellama:1b'
const TOKENS = 200
const TOKEN_SIZE = 20
const PORT = 4747

async function status (d: NsDaemon): Promise<StatusAnswer> {
  const r = await d.krill(['status', '--json'])
  if (r.code !== 0) throw new Error(`krill status failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as StatusAnswer
}

async function invite (d: NsDaemon): Promise<string> {
  const r = await d.krill(['invite', '--json', '--expires', '10m'])
  if (r.code !== 0) throw new Error(`krill invite failed: ${r.stderr}`)
  return JSON.parse(r.stdout).token
}

describe('invite and join across two NATs through a relay (network namespaces)', () => {
  let lab: NatLab
  let relay: NsDaemon
  let provider: NsDaemon
  const dirs: string[] = []
  const dataDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'krill-natinv-'))
    dirs.push(d)
    return d
  }

  beforeAll(async () => {
    lab = createNatLab('krillinv')
    const r1 = lab.router('r1')
    relay = await lab.startDaemon(lab.inet, ['--relay', '--no-serve',
      '--listen', `/ip4/${RELAY_IP}/tcp/${PORT}`, '--announce', `/ip4/${RELAY_IP}/tcp/${PORT}`,
      '--api', '127.0.0.1:0', '--data-dir', await dataDir()], { ownSwarm: true })
    const standin = await lab.startStandin(r1.host, { model: MODEL, tokensCount: TOKENS, tokenSize: TOKEN_SIZE, tps: 200 })
    provider = await lab.startDaemon(r1.host, ['--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0',
      '--join', await invite(relay), '--ollama', standin.url, '--data-dir', await dataDir()])
  }, 90_000)

  afterAll(async () => {
    lab?.teardown()
    await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  it('joins a NATed provider by its invite (its relayed address), lists its model at once and chats', async () => {
    const relayId = relay.ready.peerId
    expect(relay.events.find(e => e.event === 'ready')?.network).toBe('private')
    // the provider got into the relay's swarm by invite and holds a reservation there
    await waitFor(async () => (await status(provider)).addrs.some(a => a.includes(`/p2p/${relayId}/p2p-circuit`)), 'the provider to advertise a relayed address', 30_000, 250)
    const token = await invite(provider)

    const r2 = lab.router('r2')
    const started = Date.now()
    const consumer = await lab.startDaemon(r2.host, ['--no-serve', '--listen', `/ip4/0.0.0.0/tcp/${PORT}`, '--api', '127.0.0.1:0',
      '--join', token, '--data-dir', await dataDir()])
    const readyMs = Date.now() - started
    const readyAt = Date.now()
    await consumer.waitForEvent(e => e.event === 'model:appeared' && e.model === MODEL && e.peerId === provider.ready.peerId, 'the consumer to list the provider\'s model', 30_000)
    // an upper bound: the event may have been printed before we looked
    const listedMs = Date.now() - readyAt
    console.log(`consumer ready ${readyMs} ms after its start; the provider's model listed at most ${listedMs} ms after the ready line`)
    // (the relay may have handed it on first: it holds the provider's announcement too)
    await consumer.waitForEvent(e => e.event === 'peer:joined' && e.peerId === provider.ready.peerId, 'the consumer to reach the provider', 30_000)
    // the provider re-announces only every 20 s: the sync answer brought the model.
    // (The 2 s target is measured, and reported, in docs; this bound holds on a loaded machine.)
    expect(listedMs).toBeLessThan(10_000)

    const peers = JSON.parse((await consumer.krill(['peers', '--json'])).stdout).peers as Array<{ id: string, type: string }>
    expect(peers.find(p => p.id === provider.ready.peerId)?.type).toBe('relayed')
    const chat = await consumer.krill(['chat', '-m', MODEL, 'hello through two NATs'], { timeoutMs: 60_000 })
    expect(chat.code, chat.stderr).toBe(0)
    expect(chat.stdout).toContain(tokenScript(TOKENS, TOKEN_SIZE).join(''))
  }, 120_000)

  it('refuses a node that was not invited, even with the relay\'s address', async () => {
    const r2 = lab.router('r2')
    const stranger = await lab.startDaemon(r2.host, ['--no-serve', '--listen', `/ip4/0.0.0.0/tcp/${PORT + 1}`, '--api', '127.0.0.1:0',
      '--bootstrap', `/ip4/${RELAY_IP}/tcp/${PORT}/p2p/${relay.ready.peerId}`, '--data-dir', await dataDir()], { ownSwarm: true })
    const dial = await stranger.krill(['connect', `/ip4/${RELAY_IP}/tcp/${PORT}/p2p/${relay.ready.peerId}`, '--json'])
    expect(dial.code).not.toBe(0)
    expect((await status(stranger)).peers).toBe(0)
    await stranger.stop()
  }, 60_000)
})
