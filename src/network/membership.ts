/**
 * Swarm membership: which private swarm this node is in, kept in its data dir.
 *
 *   <data dir>/swarm.key     the swarm's pnet key (mode 0600), created on the first start
 *   <data dir>/network.json  what --join remembered: the inviter and its addresses
 *
 * Order: `--swarm-key FILE` (flag, KRILL_SWARM_KEY, krill.json) names the key
 * directly; else `--join TOKEN` (or KRILL_JOIN) writes the token's key and
 * addresses into the data dir; else the data dir's key is used; else a fresh key is
 * made, and the node is the first member of its own swarm. Joining replaces the
 * node's own key; the old one is kept next to it (swarm.key.before-join).
 */
import { chmod, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'
import { z } from 'zod'
import { ConfigError, FileError } from '../errors.js'
import { readSwarmKey, swarmKeyBytes, swarmKeyFile } from './swarm-key.js'
import type { InviteContent } from './invite-token.js'
import type { NetworkMode } from './network-mode.js'

export const SWARM_KEY_FILE = 'swarm.key'
export const NETWORK_FILE = 'network.json'

export interface Membership {
  network: NetworkMode
  /** the key file libp2p's pnet protector reads; undefined on the public network */
  swarmKeyPath?: string
  /** the 32 key bytes (what invites hand on); undefined on the public network */
  swarmKey?: Uint8Array
  /** 'file': --swarm-key; 'joined': an invite (now or earlier); 'own': this node's own swarm; 'public': no swarm key */
  source: 'file' | 'joined' | 'own' | 'public'
  /** true when this start created the key (a first start) */
  created: boolean
  /** addresses remembered from the invite we joined with: dialed at every start */
  bootstrap: string[]
}

const networkFileSchema = z.object({
  version: z.literal(1),
  joined: z.object({
    issuer: z.string().max(100),
    addrs: z.array(z.string().max(1000)).max(16),
    at: z.number().int()
  }).optional()
})

type NetworkFile = z.infer<typeof networkFileSchema>

async function readNetworkFile (dataDir: string): Promise<NetworkFile> {
  const path = join(dataDir, NETWORK_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') return { version: 1 }
    throw new FileError(`cannot read ${path}: ${err.message}`, { cause: err })
  }
  try {
    return networkFileSchema.parse(JSON.parse(text))
  } catch {
    throw new FileError(`${path} is damaged; remove it and join again with --join TOKEN`)
  }
}

async function exists (path: string): Promise<boolean> {
  return await readFile(path).then(() => true, () => false)
}

async function writePrivate (path: string, bytes: Uint8Array | string): Promise<void> {
  await writeFile(path, bytes, { mode: 0o600 })
  await chmod(path, 0o600)
}

export interface MembershipOptions {
  dataDir: string
  /** 'public': the open network, no swarm key at all (issue 13 item 2 adds the flag and rendezvous) */
  network?: NetworkMode
  /** --swarm-key FILE */
  swarmKeyPath?: string
  /** a checked --join token */
  join?: InviteContent
  /** this node's peer id: an invite of our own adds no bootstrap address */
  selfId?: string
}

/** Finds (or makes, or joins) this node's swarm; see the file comment for the order. */
export async function resolveMembership (opts: MembershipOptions): Promise<Membership> {
  if (opts.network === 'public') {
    if (opts.swarmKeyPath != null || opts.join != null) throw new ConfigError('the public network has no swarm key: drop --swarm-key / --join, or stay private')
    return { network: 'public', source: 'public', created: false, bootstrap: [] }
  }
  if (opts.swarmKeyPath != null) {
    if (opts.join != null) throw new ConfigError('--join and --swarm-key both name a swarm; pass only one of them')
    const file = await readSwarmKey(opts.swarmKeyPath)
    return { network: 'private', swarmKeyPath: opts.swarmKeyPath, swarmKey: swarmKeyBytes(file), source: 'file', created: false, bootstrap: [] }
  }
  const keyPath = join(opts.dataDir, SWARM_KEY_FILE)
  if (opts.join != null) {
    const invite = opts.join
    const fresh = swarmKeyFile(invite.swarmKey)
    if (await exists(keyPath)) {
      const current = swarmKeyBytes(await readSwarmKey(keyPath))
      if (!Buffer.from(current).equals(Buffer.from(invite.swarmKey))) await rename(keyPath, `${keyPath}.before-join`)
    }
    await writePrivate(keyPath, fresh)
    const issuer = invite.issuer.toString()
    const addrs = issuer === opts.selfId ? [] : invite.addrs.map(a => a.toString())
    const record: NetworkFile = { version: 1, joined: { issuer, addrs, at: Date.now() } }
    await writePrivate(join(opts.dataDir, NETWORK_FILE), JSON.stringify(record, null, 2) + '\n')
    return { network: 'private', swarmKeyPath: keyPath, swarmKey: invite.swarmKey, source: 'joined', created: false, bootstrap: addrs }
  }
  if (await exists(keyPath)) {
    const key = swarmKeyBytes(await readSwarmKey(keyPath))
    const remembered = await readNetworkFile(opts.dataDir)
    return {
      network: 'private',
      swarmKeyPath: keyPath,
      swarmKey: key,
      source: remembered.joined != null ? 'joined' : 'own',
      created: false,
      bootstrap: remembered.joined?.addrs ?? []
    }
  }
  const file = new Uint8Array(95)
  generateKey(file)
  await writePrivate(keyPath, file)
  return { network: 'private', swarmKeyPath: keyPath, swarmKey: swarmKeyBytes(await readSwarmKey(keyPath)), source: 'own', created: true, bootstrap: [] }
}
