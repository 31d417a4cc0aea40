import { execFile } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Command } from 'commander'
import { CliError } from '../cli-error.js'
import { printJson } from '../output.js'
import { launcherPath } from '../package-root.js'
import { LAUNCHD_LABEL, launchdAgentDir, launchdLogFile, launchdPlist, SYSTEMD_UNIT, systemdUnit, systemdUnitDir, type ServiceSpec } from '../service/units.js'

const run = promisify(execFile)

type Platform = 'linux' | 'darwin'

interface Target {
  platform: Platform
  /** the unit / plist file */
  path: string
  /** false with --dir or --dry-run: only the file, no systemctl / launchctl */
  manage: boolean
  logs: string
}

function target (opts: { platform?: string, dir?: string, dryRun?: boolean }): Target {
  const platform = (opts.platform ?? process.platform) as string
  if (platform !== 'linux' && platform !== 'darwin') {
    throw new CliError('unsupported_platform', `krill service supports linux (systemd) and darwin (launchd), not ${platform}`, { hint: 'run `krill daemon` from your own service manager', usage: true })
  }
  const manage = opts.dir == null && opts.dryRun !== true
  if (platform === 'linux') {
    return { platform, path: join(opts.dir ?? systemdUnitDir(), SYSTEMD_UNIT), manage, logs: 'journalctl --user -u krill -f' }
  }
  return { platform, path: join(opts.dir ?? launchdAgentDir(), `${LAUNCHD_LABEL}.plist`), manage, logs: `tail -f ${launchdLogFile()}` }
}

async function sh (cmd: string, args: string[]): Promise<{ ok: boolean, out: string }> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 30_000 })
    return { ok: true, out: stdout.trim() }
  } catch (err: any) {
    return { ok: false, out: String(err.stdout ?? '').trim() || String(err.stderr ?? err.message).trim() }
  }
}

function spec (daemonArgs: string[]): ServiceSpec {
  const env: Record<string, string> = {}
  if (process.env.PATH != null) env.PATH = process.env.PATH
  for (const key of ['KRILL_HOME', 'KRILL_API', 'KRILL_SWARM_KEY', 'OLLAMA_HOST']) {
    const value = process.env[key]
    if (value != null && value !== '') env[key] = value
  }
  return { launcher: launcherPath(), args: daemonArgs, env }
}

function contents (t: Target, s: ServiceSpec): string {
  return t.platform === 'linux' ? systemdUnit(s) : launchdPlist(s, launchdLogFile())
}

async function install (t: Target, s: ServiceSpec): Promise<{ started: boolean }> {
  await mkdir(join(t.path, '..'), { recursive: true })
  await writeFile(t.path, contents(t, s), { mode: 0o644 })
  if (!t.manage) return { started: false }
  if (t.platform === 'linux') {
    await sh('systemctl', ['--user', 'daemon-reload'])
    const enabled = await sh('systemctl', ['--user', 'enable', '--now', SYSTEMD_UNIT])
    if (!enabled.ok) throw new CliError('service_failed', `wrote ${t.path}, but systemctl --user enable --now ${SYSTEMD_UNIT} failed: ${enabled.out}`, { hint: 'is a systemd user session running (loginctl enable-linger $USER)?' })
  } else {
    await mkdir(join(launchdLogFile(), '..'), { recursive: true })
    const domain = `gui/${userInfo().uid}`
    await sh('launchctl', ['bootout', `${domain}/${LAUNCHD_LABEL}`])
    const loaded = await sh('launchctl', ['bootstrap', domain, t.path])
    if (!loaded.ok) throw new CliError('service_failed', `wrote ${t.path}, but launchctl bootstrap failed: ${loaded.out}`)
  }
  return { started: true }
}

async function uninstall (t: Target): Promise<{ removed: boolean }> {
  if (t.manage) {
    if (t.platform === 'linux') await sh('systemctl', ['--user', 'disable', '--now', SYSTEMD_UNIT])
    else await sh('launchctl', ['bootout', `gui/${userInfo().uid}/${LAUNCHD_LABEL}`])
  }
  const existed = await readFile(t.path).then(() => true, () => false)
  await rm(t.path, { force: true })
  if (t.manage && t.platform === 'linux') await sh('systemctl', ['--user', 'daemon-reload'])
  return { removed: existed }
}

