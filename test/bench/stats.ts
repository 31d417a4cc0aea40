/**
 * The statistics every benchmark figure goes through. Kept tiny and exact so a unit
 * test can check the arithmetic (test/unit/bench-stats.test.ts).
 */

export interface Summary {
  /** number of samples */
  n: number
  median: number
  /** 99th percentile (nearest rank): the value 99 % of the samples are at or below */
  p99: number
  mean: number
  min: number
  max: number
}

function sorted (samples: readonly number[]): number[] {
  for (const s of samples) {
    if (!Number.isFinite(s)) throw new RangeError(`sample ${String(s)} is not a finite number`)
  }
  return [...samples].sort((a, b) => a - b)
}

/** The middle value; the mean of the two middle values for an even count. NaN for none. */
export function median (samples: readonly number[]): number {
  const s = sorted(samples)
  if (s.length === 0) return NaN
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/**
 * Nearest-rank percentile: the smallest sample such that at least `p` % of the
 * samples are at or below it. No interpolation, so the result is always a value
 * that was measured, and with fewer than 100 samples p99 is the maximum (a tail
 * figure should never look better than the worst run it rests on). NaN for none.
 */
export function percentile (samples: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`)
  const s = sorted(samples)
  if (s.length === 0) return NaN
  const rank = Math.ceil((p / 100) * s.length)
  return s[Math.min(s.length, Math.max(1, rank)) - 1]
}

export function summarize (samples: readonly number[]): Summary {
  const s = sorted(samples)
  if (s.length === 0) return { n: 0, median: NaN, p99: NaN, mean: NaN, min: NaN, max: NaN }
  return {
    n: s.length,
    median: median(s),
    p99: percentile(s, 99),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0],
    max: s[s.length - 1]
  }
}

/**
 * For rates (tokens/s) the bad tail is the low end: this summary's p99 is the
 * 1st percentile, the rate 99 % of the runs beat.
 */
export function summarizeRate (samples: readonly number[]): Summary {
  const base = summarize(samples)
  if (base.n === 0) return base
  return { ...base, p99: percentile(samples, 1) }
}
