/** The NDJSON lines of a streamed /api/chat or /api/generate answer, built by template for content tokens. */
import { describe, expect, it } from 'vitest'
import { contentLine, line } from '../../src/api/ollama.js'

describe('ollama API: a content token line', () => {
  it('is the same text JSON.stringify makes of the full line, for chat and generate', () => {
    for (const kind of ['chat', 'generate'] as const) {
      for (const content of ['', ' the', 'quote " and \\ backslash', 'line\nbreak\u0000', '🦐 ü \u2028']) {
        for (const model of ['llama3.2:1b', 'we"ird/model:tag']) {
          const fromObject = JSON.parse(JSON.stringify(line(kind, model, { type: 'delta', content }))) as Record<string, unknown>
          const templated = contentLine(kind, JSON.stringify(model), content)
          expect(templated.endsWith('\n')).toBe(true)
          const parsed = JSON.parse(templated)
          // created_at may tick between the two calls; everything else is identical, in order
          expect({ ...parsed, created_at: '' }).toEqual({ ...fromObject, created_at: '' })
          expect(Object.keys(parsed)).toEqual(Object.keys(fromObject))
          const blank = (text: string): string => text.replace(/"created_at":"[^"]+"/, '"created_at":""')
          expect(blank(templated)).toBe(blank(JSON.stringify(line(kind, model, { type: 'delta', content }))) + '\n')
        }
      }
    }
  })
})
