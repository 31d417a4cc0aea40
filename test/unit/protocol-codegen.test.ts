import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = path.resolve(import.meta.dirname, '..', '..')
const committedDir = path.join(root, 'src', 'protocol', 'generated')

describe('generated protocol codecs', () => {
  let outDir: string

  beforeAll(async () => {
    outDir = await mkdtemp(path.join(tmpdir(), 'krill-codegen-'))
    await promisify(execFile)(process.execPath, [path.join(root, 'scripts', 'generate-protocols.mjs'), '--out', outDir], { cwd: root })
  })

  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true })
  })

  it('generates one file per .proto', async () => {
    const protos = (await readdir(path.join(root, 'protocols'))).filter(f => f.endsWith('.proto')).sort()
    const generated = (await readdir(outDir)).sort()
    expect(generated).toEqual(protos.map(p => p.replace(/\.proto$/, '.ts')))
  })

  it('matches the committed files (run `node scripts/generate-protocols.mjs` after editing a .proto)', async () => {
    const committed = (await readdir(committedDir)).filter(f => f.endsWith('.ts')).sort()
    const generated = (await readdir(outDir)).sort()
    expect(committed).toEqual(generated)
    for (const file of generated) {
      const fresh = await readFile(path.join(outDir, file), 'utf8')
      const onDisk = await readFile(path.join(committedDir, file), 'utf8')
      expect(onDisk, `src/protocol/generated/${file} is stale`).toBe(fresh)
    }
  })
})
