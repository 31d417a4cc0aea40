/** The benchmark's statistics (test/bench/stats.ts): every figure in the report rests on them. */
import { describe, expect, it } from 'vitest'
import { median, percentile, summarize, summarizeRate } from '../bench/stats.js'
import { latencyFigure, rateFigure, tableRows } from '../bench/report.js'

describe('median', () => {
  it('is the middle value of an odd count, in any order', () => {
    expect(median([5, 1, 3])).toBe(3)
    expect(median([7])).toBe(7)
  })

  it('is the mean of the two middle values of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([10, 20])).toBe(15)
  })

  it('is NaN for no samples and refuses non-numbers', () => {
    expect(median([])).toBeNaN()
    expect(() => median([1, NaN])).toThrow(RangeError)
    expect(() => median([1, Infinity])).toThrow(RangeError)
  })

  it('does not reorder its input', () => {
    const samples = [3, 1, 2]
    median(samples)
    expect(samples).toEqual([3, 1, 2])
  })
})

describe('percentile (nearest rank)', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1) // 1..100

  it('p99 of 1..100 is 99, p50 is 50, p100 the maximum, p1 the minimum', () => {
    expect(percentile(hundred, 99)).toBe(99)
    expect(percentile(hundred, 50)).toBe(50)
    expect(percentile(hundred, 100)).toBe(100)
    expect(percentile(hundred, 1)).toBe(1)
  })

  it('p99 of 1..1000 is 990', () => {
    expect(percentile(Array.from({ length: 1000 }, (_, i) => i + 1), 99)).toBe(990)
  })

  it('with fewer than 100 samples p99 is the worst one', () => {
    expect(percentile([3, 9, 1, 4], 99)).toBe(9)
    expect(percentile([42], 99)).toBe(42)
  })

  it('always returns a measured value, never an interpolation', () => {
    const samples = [1, 2, 10, 11]
    for (const p of [10, 25, 50, 75, 99]) expect(samples).toContain(percentile(samples, p))
  })

  it('rejects percentiles outside (0, 100]', () => {
    expect(() => percentile([1], 0)).toThrow(RangeError)
    expect(() => percentile([1], 101)).toThrow(RangeError)
    expect(percentile([], 99)).toBeNaN()
  })
})

describe('summaries', () => {
  it('summarize: n, median, p99, mean, min, max', () => {
    expect(summarize([4, 1, 3, 2])).toEqual({ n: 4, median: 2.5, p99: 4, mean: 2.5, min: 1, max: 4 })
    expect(summarize([]).n).toBe(0)
  })

  it('summarizeRate: p99 is the slow end (1st percentile)', () => {
    const rates = Array.from({ length: 200 }, (_, i) => 1000 + i) // 1000..1199
    const s = summarizeRate(rates)
    expect(s.median).toBe(1099.5)
    expect(s.p99).toBe(1001)
  })

  it('latency figures report krill − baseline for the median and for p99', () => {
    const f = latencyFigure({ id: 'x', label: 'x', baseline: [1, 2, 3], krill: [2, 4, 9], target: added => ({ text: '≤ 2 ms', met: added.median <= 2 }) })
    expect(f.delta).toEqual({ kind: 'added', median: 2, p99: 6 })
    expect(f.target).toEqual({ text: '≤ 2 ms', met: true })
  })

  it('rate figures report the ratio of the medians', () => {
    const f = rateFigure({ id: 'y', label: 'y', baseline: [100, 100, 100], krill: [90, 95, 100], target: ratio => ({ text: '≥ 95 %', met: ratio >= 0.95 }) })
    expect(f.delta).toEqual({ kind: 'ratio', median: 0.95 })
    expect(f.target?.met).toBe(true)
  })

  it('the table has one row per figure under a header, and a failed section shows as such', () => {
    const rows = tableRows([
      { name: 'a', title: 'A', figures: [latencyFigure({ id: 'a.1', label: 'one', krill: [1] })], notes: [], seconds: 1 },
      { name: 'b', title: 'B', figures: [], notes: [], seconds: 1, error: 'boom\nstack' }
    ])
    expect(rows).toHaveLength(3)
    expect(rows[1][0]).toBe('one')
    expect(rows[2][0]).toBe('B: FAILED — boom')
  })
})
