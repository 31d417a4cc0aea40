/** node:crypto Ed25519 with cached KeyObjects: the same signatures and verdicts as libp2p's keys. */
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signEd25519, verifyEd25519 } from '../../src/receipts/ed25519-keys.js'

describe('receipt signatures through cached KeyObjects', () => {
  it('sign as libp2p signs and verify what it verifies, and nothing else', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key)
    const data = new TextEncoder().encode('krill receipt bytes')
    for (let i = 0; i < 2; i++) {
      const sig = await signEd25519(key, data)
      expect(Buffer.from(sig).equals(Buffer.from(await key.sign(data)))).toBe(true)
      expect(await verifyEd25519(id.toString(), data, sig)).toBe(true)
      expect(await verifyEd25519(id, data, sig)).toBe(true)
      expect(await verifyEd25519(peerIdFromPrivateKey(other).toString(), data, sig)).toBe(false)
      const bad = Uint8Array.from(sig)
      bad[0] ^= 1
      expect(await verifyEd25519(id.toString(), data, bad)).toBe(false)
      expect(await verifyEd25519(id.toString(), new TextEncoder().encode('other bytes'), sig)).toBe(false)
    }
  })

  it('leaves other key types to libp2p', async () => {
    const key = await generateKeyPair('secp256k1')
    const data = new TextEncoder().encode('x')
    const sig = await signEd25519(key, data)
    expect(await verifyEd25519(peerIdFromPrivateKey(key).toString(), data, sig)).toBe(true)
  })
})
