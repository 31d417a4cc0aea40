/** Output helpers: aligned tables for people, JSON for programs. */

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

export type Cell = string | number | boolean | null | undefined

/** Renders rows as a left-aligned table with a header line. */
export function formatTable (headers: string[], rows: Cell[][]): string {
  const text = rows.map(row => row.map(cell => cell == null || cell === '' ? '-' : String(cell)))
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map(r => r[i]?.length ?? 0)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(headers), ...text.map(line)].join('\n') + '\n'
}

/** The table, or the header and `empty` when there are no rows. */
export function tableText (headers: string[], rows: Cell[][], empty = '(none)'): string {
  return rows.length === 0 ? formatTable(headers, []) + empty + '\n' : formatTable(headers, rows)
}

export function printTable (headers: string[], rows: Cell[][], empty = '(none)'): void {
  process.stdout.write(tableText(headers, rows, empty))
}

export function formatMs (ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '-'
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`
}

export function formatDuration (ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
}

export { shortPeerId as shortPeer } from '../peers/index.js'

/** the first 12 hex digits, as `ollama list` shows a model's ID */
export function shortDigest (digest: string | undefined): string {
  if (digest == null || digest === '') return '-'
  return digest.replace(/^sha256:/, '').slice(0, 12)
}
