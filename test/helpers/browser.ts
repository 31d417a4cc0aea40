/**
 * A real browser for tests: Debian's headless Chromium (/usr/bin/chromium, or
 * CHROMIUM_PATH), driven by playwright-core with the system executable, a fresh
 * profile in a temp dir and the flags a root container needs.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

export function chromiumPath (): string {
  const path = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
  if (!existsSync(path)) {
    throw new Error(`no Chromium at ${path}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH`)
  }
  return path
}

export interface TestBrowser {
  context: BrowserContext
  close: () => Promise<void>
}

export async function launchBrowser (): Promise<TestBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'krill-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath(),
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1440, height: 1000 },
    deviceScaleFactor: 1,
    timeout: 60_000
  })
  return {
    context,
    close: async () => {
      await context.close().catch(() => {})
      await rm(userDataDir, { recursive: true, force: true })
    }
  }
}
