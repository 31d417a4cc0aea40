/**
 * Checks the dependency rules of src/: dependency-cruiser's rules
 * (.dependency-cruiser.cjs: module cycles, who may import the composition root,
 * who composes) plus cycles between folders, found on the module graph that
 * dependency-cruiser built, collapsed to its top-level folders (src/<folder>/).
 *
 *   node scripts/check-deps.mjs            (npm run lint:deps)
 *
 * test/unit/dependencies.test.ts runs checkDependencies() inside `npm test`.
 */
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { cruise } from 'dependency-cruiser'

const require = createRequire(import.meta.url)

/**
 * @param {{ root?: string, files?: string[], config?: string, folderDepth?: number }} [opts]
 * @returns {Promise<{ violations: Array<{ rule: string, from: string, to: string }>, folderCycles: string[][], modules: number }>}
 */
export async function checkDependencies (opts = {}) {
  const root = resolve(opts.root ?? new URL('..', import.meta.url).pathname)
  const config = require(resolve(root, opts.config ?? '.dependency-cruiser.cjs'))
  const cwd = process.cwd()
  process.chdir(root)
  let result
  try {
    result = await cruise(opts.files ?? ['src'], { ...config.options, ruleSet: { forbidden: config.forbidden }, validate: true, baseDir: root })
  } finally {
    process.chdir(cwd)
  }
  const output = result.output
  const violations = output.summary.violations
    .filter(v => v.rule.severity === 'error')
    .map(v => ({ rule: v.rule.name, from: v.from, to: v.to, ...(v.cycle != null ? { cycle: v.cycle.map(c => c.name ?? c) } : {}) }))
  const folderCycles = findFolderCycles(output.modules, opts.folderDepth ?? 2)
  return { violations, folderCycles, modules: output.modules.length }
}

/** "src/api/control.ts" → "src/api"; files directly in src/ are their own node. */
function folderOf (path, depth) {
  const parts = path.split('/')
  return parts.length > depth ? parts.slice(0, depth).join('/') : path
}

/** Strongly connected groups of more than one folder (Tarjan), each sorted. */
export function findFolderCycles (modules, depth = 2) {
  const edges = new Map()
  for (const m of modules) {
    if (m.coreModule || m.couldNotResolve || m.source.includes('node_modules')) continue
    const from = folderOf(m.source, depth)
    if (!edges.has(from)) edges.set(from, new Set())
    for (const d of m.dependencies) {
      if (d.coreModule || d.couldNotResolve || d.resolved.includes('node_modules')) continue
      const to = folderOf(d.resolved, depth)
      if (to !== from) edges.get(from).add(to)
      if (!edges.has(to)) edges.set(to, new Set())
    }
  }
  let index = 0
  const stack = []
  const info = new Map()
  const groups = []
  const visit = (v) => {
    info.set(v, { index, low: index, onStack: true })
    index++
    stack.push(v)
    for (const w of edges.get(v) ?? []) {
      if (!info.has(w)) {
        visit(w)
        info.get(v).low = Math.min(info.get(v).low, info.get(w).low)
      } else if (info.get(w).onStack) {
        info.get(v).low = Math.min(info.get(v).low, info.get(w).index)
      }
    }
    if (info.get(v).low === info.get(v).index) {
      const group = []
      let w
      do {
        w = stack.pop()
        info.get(w).onStack = false
        group.push(w)
      } while (w !== v)
      if (group.length > 1) groups.push(group.sort())
    }
  }
  for (const v of edges.keys()) if (!info.has(v)) visit(v)
  return groups
}

/** Which edges keep a group of folders together, for the report. */
function edgesWithin (modules, group, depth) {
  const inGroup = new Set(group)
  const found = []
  for (const m of modules) {
    const from = folderOf(m.source, depth)
    if (!inGroup.has(from)) continue
    for (const d of m.dependencies) {
      const to = folderOf(d.resolved ?? '', depth)
      if (to !== from && inGroup.has(to)) found.push(`${m.source} → ${d.resolved}`)
    }
  }
  return found
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { violations, folderCycles, modules } = await checkDependencies()
  for (const v of violations) console.error(`${v.rule}: ${v.from} → ${v.to}${v.cycle != null ? ` (cycle: ${v.cycle.join(' → ')})` : ''}`)
  for (const group of folderCycles) console.error(`folder cycle: ${group.join(', ')}`)
  if (violations.length > 0 || folderCycles.length > 0) {
    console.error(`${violations.length} rule violation(s), ${folderCycles.length} folder cycle(s) in ${modules} modules`)
    process.exitCode = 1
  } else {
    console.log(`dependencies ok: ${modules} modules, no cycles, root imported only by the program entry`)
  }
}
export { edgesWithin }
