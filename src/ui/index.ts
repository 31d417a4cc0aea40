/**
 * Where the web console's files are. They are plain ES modules, HTML and CSS
 * (no build step) kept in src/ui/assets and shipped in the npm package as they
 * are. The compiled code runs from dist/ui/ in a checkout and in a global install,
 * from src/ui/ under the test runner: look upwards from this module for the
 * package folder that holds them.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const MARKER = 'index.html'

export function uiAssetsDir (from: string = dirname(fileURLToPath(import.meta.url))): string {
  const beside = join(from, 'assets')
  if (existsSync(join(beside, MARKER))) return beside
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'src', 'ui', 'assets')
    if (existsSync(join(candidate, MARKER))) return candidate
    if (dirname(dir) === dir) break
  }
  throw new Error(`the web console's files are missing (looked for src/ui/assets/${MARKER} above ${from}): reinstall krill`)
}
