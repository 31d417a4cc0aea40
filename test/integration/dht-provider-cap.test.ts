/**
 * krill's DHT names at most 20 providers of a key in an answer (dht-provider-cap.ts):
 * a node holding 60 provider records of a model's key answers a real GET_PROVIDERS
 * from another daemon with 20 of them, a different random 20 each time.
 */
import { rm } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { modelKey } from '../../src/discovery/keys.js'
import { MAX_PROVIDERS_PER_ANSWER } from '../../src/node/dht-provider-cap.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

describe('provider answers of krill\'s DHT', () => {
  let holder: TestDaemon
  let asker: TestDaemon
  beforeAll(async () => {
    holder = await startTestDaemon({ serve: false })
    asker = await startTestDaemon({ serve: false, bootstrap: [holder.daemon.addrs()[0]] })
    await waitFor(() => asker.daemon.libp2p.getConnections(holder.daemon.peerId).length > 0, 'the two daemons to connect')
  })
  afterAll(async () => {
    for (const n of [asker, holder]) {
      await n?.daemon.stop()
      if (n != null) await rm(n.config.dataDir, { recursive: true, force: true })
    }
  })

  it(`name at most ${MAX_PROVIDERS_PER_ANSWER} of the records held, a random sample each time`, async () => {
    const cid = modelKey('popular:7b')
    const dht = holder.daemon.libp2p.services.dht as any
    const providers: PeerId[] = []
    for (let i = 0; i < 60; i++) {
      const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      providers.push(id)
      await holder.daemon.libp2p.peerStore.merge(id, { multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/${20_000 + i}`)] })
      await dht.providers.addProvider(cid, id)
    }
    const all = new Set(providers.map(p => p.toString()))
    const ask = async (): Promise<string[]> => {
      const named: string[] = []
      for await (const event of asker.daemon.libp2p.services.dht.findProviders(cid, { signal: AbortSignal.timeout(10_000) }) as AsyncIterable<any>) {
        if (event.name === 'PROVIDER' && event.from?.equals(holder.daemon.peerId) === true) named.push(...event.providers.map((p: any) => p.id.toString()))
      }
      return named
    }
    const first = await ask()
    const second = await ask()
    for (const named of [first, second]) {
      expect(named.length).toBe(MAX_PROVIDERS_PER_ANSWER)
      for (const id of named) expect(all.has(id)).toBe(true)
    }
    // random, not the store's first 20 every time
    expect(first.slice().sort()).not.toEqual(second.slice().sort())
  })
})
