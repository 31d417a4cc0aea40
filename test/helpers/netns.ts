/**
 * Real NATs for integration tests, built from Linux network namespaces.
 *
 *                        internet (namespace "<id>-inet")
 *            bridge br0, 11.0.113.0/24 — the relay/bootstrap node at 11.0.113.10
 *                 |                                        |
 *   router r1: wan 11.0.113.1                  router r2: wan 11.0.113.2
 *   nftables masquerade + stateful forward     (same; optionally miniupnpd)
 *   lan 192.168.1.1                            lan 192.168.2.1
 *                 |                                        |
 *   host h1: 192.168.1.10 (provider)           host h2: 192.168.2.10 (consumer)
 *
 * Why 11.0.113.0/24 and not a documentation range: libp2p (@libp2p/utils
 * private-ip) classifies 192.0.2/24, 198.51.100/24, 203.0.113/24 — every
 * special-purpose IPv4 range, and 2001:db8::/32 — as private, and so do AutoNAT,
 * DCUtR and UPnP (which would even report a "double NAT"); miniupnpd refuses to
 * forward ports on such a WAN address too. On a documentation-range "internet"
 * relays work but nothing that needs a public address can. So the sandbox's
 * internet uses an ordinary unicast range, which exists only inside these
 * namespaces: no namespace has a route out (hosts route only to their router,
 * routers only know their two links, the internet only its bridge), and traffic
 * only ever goes to addresses assigned here. The home LANs are private ranges.
 *
 * Needs root (CI runs as root) plus `ip` and `nft`, and miniupnpd for a UPnP
 * router (each installed with apt-get when missing). When namespaces cannot be built, createNatLab throws: NAT tests fail
 * loudly, they never skip. Everything is torn down by lab.teardown(), and also on
 * process exit, SIGINT and SIGTERM; namespaces left by a crashed earlier run
 * (prefix + a pid that no longer runs) are removed at start.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { namesSwarm, testSwarmKey } from './test-swarm-key.js'

export const NETNS_PREFIX = 'krillnat'

/** The repository root, whether this file runs as test/helpers/netns.ts or compiled under dist-test/. */
function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json')) || basename(dir) === 'dist-test') {
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the repository root above ' + fileURLToPath(import.meta.url))
    dir = up
  }
  return dir
}

const ROOT = repoRoot()
export const KRILL_BIN = join(ROOT, 'bin', 'krill')
/** the stand-in's entry point, compiled by `npm run build:test` */
export const STANDIN_MAIN = join(ROOT, 'dist-test', 'test', 'fixtures', 'standin-main.js')

export const INTERNET_NET = '11.0.113'
export const RELAY_IP = `${INTERNET_NET}.10`

export interface RouterSpec {
  /** short name, e.g. "r1"; its home host is named "h" + the same number */
  name: string
  wanIp: string
  /** first three octets of the LAN, e.g. "192.168.1" */
  lan: string
}

export const DEFAULT_ROUTERS: RouterSpec[] = [
  { name: 'r1', wanIp: `${INTERNET_NET}.1`, lan: '192.168.1' },
  { name: 'r2', wanIp: `${INTERNET_NET}.2`, lan: '192.168.2' }
]

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface NsProcess {
  child: ChildProcess
  /** JSON lines printed on stdout (the ready line included) */
  events: Array<Record<string, any>>
  /** everything printed on stdout so far */
  stdout: () => string
  stderr: () => string
  /** resolves with the first event that matches */
  waitForEvent: (match: (e: Record<string, any>) => boolean, what: string, timeoutMs?: number) => Promise<Record<string, any>>
  /** signal (default SIGTERM) and wait for exit */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
  exited: Promise<number | null>
}

export interface NsDaemon extends NsProcess {
  ns: string
  ready: { peerId: string, addrs: string[], api: string }
  /** runs `krill <args>` inside the daemon's namespace against its API */
  krill: (args: string[], opts?: { timeoutMs?: number, input?: string }) => Promise<RunResult>
  /** starts `krill <args>` there without waiting (e.g. a long chat to watch) */
  spawnKrill: (args: string[]) => NsProcess
}

