/**
 * krill's libp2p services detach every listener and timer they set up: driven
 * through libp2p's lifecycle (start → afterStart → beforeStop → stop) on stand-in
 * components that count listeners, with fake timers counting what is pending.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { autoDhtMode } from '../../src/node/dht-mode.js'
import { RelayPolicy, relayReserver } from '../../src/node/nat.js'
import { peerDialer } from '../../src/node/peer-dialer.js'
import { chatServer } from '../../src/protocol/chat-server.js'
import { CHAT_PROTOCOL } from '../../src/protocol/ids.js'
import { DEFAULT_RELAY_LIMITS } from '../../src/node/config.js'

class CountingEvents extends EventTarget {
  readonly live = new Set<string>()
  private readonly ids = new WeakMap<object, number>()
  private next = 0

  private key (type: string, listener: unknown): string {
    const l = listener as object
    if (!this.ids.has(l)) this.ids.set(l, this.next++)
    return `${type}#${this.ids.get(l)}`
  }

  addEventListener (type: string, listener: any, options?: any): void {
    if (listener != null) this.live.add(this.key(type, listener))
    super.addEventListener(type, listener, options)
  }

  removeEventListener (type: string, listener: any, options?: any): void {
    if (listener != null) this.live.delete(this.key(type, listener))
    super.removeEventListener(type, listener, options)
  }

  safeDispatchEvent (type: string, init: { detail?: unknown } = {}): boolean {
    return this.dispatchEvent(new CustomEvent(type, init))
  }
}

async function components (): Promise<{ events: CountingEvents, c: any }> {
  const events = new CountingEvents()
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const c = {
    peerId,
    events,
    logger: defaultLogger(),
    peerStore: { all: async () => [], merge: async () => {} },
    peerRouting: { async * getClosestPeers () {} },
    contentRouting: {},
    connectionManager: { getConnections: () => [], openConnection: async () => { throw new Error('no dialing here') } },
    addressManager: { getAddresses: () => [] },
    transportManager: { listen: async () => {} },
    registrar: { handle: async () => {}, unhandle: async () => {} },
    dht: { getMode: () => 'client', setMode: async () => {} }
  }
  return { events, c }
}

async function lifecycle (service: any, during: () => void, after: () => void): Promise<void> {
  await service.start?.()
  await service.afterStart?.()
  during()
  await service.beforeStop?.()
  await service.stop?.()
  after()
}

describe('krill\'s libp2p services detach what they attach', () => {
  afterEach(() => { vi.useRealTimers() })

  it('AutoDhtMode: its listeners live from afterStart to beforeStop', async () => {
    const { events, c } = await components()
    await lifecycle(autoDhtMode()(c), () => { expect(events.live.size).toBe(3) }, () => { expect(events.live.size).toBe(0) })
  })

  it('the relay policy\'s reachability reports: one listener, gone on stop', async () => {
    const { events, c } = await components()
    const policy = new RelayPolicy({ relay: false, autoRelay: true, autonat: false, limits: DEFAULT_RELAY_LIMITS })
    await lifecycle(policy.service()(c), () => { expect(events.live.size).toBe(1) }, () => { expect(events.live.size).toBe(0) })
  })

  it('the relay reserver: listeners and its re-check interval, all gone on stop', async () => {
    vi.useFakeTimers()
    const { events, c } = await components()
    await lifecycle(relayReserver()(c), () => {
      expect(events.live.size).toBeGreaterThan(0)
      expect(vi.getTimerCount()).toBeGreaterThan(0)
    }, () => {
      expect(events.live.size).toBe(0)
      expect(vi.getTimerCount()).toBe(0)
    })
  })

  it('the peer dialer: listeners and its lookup timer, all gone on stop', async () => {
    vi.useFakeTimers()
    const { events, c } = await components()
    await lifecycle(peerDialer({ minConnections: 6 })(c), () => {
      expect(events.live.size).toBe(3)
      // fewer connections than minConnections: a lookup is scheduled
      expect(vi.getTimerCount()).toBe(1)
    }, () => {
      expect(events.live.size).toBe(0)
      expect(vi.getTimerCount()).toBe(0)
    })
  })
  it('the chat server: its protocol handler from start to stop', async () => {
    const { c } = await components()
    const handled: string[] = []
    c.registrar = { handle: async (p: string) => { handled.push(p) }, unhandle: async (p: string) => { handled.splice(handled.indexOf(p), 1) } }
    const engine = { listModels: async () => [], isHealthy: async () => true, async * chat () {} }
    const server = chatServer({ engine: engine as any, slots: 1, maxQueue: 1, isServedModel: () => true })(c)
    await lifecycle(server, () => { expect(handled).toEqual([CHAT_PROTOCOL]) }, () => { expect(handled).toEqual([]) })
    // a drained server takes no local chats either
    await expect(server.chatLocal({ model: 'm', messages: [] }, new AbortController().signal).next()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' })
  })
})
