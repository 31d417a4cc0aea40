/**
 * What a section hands back, and how the whole run is printed: one table, every
 * figure's median and p99 next to its baseline from the same run, with the added
 * cost (or the ratio, for rates) and the target it is held against.
 */
import type { MachineInfo } from './machine.js'
import { summarize, summarizeRate, type Summary } from './stats.js'

export interface Target {
  /** e.g. "≤ 2 ms" */
  text: string
  met: boolean
}

export interface Figure {
  /** stable key for machines, e.g. "ttft.http" */
  id: string
  label: string
  unit: string
  /** what the baseline is, e.g. "direct stand-in" */
  baselineLabel?: string
  baseline?: Summary
  krill: Summary
  /**
   * krill against the baseline: for latencies the added time (krill − baseline, for
   * the median and for p99), for rates the ratio krill / baseline (medians)
   */
  delta?: { kind: 'added', median: number, p99: number } | { kind: 'ratio', median: number }
  target?: Target
  note?: string
}

export interface SectionResult {
  name: string
  title: string
  figures: Figure[]
  /** what was measured how, and what limits it */
  notes: string[]
  seconds: number
  error?: string
}

export interface Report {
  machine: MachineInfo
  options: { quick: boolean, sections: string[] }
  sections: SectionResult[]
  seconds: number
}

/** A latency figure (lower is better) with its baseline and the added time. */
export function latencyFigure (f: { id: string, label: string, unit?: string, baselineLabel?: string, baseline?: number[], krill: number[], target?: (added: { median: number, p99: number }, krill: Summary) => Target | undefined, note?: string }): Figure {
  const krill = summarize(f.krill)
  const baseline = f.baseline != null ? summarize(f.baseline) : undefined
  const delta = baseline != null ? { kind: 'added' as const, median: krill.median - baseline.median, p99: krill.p99 - baseline.p99 } : undefined
  return {
    id: f.id,
    label: f.label,
    unit: f.unit ?? 'ms',
    baselineLabel: f.baselineLabel,
    baseline,
    krill,
    delta,
    target: f.target?.(delta ?? { median: NaN, p99: NaN }, krill),
    note: f.note
  }
}

/** A rate figure (higher is better; its p99 is the slow 1 %) with the ratio to its baseline. */
export function rateFigure (f: { id: string, label: string, unit?: string, baselineLabel?: string, baseline?: number[], krill: number[], target?: (ratio: number, krill: Summary) => Target | undefined, note?: string }): Figure {
  const krill = summarizeRate(f.krill)
  const baseline = f.baseline != null ? summarizeRate(f.baseline) : undefined
  const ratio = baseline != null ? krill.median / baseline.median : NaN
  return {
    id: f.id,
    label: f.label,
    unit: f.unit ?? 'tok/s',
    baselineLabel: f.baselineLabel,
    baseline,
    krill,
    delta: baseline != null ? { kind: 'ratio', median: ratio } : undefined,
    target: f.target?.(ratio, krill),
    note: f.note
  }
}

function fmt (v: number | undefined, unit = ''): string {
  if (v == null || Number.isNaN(v)) return '—'
  const abs = Math.abs(v)
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  const text = v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  return unit === '' ? text : `${text} ${unit}`
}

function deltaText (f: Figure): string {
  if (f.delta == null) return '—'
  if (f.delta.kind === 'ratio') return `${fmt(f.delta.median * 100)} %`
  const sign = (v: number): string => (v >= 0 ? '+' : '') + fmt(v)
  return `${sign(f.delta.median)} / ${sign(f.delta.p99)}`
}

/** Rows of cells for one table: header first. */
export function tableRows (sections: SectionResult[]): string[][] {
  const rows: string[][] = [['figure', 'unit', 'baseline', 'base med', 'base p99', 'krill med', 'krill p99', 'added med/p99 · ratio', 'n', 'target']]
  for (const s of sections) {
    if (s.error != null) {
      rows.push([`${s.title}: FAILED — ${s.error.split('\n')[0].slice(0, 200)}`, '', '', '', '', '', '', '', '', ''])
      continue
    }
    for (const f of s.figures) {
      rows.push([
        f.label,
        f.unit,
        f.baselineLabel ?? '—',
        fmt(f.baseline?.median),
        fmt(f.baseline?.p99),
        fmt(f.krill.median),
        fmt(f.krill.p99),
        deltaText(f),
        String(f.krill.n),
        f.target == null ? '' : `${f.target.met ? 'met' : 'MISSED'} (${f.target.text})`
      ])
    }
  }
  return rows
}

function plainTable (rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)))
  const numeric = (c: number): boolean => c >= 3 && c <= 8
  const line = (r: string[]): string => r.map((cell, c) => numeric(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])).join('  ').trimEnd()
  return [line(rows[0]), widths.map(w => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n')
}

/** The same table as Markdown (for docs/benchmarks.md). */
export function markdownTable (sections: SectionResult[]): string {
  const rows = tableRows(sections)
  const esc = (s: string): string => s.replaceAll('|', '\\|')
  return [
    `| ${rows[0].map(esc).join(' | ')} |`,
    `|${rows[0].map((_, c) => c >= 3 && c <= 8 ? '---:' : '---').join('|')}|`,
    ...rows.slice(1).map(r => `| ${r.map(esc).join(' | ')} |`)
  ].join('\n')
}

export function machineLine (m: MachineInfo): string {
  return `${m.cpuModel}, ${m.cores} cores, ${Math.round(m.memoryMb / 1024)} GiB, ${m.os}; Node ${m.node}, krill ${m.krill}, libp2p ${m.libp2p}; load average ${m.load.start.toFixed(1)} → ${m.load.end.toFixed(1)}; ${m.date}`
}

export function textReport (report: Report): string {
  const out: string[] = []
  out.push(`krill benchmarks${report.options.quick ? ' — QUICK RUN (--quick: few samples, figures not for publishing)' : ''}: ${machineLine(report.machine)}`)
  out.push('latencies: lower is better, p99 = nearest-rank 99th percentile; rates (tok/s): higher is better, p99 = the slowest 1 %')
  out.push('')
  out.push(plainTable(tableRows(report.sections)))
  for (const s of report.sections) {
    const notes = [...s.notes, ...s.figures.filter(f => f.note != null).map(f => `${f.label}: ${f.note as string}`)]
    if (notes.length === 0) continue
    out.push('')
    out.push(`${s.title} (${s.seconds.toFixed(0)} s):`)
    for (const n of notes) out.push(`  - ${n}`)
  }
  const targets = report.sections.flatMap(s => s.figures.filter(f => f.target != null))
  const missed = targets.filter(f => f.target?.met === false)
  out.push('')
  out.push(`targets: ${targets.length - missed.length}/${targets.length} met${missed.length > 0 ? `; missed: ${missed.map(f => f.label).join('; ')}` : ''}; total ${report.seconds.toFixed(0)} s`)
  return out.join('\n')
}
