/**
 * docs/cli.md and docs/http-api.md against the code, so they cannot drift: every
 * command (commander's registered commands) has a "## `krill <command>`" (or ###)
 * section that names each of its options in backticks, and every route the
 * daemon registers (fastify's onRoute) has a "### METHOD /path" heading. The
 * failure lists exactly what is undocumented, or documented but gone.
 */
import { readFile, rm } from 'node:fs/promises'
import type { Command } from 'commander'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildProgram, COMMANDS } from '../../src/cli/main.js'
import { startTestDaemon, type TestDaemon } from '../helpers/swarm.js'

const DOCS = new URL('../../docs/', import.meta.url)

/** "krill service install" → that section's text, for every `krill …` heading */
function sections (markdown: string): Map<string, string> {
  const out = new Map<string, string>()
  const parts = markdown.split(/^(?=#{2,3} )/m)
  for (const part of parts) {
    const m = /^#{2,3} `(krill[^`]*)`/.exec(part)
    if (m != null) out.set(m[1], part)
  }
  return out
}

function commandsOf (command: Command, path: string): Array<{ path: string, command: Command }> {
  return command.commands
    .filter(c => c.name() !== 'help')
    .flatMap(c => [{ path: `${path} ${c.name()}`, command: c }, ...commandsOf(c, `${path} ${c.name()}`)])
}

describe('docs/cli.md covers every command and option', () => {
  it('each command has a section naming each of its options', async () => {
    const doc = sections(await readFile(new URL('cli.md', DOCS), 'utf8'))
    const program = await buildProgram()
    const missing: string[] = []
    for (const { path, command } of commandsOf(program, 'krill')) {
      const text = doc.get(path)
      if (text == null) {
        missing.push(`${path}: no "## \`${path}\`" section`)
        continue
      }
      for (const option of command.options) {
        const flag = option.long ?? option.short ?? option.flags
        if (flag === '--help') continue
        if (!text.includes(`\`${flag}`)) missing.push(`${path}: option ${flag} is not described (write \`${flag}\` in its section)`)
      }
    }
    const known = new Set(commandsOf(program, 'krill').map(c => c.path))
    const stale = [...doc.keys()].filter(path => !known.has(path)).map(path => `${path}: documented but there is no such command`)
    expect([...missing, ...stale]).toEqual([])
  })

  it('the one-line summaries `krill --help` shows are the commands\' own descriptions', async () => {
    const program = await buildProgram()
    for (const entry of COMMANDS) {
      expect(program.commands.find(c => c.name() === entry.name)?.description(), entry.name).toBe(entry.summary)
    }
  })
})

describe('docs/http-api.md covers every route', () => {
  let node: TestDaemon

  beforeAll(async () => { node = await startTestDaemon() })
  afterAll(async () => {
    await node?.daemon.stop()
    if (node != null) await rm(node.config.dataDir, { recursive: true, force: true })
  })

  it('each registered route has a "### METHOD /path" heading, and each heading a route', async () => {
    const markdown = await readFile(new URL('http-api.md', DOCS), 'utf8')
    const documented = new Set([...markdown.matchAll(/^### (GET|POST|PUT|DELETE|PATCH|HEAD) (\S+)\s*$/gm)].map(m => `${m[1]} ${m[2]}`))
    // the routes of the daemon's API server, as the daemon built it
    const routes = new Set(node.daemon.apiRoutes)
    expect(routes.size).toBeGreaterThan(10)
    const undocumented = [...routes].filter(r => !documented.has(r)).map(r => `${r}: not in docs/http-api.md (add "### ${r}")`)
    const stale = [...documented].filter(r => !routes.has(r)).map(r => `${r}: documented but the daemon has no such route`)
    expect([...undocumented, ...stale]).toEqual([])
  })
})
