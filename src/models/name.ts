/**
 * Model names, with Ollama's rules (ollama/ollama types/model/name.go):
 *
 *   [host/][namespace/][kind/]model[:tag]
 *
 * - missing parts take Ollama's defaults: host `registry.ollama.ai`, namespace
 *   `library`, tag `latest` (`llama3` is `registry.ollama.ai/library/llama3:latest`);
 * - every part starts with a letter, digit or `_`; then model and tag allow
 *   letters, digits, `_ - .`; namespace `_ -` (no dot); host also `.` and `:` (port);
 *   host at most 350 characters, the other parts at most 80; kind is `skill`,
 *   `agent` or `mcp`; an `http://` or `https://` before the host is dropped;
 * - case is kept as written, comparison ignores (ASCII) case, like Ollama's EqualFold;
 * - the name Ollama lists (DisplayShortest) leaves out the default host, and the
 *   default namespace when the host is the default one, and always has a tag.
 *
 * Every model-name comparison in krill goes through `modelId`.
 */

const DEFAULT_HOST = 'registry.ollama.ai'
const DEFAULT_NAMESPACE = 'library'
export const DEFAULT_TAG = 'latest'
const KINDS = new Set(['skill', 'agent', 'mcp'])
/** a separator promised a part that is not there: never valid */
const MISSING = '!MISSING!'
/** krill's bound on a whole name, on the wire and in announcements */
export const MAX_MODEL_NAME_CHARS = 200

export interface ModelName {
  host: string
  namespace: string
  /** '' for models */
  kind: string
  model: string
  tag: string
}

function cutLast (s: string, sep: string): [before: string, after: string, found: boolean] {
  const i = s.lastIndexOf(sep)
  if (i < 0) return [s, '', false]
  return [s.slice(0, i) === '' ? MISSING : s.slice(0, i), s.slice(i + sep.length) === '' ? MISSING : s.slice(i + sep.length), true]
}

function stripScheme (host: string): string {
  const i = host.indexOf('://')
  return i < 0 ? host : host.slice(i + 3)
}

/** The parts as written, no defaults filled in (Ollama's ParseNameBare). */
export function parseModelNameBare (s: string): ModelName {
  const n: ModelName = { host: '', namespace: '', kind: '', model: '', tag: '' }
  if (s.lastIndexOf(':') > s.lastIndexOf('/')) [s, n.tag] = cutLast(s, ':')
  let found: boolean
  ;[s, n.model, found] = cutLast(s, '/')
  if (!found) { n.model = s; return n }
  let middle: string
  ;[s, middle, found] = cutLast(s, '/')
  if (!found) { n.namespace = s; return n }
  if (!KINDS.has(middle)) {
    n.namespace = middle
    n.host = stripScheme(s)
    return n
  }
  n.kind = middle
  ;[s, n.namespace, found] = cutLast(s, '/')
  if (!found) { n.namespace = s; return n }
  n.host = stripScheme(s)
  return n
}

/** Parses `s` and fills in Ollama's defaults; check the result with isValidParts. */
export function parseModelName (s: string): ModelName {
  const n = parseModelNameBare(s)
  return {
    host: n.host === '' ? DEFAULT_HOST : n.host,
    namespace: n.namespace === '' ? DEFAULT_NAMESPACE : n.namespace,
    kind: n.kind,
    model: n.model,
    tag: n.tag === '' ? DEFAULT_TAG : n.tag
  }
}

type PartKind = 'host' | 'namespace' | 'model' | 'tag'

function isWordChar (c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c === '_'
}

function isValidPart (kind: PartKind, s: string): boolean {
  if (s.length < 1 || s.length > (kind === 'host' ? 350 : 80)) return false
  if (!isWordChar(s[0])) return false
  for (let i = 1; i < s.length; i++) {
    const c = s[i]
    if (c === '_' || c === '-') continue
    if (c === '.') { if (kind === 'namespace') return false; continue }
    if (c === ':') { if (kind !== 'host') return false; continue }
    if (!isWordChar(c)) return false
  }
  return true
}

/** Ollama's IsFullyQualified: every part present and valid (kind only when set). */
export function isValidParts (n: ModelName): boolean {
  return isValidPart('host', n.host) && isValidPart('namespace', n.namespace) &&
    (n.kind === '' || KINDS.has(n.kind)) && isValidPart('model', n.model) && isValidPart('tag', n.tag)
}

/** Whether `name` is a model name krill accepts: Ollama's rule, at most 200 characters. */
export function isValidModelName (name: string, maxChars = MAX_MODEL_NAME_CHARS): boolean {
  return name.length > 0 && name.length <= maxChars && isValidParts(parseModelName(name))
}

/** Why `name` is not valid (for error messages), or undefined when it is. */
export function modelNameProblem (name: string, maxChars = MAX_MODEL_NAME_CHARS): string | undefined {
  if (name === '') return 'model is required'
  if (name.length > maxChars) return `model name is longer than ${maxChars} characters`
  if (!isValidParts(parseModelName(name))) {
    return `model name ${JSON.stringify(name.length > 64 ? name.slice(0, 64) + '…' : name)} is not valid: ` +
      'use [host/][namespace/]model[:tag], each part starting with a letter, digit or _, then letters, digits and _ - . (no . in the namespace)'
  }
  return undefined
}

/** The name as Ollama lists it (DisplayShortest), case kept: `llama3` → `llama3:latest`. */
export function displayModelName (n: ModelName): string {
  let out = ''
  if (n.host.toLowerCase() !== DEFAULT_HOST) out += `${n.host}/${n.namespace}/`
  else if (n.namespace.toLowerCase() !== DEFAULT_NAMESPACE) out += `${n.namespace}/`
  if (n.kind !== '') out += `${n.kind}/`
  return `${out}${n.model}:${n.tag}`
}

/**
 * The name as Ollama lists it, case kept: `llama3` → `llama3:latest`,
 * `registry.ollama.ai/library/Llama3` → `Llama3:latest`. A name that does not parse
 * is returned trimmed, as it is (it never matches a valid one).
 */
export function canonicalModelName (name: string): string {
  const n = parseModelName(name.trim())
  return isValidParts(n) ? displayModelName(n) : name.trim()
}

function asciiLower (s: string): string {
  return s.replace(/[A-Z]/g, c => c.toLowerCase())
}

/**
 * The identity of a model name: canonical and ASCII-lower-cased, so two names are
 * the same model exactly when Ollama's EqualFold says so. Table keys, DHT keys and
 * every comparison use it.
 */
export function modelId (name: string): string {
  return asciiLower(canonicalModelName(name))
}

/** Ollama's EqualFold after filling defaults: `Llama3` and `llama3:latest` are one model. */
export function sameModel (a: string, b: string): boolean {
  return modelId(a) === modelId(b)
}