async function status (t: Target): Promise<{ installed: boolean, active: string | null, enabled: string | null }> {
  const installed = await readFile(t.path).then(() => true, () => false)
  if (!t.manage) return { installed, active: null, enabled: null }
  if (t.platform === 'linux') {
    const active = await sh('systemctl', ['--user', 'is-active', SYSTEMD_UNIT])
    const enabled = await sh('systemctl', ['--user', 'is-enabled', SYSTEMD_UNIT])
    return { installed, active: active.out || null, enabled: enabled.out || null }
  }
  const printed = await sh('launchctl', ['print', `gui/${userInfo().uid}/${LAUNCHD_LABEL}`])
  return { installed, active: printed.ok ? (/state = (\w+)/.exec(printed.out)?.[1] ?? 'loaded') : 'not loaded', enabled: installed ? 'RunAtLoad' : null }
}

function common (command: Command): Command {
  return command
    .option('--dir <dir>', 'write / look for the unit file in this directory and do not call systemctl or launchctl (for tests and packaging)')
    .option('--platform <platform>', 'linux (systemd user unit) or darwin (launchd agent); default: this machine')
    .option('--json', 'machine-readable output')
}

export function registerService (program: Command): void {
  const service = program.command('service').description('run the daemon at login: a systemd user unit (Linux) or a launchd agent (macOS)')

  common(service.command('install'))
    .description('write the unit and start it now and at every login; daemon flags go after --, e.g. krill service install -- --data-dir /srv/krill')
    .option('--dry-run', 'print the unit instead of writing it')
    .argument('[daemon-flags...]', 'flags for `krill daemon` (after --)')
    .action(async (daemonArgs: string[], opts: { dir?: string, platform?: string, json?: boolean, dryRun?: boolean }) => {
      const t = target(opts)
      const s = spec(daemonArgs)
      if (opts.dryRun === true) {
        if (opts.json === true) printJson({ platform: t.platform, path: t.path, unit: contents(t, s) })
        else process.stdout.write(contents(t, s))
        return
      }
      const { started } = await install(t, s)
      if (opts.json === true) {
        printJson({ platform: t.platform, path: t.path, started, logs: t.logs })
        return
      }
      process.stdout.write(`wrote ${t.path}\n`)
      if (started) process.stdout.write(`started; it starts again at every login. Logs: ${t.logs}\nStop it now with \`krill stop\`, remove it with \`krill service uninstall\`.\n`)
      else process.stdout.write(`not started (--dir): ${t.platform === 'linux' ? `systemctl --user link ${t.path} && systemctl --user enable --now ${SYSTEMD_UNIT}` : `launchctl bootstrap gui/$(id -u) ${t.path}`}\n`)
    })

  common(service.command('uninstall'))
    .description('stop the service and remove its unit (the data dir stays)')
    .action(async (opts: { dir?: string, platform?: string, json?: boolean }) => {
      const t = target(opts)
      const { removed } = await uninstall(t)
      if (opts.json === true) printJson({ platform: t.platform, path: t.path, removed })
      else process.stdout.write(removed ? `removed ${t.path}\n` : `no unit at ${t.path}: nothing to remove\n`)
    })

  common(service.command('status'))
    .description('whether the unit is installed, running and enabled')
    .action(async (opts: { dir?: string, platform?: string, json?: boolean }) => {
      const t = target(opts)
      const s = await status(t)
      if (opts.json === true) {
        printJson({ platform: t.platform, path: t.path, ...s })
        return
      }
      process.stdout.write(`unit     ${t.path} (${s.installed ? 'installed' : 'not installed'})\n`)
      if (s.active != null) process.stdout.write(`state    ${s.active}${s.enabled != null ? `, ${s.enabled}` : ''}\nlogs     ${t.logs}\n`)
    })
}

