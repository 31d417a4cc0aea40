import { spawnSync } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { KRILL_BIN } from '../helpers/cli.js'
import { tempDir } from '../helpers/swarm.js'

const HOOK = fileURLToPath(new URL('../fixtures/record-imports.mjs', import.meta.url))

/** what the daemon needs and a client command must not load (it would cost a second) */
const HEAVY = [/\/node_modules\/libp2p\//, /\/node_modules\/@libp2p\//, /\/node_modules\/fastify\//, /\/node_modules\/zod\//, /\/node_modules\/@chainsafe\//, /\/dist\/daemon\//, /\/dist\/api\/(?!control)/, /\/dist\/node\/(?!defaults)/]

async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

/** the module URLs `krill ...args` resolves */
async function importsOf (args: string[]): Promise<string[]> {
  const dir = await tempDir('krill-imports-')
  const log = join(dir, 'imports.txt')
  try {
    spawnSync(process.execPath, ['--import', HOOK, KRILL_BIN, ...args], { env: { ...process.env, KRILL_IMPORT_LOG: log }, encoding: 'utf8', timeout: 30_000 })
    return (await readFile(log, 'utf8')).trim().split('\n')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('client commands load only what they need', () => {
  it('no libp2p, fastify, zod or daemon module behind --version, status, peers, models, providers, ping, chat, stop, openclaw', async () => {
    const api = `127.0.0.1:${await closedPort()}`
    const commands = [['--version'], ['--help'], ['status'], ['peers'], ['models'], ['providers', 'llama3.2:1b'], ['ping', '12D3KooWSsmH5BXnAV7hr9pvzdFoazDNC2ejxPgVcpuCV8uNxaRW'], ['chat', '-m', 'x', 'hi'], ['stop'], ['openclaw', 'config'], ['status', '--help'], ['ledger'], ['balance']]
    for (const args of commands) {
      const urls = await importsOf([...args, '--api', api])
      // the hook saw the CLI itself load
      expect(urls.some(u => u.endsWith('/dist/cli/main.js')), args.join(' ')).toBe(true)
      const heavy = urls.filter(u => HEAVY.some(re => re.test(u)))
      expect(heavy, args.join(' ')).toEqual([])
    }
  })

  it('the daemon command does load the daemon (the check above can fail)', async () => {
    const urls = await importsOf(['daemon', '--help'])
    expect(urls.some(u => /\/dist\/daemon\//.test(u))).toBe(true)
    expect(urls.some(u => /\/node_modules\/libp2p\//.test(u))).toBe(true)
  })
})
