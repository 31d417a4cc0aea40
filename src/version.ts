import { existsSync, readFileSync } from 'node:fs'

// dist/version.js and dist-test/src/version.js sit at different depths below package.json
const pkgUrl = [new URL('../package.json', import.meta.url), new URL('../../package.json', import.meta.url)]
  .find(url => existsSync(url)) as URL
const pkg = JSON.parse(readFileSync(pkgUrl, 'utf8')) as { version: string }

/** krill's version, from package.json */
export const VERSION: string = pkg.version
/** what identify tells other peers */
export const AGENT_VERSION = `krill/${VERSION}`
