/**
 * One swarm key for every node a test process starts. krill is private by default
 * (each fresh data dir makes its own swarm), so nodes of one test swarm share this
 * key instead, as the members of a real swarm do after `krill invite` / `--join`.
 * Tests that want the product default (a node of its own swarm) say `ownSwarm`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKey } from '@libp2p/pnet'

let path: string | undefined

/** The path of this process's shared swarm key file (created on first use, removed at exit). */
export function testSwarmKey (): string {
  if (path != null) return path
  const dir = mkdtempSync(join(tmpdir(), 'krill-test-swarm-'))
  const key = new Uint8Array(95)
  generateKey(key)
  path = join(dir, 'swarm.key')
  writeFileSync(path, key, { mode: 0o644 })
  process.once('exit', () => { rmSync(dir, { recursive: true, force: true }) })
  return path
}

/** Whether a daemon's argv / env already names its swarm (then the shared key is not added). */
export function namesSwarm (args: string[], env: NodeJS.ProcessEnv = {}): boolean {
  return args.includes('--swarm-key') || args.includes('--join') || args.includes('--public') || args.some(a => a.startsWith('--swarm-key=') || a.startsWith('--join=')) ||
    env.KRILL_SWARM_KEY != null || env.KRILL_JOIN != null
}
