/** The bench's daemons run with the V8 flags bin/krill gives krill, so its memory figures are the launcher's. */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { LAUNCHER_NODE_FLAGS } from '../bench/procs.js'
import { KRILL_BIN } from '../helpers/cli.js'

describe('bin/krill node flags', () => {
  it('every exec of Node in the launcher passes the flags the bench gives its daemons', () => {
    const launcher = readFileSync(KRILL_BIN, 'utf8')
    const execs = launcher.split('\n').filter(l => /\bexec\b/.test(l) || l.includes('cp.spawn('))
    expect(execs.length).toBe(3)
    for (const line of execs) for (const flag of LAUNCHER_NODE_FLAGS) expect(line, line).toContain(flag)
  })
})
