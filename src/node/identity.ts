import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { IdentityError } from '../errors.js'

export const IDENTITY_FILE = 'identity.key'

/**
 * Loads this node's Ed25519 key from the data dir, creating it on first start.
 * The key file holds the key's protobuf encoding and is readable by its owner only.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<{ privateKey: PrivateKey, created: boolean }> {
  const path = join(dataDir, IDENTITY_FILE)
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err: any) {
    if (err.code !== 'ENOENT') {
      throw new IdentityError(`cannot read identity key ${path}: ${err.code ?? err.message}; check its owner and permissions (it must be readable by you, mode 0600)`, { cause: err })
    }
  }

  if (bytes != null) {
    try {
      return { privateKey: privateKeyFromProtobuf(bytes), created: false }
    } catch {
      throw new IdentityError(`identity key ${path} is corrupt; restore it from a backup or move it away to create a new identity (the peer id will change)`)
    }
  }

  const privateKey = await generateKeyPair('Ed25519')
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    // 'wx' so two processes starting at once never overwrite each other's key
    await writeFile(path, privateKeyToProtobuf(privateKey), { mode: 0o600, flag: 'wx' })
    await chmod(path, 0o600)
  } catch (err: any) {
    if (err.code === 'EEXIST') return await loadOrCreateIdentity(dataDir)
    throw new IdentityError(`cannot create identity key in ${dataDir}: ${err.code ?? err.message}; choose a writable --data-dir`, { cause: err })
  }
  return { privateKey, created: true }
}
