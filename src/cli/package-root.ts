import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** krill's package directory (holding bin/krill), from wherever the compiled file sits. */
export function packageRoot (from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from))
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'krill'))) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error(`cannot find krill's package directory above ${fileURLToPath(from)}`)
    dir = up
  }
}

/** the absolute path of bin/krill: what a service runs */
export function launcherPath (): string {
  return join(packageRoot(), 'bin', 'krill')
}
