import { homedir } from 'node:os'
import { join } from 'node:path'

/** What runs at login: the launcher (it picks the pinned Node) with `daemon` and the given flags. */
export interface ServiceSpec {
  /** absolute path of bin/krill */
  launcher: string
  /** daemon flags, e.g. ["--data-dir", "/srv/krill"] */
  args: string[]
  /** extra environment, e.g. KRILL_HOME */
  env: Record<string, string>
  home?: string
}

export const SYSTEMD_UNIT = 'krill.service'
export const LAUNCHD_LABEL = 'network.krill.daemon'

export function systemdUnitDir (home = homedir(), env: NodeJS.ProcessEnv = process.env): string {
  const config = env.XDG_CONFIG_HOME != null && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(home, '.config')
  return join(config, 'systemd', 'user')
}

export function launchdAgentDir (home = homedir()): string {
  return join(home, 'Library', 'LaunchAgents')
}

export function launchdLogFile (home = homedir()): string {
  return join(home, 'Library', 'Logs', 'krill', 'daemon.log')
}

/** systemd quoting: every word in double quotes, with \ " $ % escaped */
function systemdWord (word: string): string {
  return `"${word.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`
}

/**
 * A systemd user unit: started at login (default.target), restarted when it
 * fails (not when `krill stop` ends it cleanly), logs to the journal
 * (`journalctl --user -u krill`).
 */
export function systemdUnit (spec: ServiceSpec): string {
  const env = Object.entries(spec.env).map(([k, v]) => `Environment=${systemdWord(`${k}=${v}`)}\n`).join('')
  return `[Unit]
Description=krill: peer-to-peer inference node for Ollama models
Documentation=https://www.npmjs.com/package/krill-p2p
After=network-online.target

[Service]
Type=simple
ExecStart=${[spec.launcher, 'daemon', ...spec.args].map(systemdWord).join(' ')}
${env}Restart=on-failure
RestartSec=5
# SIGTERM is a clean shutdown: in-flight answers finish or are cancelled
KillSignal=SIGTERM
TimeoutStopSec=30
StandardOutput=journal
StandardError=journal
SyslogIdentifier=krill

[Install]
WantedBy=default.target
`
}

function xml (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** A launchd agent: loaded at login, kept alive unless it exits cleanly, logs to a file. */
export function launchdPlist (spec: ServiceSpec, logFile: string): string {
  const args = [spec.launcher, 'daemon', ...spec.args].map(a => `    <string>${xml(a)}</string>`).join('\n')
  const env = Object.entries(spec.env).map(([k, v]) => `    <key>${xml(k)}</key>\n    <string>${xml(v)}</string>`).join('\n')
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${args}
  </array>
  <key>EnvironmentVariables</key>
  <dict>
${env}
  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>5</integer>
  <key>StandardOutPath</key>
  <string>${xml(logFile)}</string>
  <key>StandardErrorPath</key>
  <string>${xml(logFile)}</string>
</dict>
</plist>
`
}
