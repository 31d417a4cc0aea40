/**
 * The ClawHub skill in integrations/openclaw/skills/: its front matter must pass
 * the rules ClawHub and OpenClaw document for SKILL.md (checked by the small
 * validator below, written from those rules), and every krill command it tells an
 * agent to run must exist in the CLI.
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const SKILLS = join(ROOT, 'integrations', 'openclaw', 'skills')

/** `key: value` lines between the opening and closing `---`; values stay raw text. */
export function frontMatter (text: string): Record<string, string> {
  const match = /^---\n([\s\S]*?)\n---\n/.exec(text)
  if (match == null) throw new Error('SKILL.md must start with YAML front matter between --- lines')
  const fields: Record<string, string> = {}
  for (const line of match[1].split('\n')) {
    const kv = /^([a-z][a-z0-9-]*):\s?(.*)$/.exec(line)
    if (kv == null) throw new Error(`front matter line is not "key: value" on one line: ${line}`)
    if (kv[1] in fields) throw new Error(`duplicate front matter key ${kv[1]}`)
    fields[kv[1]] = kv[2]
  }
  return fields
}

const OS = new Set(['darwin', 'linux', 'win32'])
const INSTALL_KINDS = new Set(['node', 'brew', 'go', 'uv', 'download'])

/**
 * ClawHub / OpenClaw rules for a skill's front matter (docs: tools/skills,
 * tools/creating-skills; ClawHub's skill format; the AgentSkills name rules):
 * - name: 1–64 chars of lowercase letters, digits and hyphens, no leading,
 *   trailing or doubled hyphen, equal to the folder name;
 * - description: one line, shorter than 160 characters;
 * - metadata: JSON with an `openclaw` object: requires.bins / requires.env string
 *   arrays, os ⊆ {darwin, linux, win32}, emoji, homepage an https URL, install[]
 *   entries {id, kind ∈ node|brew|go|uv|download, bins[], label, and the kind's
 *   package field}.
 */
export function validateSkill (folder: string, text: string): string[] {
  const problems: string[] = []
  let fm: Record<string, string>
  try {
    fm = frontMatter(text)
  } catch (err) {
    return [(err as Error).message]
  }
  const name = fm.name ?? ''
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name) || name.length > 64) problems.push(`name "${name}" must be 1-64 lowercase letters, digits and single inner hyphens`)
  if (name !== folder) problems.push(`name "${name}" must equal the folder name "${folder}"`)
  const description = fm.description ?? ''
  if (description.trim() === '') problems.push('description is required')
  if (description.length >= 160) problems.push(`description is ${description.length} characters; ClawHub wants fewer than 160`)
  if (/^[>|]/.test(description)) problems.push('description must be one plain line, not a YAML block')
  if (fm.metadata == null) return [...problems, 'metadata is missing']
  let metadata: any
  try {
    metadata = JSON.parse(fm.metadata)
  } catch (err) {
    return [...problems, `metadata is not JSON: ${(err as Error).message}`]
  }
  const oc = metadata?.openclaw
  if (oc == null || typeof oc !== 'object') return [...problems, 'metadata.openclaw is missing']
  const strings = (v: unknown): boolean => Array.isArray(v) && v.length > 0 && v.every(s => typeof s === 'string' && s !== '')
  if (!strings(oc.requires?.bins)) problems.push('metadata.openclaw.requires.bins must be a list of names')
  if (oc.requires?.env != null && !strings(oc.requires.env)) problems.push('metadata.openclaw.requires.env must be a list of names')
  if (!strings(oc.os) || !oc.os.every((o: string) => OS.has(o))) problems.push('metadata.openclaw.os must list darwin, linux or win32')
  if (typeof oc.emoji !== 'string' || oc.emoji === '' || [...oc.emoji].length > 4) problems.push('metadata.openclaw.emoji must be one emoji')
  for (const url of [oc.homepage, fm.homepage].filter(u => u != null)) {
    try {
      if (new URL(url).protocol !== 'https:') problems.push(`homepage ${url} must be https`)
    } catch {
      problems.push(`homepage ${url} is not a URL`)
    }
  }
  if (oc.homepage == null) problems.push('metadata.openclaw.homepage is missing')
  if (!Array.isArray(oc.install) || oc.install.length === 0) problems.push('metadata.openclaw.install must list how to install the binaries')
  for (const entry of oc.install ?? []) {
    if (typeof entry?.id !== 'string' || entry.id === '') problems.push('install entry without an id')
    if (!INSTALL_KINDS.has(entry?.kind)) problems.push(`install entry kind "${entry?.kind}" is not one of ${[...INSTALL_KINDS].join(', ')}`)
    if (!strings(entry?.bins)) problems.push('install entry must list its bins')
    if (typeof entry?.label !== 'string' || entry.label === '') problems.push('install entry without a label')
    const needs = { node: 'package', brew: 'formula', go: 'module', uv: 'package', download: 'url' }[entry?.kind as string]
    if (needs != null && (typeof entry[needs] !== 'string' || entry[needs] === '')) problems.push(`a ${entry.kind} install entry needs "${needs}"`)
  }
  if (!/\n---\n[\s\S]*\S/.test(text)) problems.push('the body after the front matter is empty')
  return problems
}

