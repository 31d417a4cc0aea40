import type { Cleanup } from './cleanup.js'
import type { Figure } from './report.js'

export interface BenchContext {
  quick: boolean
  cleanup: Cleanup
  /** progress for people, on stderr */
  log: (msg: string) => void
  /**
   * One set-up shared by the sections that can use it (e.g. TTFT and throughput run
   * on the same consumer → provider → stand-in line); released with the run's cleanup.
   */
  shared: <T>(key: string, create: () => Promise<T>) => Promise<T>
}

export interface SectionOutput {
  figures: Figure[]
  notes: string[]
}

export interface Section {
  name: string
  title: string
  run: (ctx: BenchContext) => Promise<SectionOutput>
}
