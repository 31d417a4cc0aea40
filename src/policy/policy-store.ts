/**
 * The live peer policy of a daemon: read from `policy.json` in the data dir at start,
 * re-read whenever that file changes (no restart), and replaceable through the control
 * API (which writes the file, so both stay in step).
 *
 * A broken file at start stops the daemon (starting with an open policy would serve
 * peers the owner meant to refuse). A broken file later keeps the policy in force and
 * logs why; a removed file means "no policy": serve and consume everyone.
 *
 * "Serve only my swarm": with a swarm key, only peers holding the key can connect at
 * all, over TCP, WebSockets and relayed connections alike (libp2p runs the key
 * handshake before noise on each of them). As a second lock, a private-swarm node
 * serves chat requests only on connections that went through that full upgrade
 * (noise after the key handshake); transports that bring their own encryption
 * (WebRTC, WebTransport) skip the swarm key in js-libp2p and are refused, should one
 * ever be enabled.
 */
import { watch, type FSWatcher } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Connection } from '@libp2p/interface'
import { PolicyFileError } from '../errors.js'
import { logger } from '../log.js'
import { CompiledPolicy, OPEN_POLICY, parsePolicy, PolicyError, type PeerPolicy } from './peer-policy.js'

const log = logger('policy')

export const POLICY_FILE = 'policy.json'
/** encryption protocol id of connections that went through the swarm key handshake */
const NOISE = '/noise'
/** a list of 10 000 peer ids is about 600 KB of JSON */
const MAX_FILE_BYTES = 2 * 1024 * 1024

export interface PolicyStats {
  /** chat streams refused by the serve policy (or the swarm-only rule) */
  serveRefused: number
  /** providers the router skipped because of the consume policy */
  consumeSkipped: number
  /** successful (re)loads and replacements */
  reloads: number
  /** file changes that were rejected (the old policy stayed) */
  reloadErrors: number
}

export interface PolicyStoreOptions {
  dataDir: string
  /** a swarm key is set: serve only over connections the key protects */
  privateSwarm: boolean
  /** how long the file must be quiet before it is re-read (editors write in steps) */
  debounceMs?: number
}

export class PolicyStore {
  readonly path: string
  readonly privateSwarm: boolean
  readonly stats: PolicyStats = { serveRefused: 0, consumeSkipped: 0, reloads: 0, reloadErrors: 0 }
  /** why the last change of the file was not applied; cleared by the next good one */
  lastError: string | undefined
  private compiled = new CompiledPolicy(OPEN_POLICY)
  private watcher: FSWatcher | undefined
  private debounce: NodeJS.Timeout | undefined
  private readonly debounceMs: number
  private readonly dataDir: string
  /** serializes reloads and writes so an older read never wins over a newer one */
  private chain: Promise<void> = Promise.resolve()

  constructor (opts: PolicyStoreOptions) {
    this.dataDir = opts.dataDir
    this.path = join(opts.dataDir, POLICY_FILE)
    this.privateSwarm = opts.privateSwarm
    this.debounceMs = opts.debounceMs ?? 100
  }

  get policy (): PeerPolicy {
    return this.compiled.policy
  }

  /** Reads policy.json (if any) and starts watching it. Throws PolicyFileError on a bad file. */
  async start (): Promise<void> {
    try {
      this.apply(await this.read(), 'loaded')
    } catch (err) {
      throw new PolicyFileError(`${this.path}: ${(err as Error).message}; fix it or remove the file`, { cause: err })
    }
    // the directory, not the file: editors and the API replace the file by renaming,
    // which would leave a watch on the old inode blind
    this.watcher = watch(this.dataDir, { persistent: false }, (_event, name) => {
      if (name === POLICY_FILE) this.scheduleReload()
    })
    this.watcher.on('error', err => { log.warn(`cannot watch ${this.path} any more (${err.message}); policy changes now need the control API or a restart`) })
  }

  stop (): void {
    clearTimeout(this.debounce)
    this.watcher?.close()
    this.watcher = undefined
  }

  /** Why `peer` may not use our engine over `connection`, or undefined to serve it. */
  readonly authorizeServe = (peer: string, connection: Pick<Connection, 'encryption'>): string | undefined => {
    if (this.privateSwarm && connection.encryption !== NOISE) {
      this.stats.serveRefused++
      return 'this private swarm serves only over connections protected by its swarm key'
    }
    const why = this.compiled.check('serve', peer)
    if (why != null) this.stats.serveRefused++
    return why
  }

  /** Whether our router may send a prompt to `peer`. */
  readonly mayConsume = (peer: string): boolean => {
    if (this.compiled.check('consume', peer) == null) return true
    this.stats.consumeSkipped++
    return false
  }

  /**
   * Validates `input`, writes it to policy.json and puts it in force at once.
   * Throws PolicyError when it is invalid (nothing changes then).
   */
  async replace (input: unknown): Promise<PeerPolicy> {
    const policy = parsePolicy(input)
    await this.serially(async () => {
      const tmp = `${this.path}.${process.pid}.tmp`
      await writeFile(tmp, JSON.stringify(policy, null, 2) + '\n', { mode: 0o600 })
      await rename(tmp, this.path)
      this.apply(policy, 'replaced through the control API')
    })
    return this.policy
  }

  /** Re-reads the file now; what the watcher does after a change. */
  async reload (): Promise<void> {
    await this.serially(async () => {
      try {
        this.apply(await this.read(), 'reloaded')
      } catch (err) {
        this.stats.reloadErrors++
        this.lastError = (err as Error).message
        log.warn(`${this.path} changed but was not applied, the previous policy stays in force: ${this.lastError}`)
      }
    })
  }

  private scheduleReload (): void {
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => { void this.reload() }, this.debounceMs)
    this.debounce.unref()
  }

  private async serially (fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(fn)
    this.chain = run.catch(() => {})
    await run
  }

  /** The file's policy; the open policy when there is no file. Throws PolicyError. */
  private async read (): Promise<PeerPolicy> {
    let text: string
    try {
      const bytes = await readFile(this.path)
      if (bytes.byteLength > MAX_FILE_BYTES) throw new PolicyError(`${bytes.byteLength} bytes is more than the ${MAX_FILE_BYTES} a policy may have`)
      text = bytes.toString('utf8')
    } catch (err: any) {
      if (err?.code === 'ENOENT') return OPEN_POLICY
      if (err instanceof PolicyError) throw err
      throw new PolicyError(`cannot read it (${err?.code ?? err?.message})`)
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      throw new PolicyError(`not valid JSON (${(err as Error).message})`)
    }
    return parsePolicy(json)
  }

  private apply (policy: PeerPolicy, how: string): void {
    const before = JSON.stringify(this.compiled.policy)
    this.compiled = new CompiledPolicy(policy)
    this.lastError = undefined
    this.stats.reloads++
    if (JSON.stringify(policy) !== before) log.info(`peer policy ${how}: ${describe(policy)}`)
  }
}

function describeSide (name: string, l: PeerPolicy['serve']): string {
  const allow = l.allow == null ? 'everyone' : `${l.allow.length} allowed peer(s) only`
  return `${name} ${allow}${l.deny.length > 0 ? `, ${l.deny.length} denied` : ''}`
}

function describe (policy: PeerPolicy): string {
  return `${describeSide('serve', policy.serve)}; ${describeSide('consume', policy.consume)}`
}