describe('the validator', () => {
  const good = readFileSync(join(SKILLS, 'krill', 'SKILL.md'), 'utf8')
  it('catches what ClawHub refuses', () => {
    expect(validateSkill('krill', good)).toEqual([])
    expect(validateSkill('other', good)).toEqual(['name "krill" must equal the folder name "other"'])
    expect(validateSkill('Krill', good.replace('name: krill', 'name: Krill'))[0]).toMatch(/lowercase/)
    expect(validateSkill('a--b', good.replace('name: krill', 'name: a--b'))[0]).toMatch(/hyphens/)
    expect(validateSkill('x'.repeat(65), good.replace('name: krill', `name: ${'x'.repeat(65)}`))[0]).toMatch(/1-64/)
    expect(validateSkill('krill', good.replace(/^description: .*$/m, `description: ${'a'.repeat(160)}`))).toEqual(['description is 160 characters; ClawHub wants fewer than 160'])
    expect(validateSkill('krill', good.replace(/^description: .*$/m, 'description: >\n  folded')).length).toBeGreaterThan(0)
    expect(validateSkill('krill', good.replace('"bins":["krill"]},"install"', '"bins":[]},"install"'))).toContain('metadata.openclaw.requires.bins must be a list of names')
    expect(validateSkill('krill', good.replace('"os":["linux","darwin"]', '"os":["linux","haiku"]'))).toContain('metadata.openclaw.os must list darwin, linux or win32')
    expect(validateSkill('krill', good.replace('"kind":"node"', '"kind":"apt"'))[0]).toMatch(/kind "apt"/)
    expect(validateSkill('krill', good.replace(/^metadata: .*$/m, 'metadata: {"openclaw": '))[0]).toMatch(/not JSON/)
  })
})

describe('the krill skill', () => {
  const folders = readdirSync(SKILLS)
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))

  it('passes the front matter rules', () => {
    expect(folders).toEqual(['krill'])
    for (const folder of folders) {
      expect(validateSkill(folder, readFileSync(join(SKILLS, folder, 'SKILL.md'), 'utf8')), folder).toEqual([])
    }
  })

  it('requires the krill binary, installs this package and links to it', () => {
    const oc = JSON.parse(frontMatter(readFileSync(join(SKILLS, 'krill', 'SKILL.md'), 'utf8')).metadata).openclaw
    expect(oc.requires.bins).toEqual(['krill'])
    expect(Object.keys(pkg.bin)).toContain('krill')
    expect(oc.install).toEqual([expect.objectContaining({ kind: 'node', package: pkg.name, bins: ['krill'] })])
    expect(oc.homepage).toBe(`https://www.npmjs.com/package/${pkg.name}`)
  })

  it('has the three modes, and every krill command it names exists', async () => {
    const body = readFileSync(join(SKILLS, 'krill', 'SKILL.md'), 'utf8')
    expect(body).toMatch(/## Mode 1: contribute your Ollama/)
    expect(body).toMatch(/## Mode 2: use the network/)
    expect(body).toMatch(/## Mode 3: network status/)
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'bin', 'krill'), '--help'])
    const commands = new Set([...stdout.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map(m => m[1]))
    const named = new Set([...body.matchAll(/`krill ([a-z][a-z-]*)/g)].map(m => m[1]))
    expect(named.size).toBeGreaterThan(5)
    expect([...named].filter(c => !commands.has(c))).toEqual([])
  })
})
