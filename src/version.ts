import { readFileSync } from 'node:fs'

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

/** krill's version, from package.json */
export const VERSION: string = pkg.version
/** what identify tells other peers */
export const AGENT_VERSION = `krill/${VERSION}`
