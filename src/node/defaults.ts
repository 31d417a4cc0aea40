import { homedir } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../errors.js'

/**
 * Defaults and the two small parsers the client commands need too. Kept free of
 * heavy imports (zod, multiaddr): `krill status` loads this, not config.ts.
 */

/** Default libp2p ports: clear of Ollama (11434) and IPFS (4001). */
export const DEFAULT_TCP_PORT = 4747
export const DEFAULT_WS_PORT = 4748
export const DEFAULT_API = '127.0.0.1:11435'
export const DEFAULT_OLLAMA = 'http://127.0.0.1:11434'
export const CONFIG_FILE = 'krill.json'

/** KRILL_HOME, else $XDG_DATA_HOME/krill, else ~/.local/share/krill */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  if (env.KRILL_HOME != null && env.KRILL_HOME !== '') return env.KRILL_HOME
  const xdg = env.XDG_DATA_HOME
  return join(xdg != null && xdg !== '' ? xdg : join(homedir(), '.local', 'share'), 'krill')
}

/** Parses "host:port", "[::1]:port" or ":port" into parts. */
export function parseHostPort (value: string, what = '--api'): { host: string, port: number } {
  const stripped = value.replace(/^https?:\/\//, '').replace(/\/$/, '')
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(stripped)
  const port = match != null ? Number(match[3]) : NaN
  if (match == null || port > 65535) {
    throw new ConfigError(`${what} "${value}" is not HOST:PORT (for example 127.0.0.1:11435; port 0 picks a free one)`)
  }
  const host = match[1] ?? match[2]
  return { host: host === '' ? '127.0.0.1' : host, port }
}