/** Synchronous command runner for setup and teardown; throws with stderr. */
function sh (cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (err: any) {
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed: ${String(err.stderr ?? err.message).trim()}`)
  }
}

function has (tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function aptInstall (packages: string[]): void {
  if (!has('apt-get')) throw new Error(`${packages.join(', ')} missing and apt-get is not available to install them`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = (): void => { execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { stdio: 'ignore', env, timeout: 300_000 }) }
  try {
    install()
  } catch {
    // a fresh image has no package lists yet
    execFileSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 300_000 })
    install()
  }
}

/** `ip` and `nft` must exist; CI images may lack them, so install them (root, Debian). */
export function ensureTools (): void {
  if (process.getuid?.() !== 0) {
    throw new Error('NAT tests build network namespaces and need root (CI runs them as root); run `sudo npx vitest run test/integration/nat.test.ts`')
  }
  if (has('ip') && has('nft')) return
  aptInstall(['nftables', 'iproute2'])
  if (!has('ip') || !has('nft')) throw new Error('installing iproute2 and nftables did not provide `ip` and `nft`')
}

const MINIUPNPD = '/usr/sbin/miniupnpd'

/** miniupnpd with its nftables backend (Debian: miniupnpd-nftables). */
export function ensureMiniupnpd (): void {
  if (existsSync(MINIUPNPD)) return
  aptInstall(['miniupnpd-nftables'])
  if (!existsSync(MINIUPNPD)) throw new Error('installing miniupnpd-nftables did not provide ' + MINIUPNPD)
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err.code === 'EPERM'
  }
}

function listNamespaces (): string[] {
  return sh('ip', ['netns', 'list']).split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n != null && n !== '')
}

/** Kills every process inside `ns` and deletes it; never throws (teardown must go on). */
function destroyNamespace (ns: string): void {
  try {
    const pids = sh('ip', ['netns', 'pids', ns]).split('\n').map(Number).filter(n => Number.isInteger(n) && n > 0)
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
    }
  } catch { /* namespace already gone */ }
  try { sh('ip', ['netns', 'del', ns]) } catch { /* already gone */ }
}

/** Removes namespaces of earlier runs whose process no longer exists (a crash, a kill -9). */
export function cleanStaleNamespaces (prefix = NETNS_PREFIX): string[] {
  const stale: string[] = []
  for (const ns of listNamespaces()) {
    const m = new RegExp(`^${prefix}-(\\d+)-`).exec(ns)
    if (m == null) continue
    const pid = Number(m[1])
    if (pid === process.pid || pidAlive(pid)) continue
    destroyNamespace(ns)
    stale.push(ns)
  }
  return stale
}

export class NatLab {
  /** e.g. "krillnat-12345": every namespace name starts with it */
  readonly id: string
  readonly inet: string
  readonly routers: Array<RouterSpec & { ns: string, host: string, hostIp: string, routerLanIp: string }>
  private readonly namespaces: string[] = []
  private readonly children = new Set<ChildProcess>()
  private readonly tempDirs: string[] = []
  private tornDown = false

  constructor (readonly prefix = NETNS_PREFIX, specs: RouterSpec[] = DEFAULT_ROUTERS) {
    this.id = `${prefix}-${process.pid}`
    this.inet = `${this.id}-inet`
    this.routers = specs.map(r => ({
      ...r,
      ns: `${this.id}-${r.name}`,
      host: `${this.id}-h${r.name.replace(/^\D+/, '')}`,
      hostIp: `${r.lan}.10`,
      routerLanIp: `${r.lan}.1`
    }))
  }

  router (name: string): NatLab['routers'][number] {
    const r = this.routers.find(r => r.name === name)
    if (r == null) throw new Error(`no router ${name}`)
    return r
  }

  /** Builds the namespaces, links, addresses, routes and NAT rules. */
  build (): void {
    ensureTools()
    cleanStaleNamespaces(this.prefix)
    registerExitCleanup(this)
    // veth names live briefly in the root namespace: keep them short and unique per run
    const tag = `kn${process.pid.toString(36)}`
    const addNs = (ns: string): void => {
      sh('ip', ['netns', 'add', ns])
      this.namespaces.push(ns)
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      // IPv4 only: keeps link-local IPv6 chatter and addresses out of the picture
      sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1'])
    }
    const veth = (a: string, aNs: string, aName: string, b: string, bNs: string, bName: string): void => {
      sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b])
      sh('ip', ['link', 'set', a, 'netns', aNs])
      sh('ip', ['link', 'set', b, 'netns', bNs])
      sh('ip', ['-n', aNs, 'link', 'set', a, 'name', aName])
      sh('ip', ['-n', bNs, 'link', 'set', b, 'name', bName])
    }

    addNs(this.inet)
    sh('ip', ['-n', this.inet, 'link', 'add', 'br0', 'type', 'bridge'])
    sh('ip', ['-n', this.inet, 'addr', 'add', `${RELAY_IP}/24`, 'dev', 'br0'])
    sh('ip', ['-n', this.inet, 'link', 'set', 'br0', 'up'])

    this.routers.forEach((r, i) => {
      addNs(r.ns)
      addNs(r.host)
      // WAN: router <-> internet bridge
      veth(`${tag}w${i}`, r.ns, 'wan', `${tag}W${i}`, this.inet, `${r.name}-wan`)
      sh('ip', ['-n', this.inet, 'link', 'set', `${r.name}-wan`, 'master', 'br0', 'up'])
      sh('ip', ['-n', r.ns, 'addr', 'add', `${r.wanIp}/24`, 'dev', 'wan'])
      sh('ip', ['-n', r.ns, 'link', 'set', 'wan', 'up'])
      // LAN: router <-> home host
      veth(`${tag}l${i}`, r.ns, 'lan', `${tag}L${i}`, r.host, 'eth0')
      sh('ip', ['-n', r.ns, 'addr', 'add', `${r.routerLanIp}/24`, 'dev', 'lan'])
      sh('ip', ['-n', r.ns, 'link', 'set', 'lan', 'up'])
      sh('ip', ['-n', r.host, 'addr', 'add', `${r.hostIp}/24`, 'dev', 'eth0'])
      sh('ip', ['-n', r.host, 'link', 'set', 'eth0', 'up'])
      sh('ip', ['-n', r.host, 'route', 'add', 'default', 'via', r.routerLanIp])
      sh('ip', ['netns', 'exec', r.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
      // A home router: LAN hosts share the WAN address (masquerade: source ports are
      // kept when free, replies and related packets come back in, nothing else does,
      // except what the UPnP chain forwards).
      sh('ip', ['netns', 'exec', r.ns, 'nft', '-f', '-'], `
table inet krill {
  chain upnp_forward {
  }
  chain upnp_prerouting {
  }
  chain upnp_postrouting {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump upnp_prerouting
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump upnp_postrouting
    oifname "wan" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
    jump upnp_forward
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state != established,related drop
  }
}
`)
    })
  }

  /**
   * Spawns `argv` inside `ns` (`ip netns exec NS …`: the child is the program
   * itself, so signals reach it). Tracked for teardown.
   */
  spawn (ns: string, argv: string[], env: NodeJS.ProcessEnv = {}): NsProcess {
    if (this.tornDown) throw new Error('lab is torn down')
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.children.add(child)
    let stderr = ''
    let stdout = ''
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => {
      this.children.delete(child)
      resolve(code)
    }))
    const events: Array<Record<string, any>> = []
    const watchers = new Set<() => void>()
    createInterface({ input: child.stdout! }).on('line', line => {
      try {
        events.push(JSON.parse(line))
      } catch {
        return // not an event line
      }
      for (const w of watchers) w()
    })
    const waitForEvent = async (match: (e: Record<string, any>) => boolean, what: string, timeoutMs = 30_000): Promise<Record<string, any>> => {
      return await new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = events.find(match)
          if (hit != null) finish(() => resolve(hit))
        }
        const finish = (f: () => void): void => {
          clearTimeout(timer)
          watchers.delete(check)
          f()
        }
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr:\n${stderr.slice(-4000)}`))), timeoutMs)
        watchers.add(check)
        void exited.then(code => finish(() => reject(new Error(`process in ${ns} exited with ${code} before ${what}; stderr:\n${stderr.slice(-4000)}`))))
        check()
      })
    }
    return {
      child,
      events,
      stdout: () => stdout,
      stderr: () => stderr,
      waitForEvent,
      exited,
      stop: async (signal = 'SIGTERM') => {
        if (child.exitCode == null && child.signalCode == null) child.kill(signal)
        return await exited
      }
    }
  }

  /** Runs `argv` inside `ns` to completion. */
  async run (ns: string, argv: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number, input?: string } = {}): Promise<RunResult> {
    return await new Promise((resolve) => {
      const child = execFile('ip', ['netns', 'exec', ns, ...argv], {
        env: { ...process.env, ...opts.env },
        timeout: opts.timeoutMs ?? 30_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024
      }, (err, stdout, stderr) => {
        this.children.delete(child)
        resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : null, stdout: String(stdout), stderr: String(stderr) })
      })
      this.children.add(child)
      child.stdin?.end(opts.input ?? '')
    })
  }

  /**
   * Starts `krill daemon --json --no-mdns …args` in `ns` and waits for its ready line.
   * Every daemon of the lab is in one private swarm (the test process's shared key)
   * unless args/env name another or `ownSwarm` asks for the product default.
   */
  async startDaemon (ns: string, args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number, ownSwarm?: boolean } = {}): Promise<NsDaemon> {
    const swarm = opts.ownSwarm === true || namesSwarm(args, opts.env) ? {} : { KRILL_SWARM_KEY: testSwarmKey() }
    const proc = this.spawn(ns, [process.execPath, KRILL_BIN, 'daemon', '--json', '--no-mdns', ...args], { KRILL_LOG: process.env.NS_KRILL_LOG ?? 'info', ...swarm, ...opts.env })
    const ready = await proc.waitForEvent(e => e.event === 'ready', `the krill daemon in ${ns} to be ready`, opts.timeoutMs ?? 30_000)
    const api = String(ready.api)
    const cliEnv = { KRILL_API: api.replace(/^https?:\/\//, ''), KRILL_LOG: 'warn' }
    return {
      ...proc,
      ns,
      ready: { peerId: String(ready.peerId), addrs: ready.addrs as string[], api },
      krill: async (cliArgs, o = {}) => await this.run(ns, [process.execPath, KRILL_BIN, ...cliArgs], {
        env: cliEnv,
        timeoutMs: o.timeoutMs,
        input: o.input
      }),
      spawnKrill: (cliArgs) => this.spawn(ns, [process.execPath, KRILL_BIN, ...cliArgs], cliEnv)
    }
  }

  /** Starts the Ollama stand-in inside `ns` (it listens on that namespace's 127.0.0.1). */
  async startStandin (ns: string, opts: { model: string, tokensCount: number, tokenSize: number, tps: number, port?: number }): Promise<NsProcess & { url: string }> {
    const proc = this.spawn(ns, [process.execPath, STANDIN_MAIN,
      '--port', String(opts.port ?? 0), '--model', opts.model,
      '--tokens-count', String(opts.tokensCount), '--token-size', String(opts.tokenSize), '--tps', String(opts.tps)])
    const ready = await proc.waitForEvent(e => e.event === 'ready', `the Ollama stand-in in ${ns}`, 15_000)
    return { ...proc, url: String(ready.url) }
  }

  /**
   * Turns router `name` into a UPnP gateway: the real miniupnpd (IGDv2), answering
   * only on the LAN side, allowed to forward ports >= 1024 to LAN hosts (each host
   * only to itself), writing its DNAT and forward rules into the router's chains.
   */
  async startUpnpGateway (name: string): Promise<NsProcess> {
    ensureMiniupnpd()
    const r = this.router(name)
    const dir = mkdtempSync(join(tmpdir(), `${this.id}-${name}-upnp-`))
    this.tempDirs.push(dir)
    const conf = join(dir, 'miniupnpd.conf')
    writeFileSync(conf, [
      'ext_ifname=wan',
      'listening_ip=lan',
      'port=0',
      'enable_upnp=yes',
      'enable_natpmp=no',
      'secure_mode=yes',
      'system_uptime=yes',
      `uuid=${randomUUID()}`,
      `lease_file=${join(dir, 'leases')}`,
      // the chains build() made for it in table inet krill
      'upnp_table_name=krill',
      'upnp_nat_table_name=krill',
      'upnp_forward_chain=upnp_forward',
      'upnp_nat_chain=upnp_prerouting',
      'upnp_nat_postrouting_chain=upnp_postrouting',
      `allow 1024-65535 ${r.lan}.0/24 1024-65535`,
      'deny 0-65535 0.0.0.0/0 0-65535',
      ''
    ].join('\n'))
    const proc = this.spawn(r.ns, [MINIUPNPD, '-f', conf, '-d', '-P', join(dir, 'miniupnpd.pid')])
    await waitForText(proc, /HTTP listening on port/, `miniupnpd on ${name} to listen`, 10_000)
    return proc
  }

  /** The router's forwarding rules, for failure messages. */
  ruleset (ns: string): string {
    try {
      return sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'])
    } catch (err: any) {
      return String(err.message)
    }
  }

  /** Kills every process started here and removes every namespace. Idempotent, synchronous at heart. */
  teardown (): void {
    if (this.tornDown) return
    this.tornDown = true
    for (const child of this.children) {
      try { child.kill('SIGKILL') } catch { /* gone */ }
    }
    this.children.clear()
    for (const ns of [...this.namespaces].reverse()) destroyNamespace(ns)
    this.namespaces.length = 0
    for (const dir of this.tempDirs) rmSync(dir, { recursive: true, force: true })
    this.tempDirs.length = 0
    unregisterExitCleanup(this)
  }
}

/** Resolves once the process's stderr matches `pattern` (for programs without JSON output). */
export async function waitForText (proc: NsProcess, pattern: RegExp, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!pattern.test(proc.stderr())) {
    if (proc.child.exitCode != null || proc.child.signalCode != null) throw new Error(`exited before ${what}; stderr:\n${proc.stderr().slice(-4000)}`)
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr:\n${proc.stderr().slice(-4000)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

// ---- teardown on exit / signals, even when afterAll never runs ----

const labs = new Set<NatLab>()
let hooked = false

function onSignal (signal: NodeJS.Signals): void {
  for (const lab of labs) lab.teardown()
  // re-raise so the process still ends the way it was asked to
  process.off(signal, onSignal)
  process.kill(process.pid, signal)
}

function registerExitCleanup (lab: NatLab): void {
  labs.add(lab)
  if (hooked) return
  hooked = true
  process.on('exit', () => { for (const l of labs) l.teardown() })
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

function unregisterExitCleanup (lab: NatLab): void {
  labs.delete(lab)
}

/** Builds a lab; throws (never skips) when namespaces cannot be created. */
export function createNatLab (prefix = NETNS_PREFIX, routers: RouterSpec[] = DEFAULT_ROUTERS): NatLab {
  const lab = new NatLab(prefix, routers)
  try {
    lab.build()
  } catch (err) {
    lab.teardown()
    throw err
  }
  return lab
}
