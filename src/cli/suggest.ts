import { distance } from 'fastest-levenshtein'

/** "llama3.2:1b" → "llama3.2"; "hf.co/org/m:q4" → "hf.co/org/m" */
function base (name: string): string {
  const slash = name.lastIndexOf('/')
  const colon = name.indexOf(':', slash + 1)
  return (colon >= 0 ? name.slice(0, colon) : name).toLowerCase()
}

/**
 * The known model names a user probably meant by `typed`: the same model under
 * another tag (`tinyllama` → `tinyllama:1b`), else names a few edits away
 * (`lama3.2:1b` → `llama3.2:1b`). Best first; at most `max`.
 */
export function suggestModels (typed: string, known: string[], max = 3): string[] {
  const want = typed.trim().toLowerCase()
  if (want === '') return []
  const names = [...new Set(known)].filter(n => n.toLowerCase() !== want)
  const sameBase = names.filter(n => base(n) === base(want))
  if (sameBase.length > 0) return sameBase.sort().slice(0, max)
  // a typo: within a third of the length (at least 1, at most 3 edits)
  const limit = Math.min(3, Math.max(1, Math.floor(want.length / 3)))
  const scored = names
    // a name typed without a tag is compared with the others' names without theirs
    .map(n => ({ n, d: want.includes(':') ? distance(want, n.toLowerCase()) : distance(want, base(n)) }))
    .filter(s => s.d <= limit)
  const best = Math.min(...scored.map(s => s.d))
  return scored.filter(s => s.d === best).map(s => s.n).sort().slice(0, max)
}

/** ' — did you mean "a" or "b"?' or '' */
export function didYouMean (suggestions: string[]): string | undefined {
  if (suggestions.length === 0) return undefined
  const quoted = suggestions.map(s => `"${s}"`)
  return `did you mean ${quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1) ?? ''}`}?`
}
