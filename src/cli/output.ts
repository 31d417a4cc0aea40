/** Output helpers: aligned tables for people, JSON for programs. */
// peer-id.js, not the folder's index: that one loads multiaddr, which `krill status` does not need
import { shortPeerId } from '../peers/peer-id.js'

export const shortPeer = shortPeerId

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

export type Cell = string | number | boolean | null | undefined

/** Tables fit this many columns unless `--wide` asks for everything. */
export const TABLE_WIDTH = 100

export interface FitOptions {
  /** total width to fit; omit (or --wide) for no limit */
  width?: number
  /** the columns that may be cut (with "…") to fit, by index */
  shrink?: number[]
}

const GAP = 2
/** a cut column keeps at least this much (or its header, if longer) */
const MIN_COLUMN = 8

/** `text` cut to `width` characters, the last one "…" */
export function ellipsize (text: string, width: number): string {
  return text.length <= width ? text : width <= 1 ? '…'.slice(0, width) : `${text.slice(0, width - 1)}…`
}

/** Renders rows as a left-aligned table with a header line, cut to `fit.width` if given. */
export function formatTable (headers: string[], rows: Cell[][], fit: FitOptions = {}): string {
  const text = rows.map(row => row.map(cell => cell == null || cell === '' ? '-' : String(cell)))
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map(r => r[i]?.length ?? 0)))
  if (fit.width != null) {
    const shrinkable = (fit.shrink ?? []).filter(i => i < widths.length)
    const floor = (i: number): number => Math.max(MIN_COLUMN, headers[i].length)
    // the last column is not padded: only its content counts
    let total = widths.reduce((a, b) => a + b, 0) + GAP * (widths.length - 1)
    while (total > fit.width) {
      const widest = shrinkable.filter(i => widths[i] > floor(i)).sort((a, b) => widths[b] - widths[a])[0]
      if (widest == null) break
      widths[widest]--
      total--
    }
    for (const row of text) for (const i of shrinkable) row[i] = ellipsize(row[i], widths[i])
  }
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join(' '.repeat(GAP)).trimEnd()
  return [line(headers), ...text.map(line)].join('\n') + '\n'
}

/** The table, or the header and `empty` when there are no rows. */
export function tableText (headers: string[], rows: Cell[][], empty = '(none)', fit: FitOptions = {}): string {
  return rows.length === 0 ? formatTable(headers, []) + empty + '\n' : formatTable(headers, rows, fit)
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


/** A peer id as a table shows it: short, or whole with --wide. */
export function peerCell (id: string, wide: boolean): string {
  return wide ? id : shortPeer(id)
}

/**
 * A multiaddr as a table shows it: without the trailing /p2p/<its own peer>
 * (the PEER column says it) and with every other peer id shortened.
 */
export function addrCell (addr: string, peer: string, wide: boolean): string {
  if (wide) return addr
  const own = `/p2p/${peer}`
  const trimmed = addr.endsWith(own) ? addr.slice(0, -own.length) : addr
  return trimmed.replace(/\/p2p\/([1-9A-HJ-NP-Za-km-z]{17,})/g, (_m, id: string) => `/p2p/${shortPeer(id)}`)
}

/** the first 12 hex digits, as `ollama list` shows a model's ID */
export function shortDigest (digest: string | undefined): string {
  if (digest == null || digest === '') return '-'
  return digest.replace(/^sha256:/, '').slice(0, 12)
}

/** width to fit, from --wide */
export function fitWidth (wide: boolean | undefined): number | undefined {
  return wide === true ? undefined : TABLE_WIDTH
}
