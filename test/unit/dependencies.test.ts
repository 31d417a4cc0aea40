/**
 * The layout rules of src/ (DESIGN.md §1), checked with dependency-cruiser inside
 * `npm test`: no import cycles between modules or folders, nobody but the program
 * entry imports the composition root (src/daemon/), api/ and router/ import no
 * daemon/, only the root composes. The second test proves the check can fail.
 */
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
// @ts-expect-error -- a plain ESM script without type declarations
import { checkDependencies } from '../../scripts/check-deps.mjs'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const fixture = fileURLToPath(new URL('../fixtures/dep-rules', import.meta.url))

describe('dependency rules (dependency-cruiser)', () => {
  it('src/ has no cycles and only the program entry imports the composition root', async () => {
    const { violations, folderCycles, modules } = await checkDependencies({ root: repo })
    expect(modules).toBeGreaterThan(50)
    expect(violations).toEqual([])
    expect(folderCycles).toEqual([])
  })

  it('fails on a fixture with a folder cycle, a module cycle and an api/ that imports daemon/', async () => {
    const { violations, folderCycles } = await checkDependencies({ root: fixture, config: `${repo}/.dependency-cruiser.cjs` })
    // a/one → b/two → a/three: no module cycle, but the folders a and b form one
    expect(folderCycles).toContainEqual(['src/a', 'src/b'])
    expect(folderCycles).toContainEqual(['src/api', 'src/daemon'])
    const rules = new Set(violations.map((v: { rule: string }) => v.rule))
    expect(rules).toEqual(new Set(['no-circular', 'nobody-imports-the-root', 'api-and-router-import-no-daemon']))
  })
})
