/**
 * Model identity (src/models): Ollama's name rules (types/model/name.go) and the
 * digest form krill uses everywhere.
 */
import { describe, expect, it } from 'vitest'
import {
  canonicalModelName,
  isValidModelName,
  modelId,
  modelNameProblem,
  normalizeDigest,
  parseModelName,
  sameDigest,
  sameModel
} from '../../src/models/index.js'
import { shareMatcher } from '../../src/engine/model-watcher.js'

const HEX = 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72'

describe('model names', () => {
  it('matches names like Ollama does', () => {
    // moved from router.test.ts (router/names.ts is gone)
    expect(modelId('Llama3')).toBe('llama3:latest')
    // library is Ollama's default namespace: library/llama3:8b is llama3:8b (was kept as written)
    expect(modelId('library/llama3:8b')).toBe('llama3:8b')
    expect(modelId('host:5000/ns/model')).toBe('host:5000/ns/model:latest')
    expect(sameModel('llama3', 'llama3:latest')).toBe(true)
    expect(sameModel('llama3:latest', 'llama3')).toBe(true)
    expect(sameModel('llama3:8b', 'llama3:latest')).toBe(false)
  })

  it('fills in Ollama defaults and parses host, namespace, kind, model and tag', () => {
    expect(parseModelName('llama3')).toEqual({ host: 'registry.ollama.ai', namespace: 'library', kind: '', model: 'llama3', tag: 'latest' })
    expect(parseModelName('hf.co/org/Model:Q4_K_M')).toEqual({ host: 'hf.co', namespace: 'org', kind: '', model: 'Model', tag: 'Q4_K_M' })
    expect(parseModelName('https://example.com:8080/ns/m:t')).toMatchObject({ host: 'example.com:8080', namespace: 'ns', model: 'm', tag: 't' })
    expect(parseModelName('ns/skill/m')).toMatchObject({ namespace: 'ns', kind: 'skill', model: 'm' })
    expect(parseModelName('user/model')).toMatchObject({ host: 'registry.ollama.ai', namespace: 'user', model: 'model' })
  })

  it('lists names as Ollama does, keeping the case as written', () => {
    // moved from discovery-announcement.test.ts (discovery/keys.ts's own rule is gone)
    expect(canonicalModelName('llama3')).toBe('llama3:latest')
    expect(canonicalModelName('hf.co/org/model')).toBe('hf.co/org/model:latest')
    expect(canonicalModelName('hf.co/org/model:q4')).toBe('hf.co/org/model:q4')
    expect(canonicalModelName('Llama3')).toBe('Llama3:latest')
    expect(canonicalModelName('registry.ollama.ai/library/Llama3:8B')).toBe('Llama3:8B')
    expect(canonicalModelName('REGISTRY.ollama.ai/Library/x')).toBe('x:latest')
    expect(canonicalModelName('registry.ollama.ai/user/x')).toBe('user/x:latest')
    expect(modelId('HF.co/Org/Model:Q4')).toBe('hf.co/org/model:q4')
  })

  it('accepts Ollama names and refuses the rest, with one rule', () => {
    for (const ok of ['llama3', 'llama3.2:3b', 'library/qwen:7b-q4_K_M', 'hf.co/user/repo:tag', '_x', 'x_y-z.1:a.b-c_d', 'h:1/n/m:t', 'a/skill/b']) {
      expect(isValidModelName(ok), ok).toBe(true)
    }
    for (const bad of ['', '-x', '..', '.x', 'a/../b', '../x', 'x/..', 'x:', ':x', '/x', 'x/', 'a//b', 'ns.x/m', 'x:-1', 'x:a/b',
      'a/b/c/d', 'bad name', 'ü', 'x'.repeat(81), `x:${'t'.repeat(81)}`, `${'h'.repeat(100)}/${'n'.repeat(50)}/${'m'.repeat(51)}`]) {
      expect(isValidModelName(bad), bad).toBe(false)
    }
    expect(modelNameProblem('-x')).toMatch(/model name "-x" is not valid/)
    expect(modelNameProblem('x'.repeat(201))).toBe('model name is longer than 200 characters')
    expect(modelNameProblem('')).toBe('model is required')
    expect(modelNameProblem('llama3')).toBeUndefined()
  })

  it('shares by the same rule (model watcher)', () => {
    const share = shareMatcher(['Llama3', 'library/qwen:7b'])
    expect(share('llama3:latest')).toBe(true)
    expect(share('qwen:7b')).toBe(true)
    expect(share('llama3:8b')).toBe(false)
  })
})

describe('digests', () => {
  it('normalizes sha256: and sha256- prefixes and upper case to 64 lower-case hex digits', () => {
    expect(normalizeDigest(HEX)).toBe(HEX)
    expect(normalizeDigest(`sha256:${HEX.toUpperCase()}`)).toBe(HEX)
    expect(normalizeDigest(`SHA256-${HEX}`)).toBe(HEX)
    expect(normalizeDigest(HEX.slice(1))).toBeUndefined()
    expect(normalizeDigest(`md5:${HEX}`)).toBeUndefined()
    expect(normalizeDigest(` ${HEX}`)).toBeUndefined()
    expect(sameDigest(`sha256:${HEX}`, HEX.toUpperCase())).toBe(true)
    expect(sameDigest('x', 'x')).toBe(false)
  })
})
