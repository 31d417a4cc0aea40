/**
 * Polls the engine's model list and says when the set of shared models changes, and
 * when Ollama goes away or comes back. Announcements are driven by these events.
 *
 * Ollama that refuses or fails is gone at once; one that only answers too late is
 * given one more poll first: on a machine starved of CPU a single slow /api/tags is
 * no reason to withdraw every model from the whole network and announce them again
 * a moment later (every peer's catalog would blink).
 */
import { KrillError } from '../errors.js'
import { sameModel } from '../models/index.js'
import type { Engine, ModelInfo } from './types.js'

export interface ModelWatcherOptions {
  /** poll period (default 10 s) */
  intervalMs?: number
  /**
   * Which models to share: exact names ("llama3" also matches "llama3:latest") or
   * patterns with `*` ("llama3*", "*:8b"). Undefined shares everything; [] shares nothing.
   */
  share?: string[]
}

export interface ModelWatcherEventMap {
  /** the shared set (name + digest + context length + capabilities) changed; detail is the new list */
  change: CustomEvent<ModelInfo[]>
  /** Ollama answers again (or for the first time) */
  reachable: Event
  /** Ollama stopped answering (or never did); detail is why */
  unreachable: CustomEvent<{ error: unknown }>
}

/** Builds the share filter; exported so the CLI can explain what a pattern would share. */
export function shareMatcher (share: string[] | undefined): (name: string) => boolean {
  if (share === undefined) return () => true
  const tests = share.map(pattern => {
    if (pattern.includes('*')) {
      const re = new RegExp('^' + pattern.split('*').map(p => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 'i')
      return (name: string) => re.test(name)
    }
    return (name: string) => sameModel(name, pattern)
  })
  return name => tests.some(t => t(name))
}

function setKey (models: ModelInfo[]): string {
  return models.map(m => `${m.name}\u0000${m.digest}\u0000${m.contextLength}\u0000${(m.capabilities ?? []).join(',')}`).sort().join('\n')
}

export class ModelWatcher extends EventTarget {
  private readonly engine: Pick<Engine, 'listModels'>
  private readonly intervalMs: number
  private readonly shared: (name: string) => boolean
  private models: ModelInfo[] = []
  private state: 'unknown' | 'up' | 'down' = 'unknown'
  private timer: NodeJS.Timeout | undefined
  /** bumped by start/stop so a poll loop from an earlier start() cannot reschedule itself */
  private generation = 0
  private running = false
  /** polls run one after the other */
  private queue: Promise<unknown> = Promise.resolve()
  private readonly inFlight = new Set<AbortController>()
  /** late answers in a row; the second one counts as Ollama gone */
  private lateInARow = 0

  constructor (engine: Pick<Engine, 'listModels'>, opts: ModelWatcherOptions = {}) {
    super()
    this.engine = engine
    this.intervalMs = opts.intervalMs ?? 10_000
    this.shared = shareMatcher(opts.share)
  }

  /** the shared models as of the last poll ([] while Ollama is unreachable) */
  get current (): ModelInfo[] {
    return [...this.models]
  }

  /** true once a poll succeeded and until one fails */
  get reachable (): boolean {
    return this.state === 'up'
  }

  /** Polls now, then every intervalMs until stop(). */
  start (): void {
    if (this.running) return
    this.running = true
    const generation = ++this.generation
    const tick = async (): Promise<void> => {
      await this.refresh()
      if (this.running && generation === this.generation) {
        this.timer = setTimeout(() => { void tick() }, this.intervalMs)
        this.timer.unref()
      }
    }
    void tick()
  }

  /** Stops polling and cancels a poll in flight; nothing keeps running afterwards. */
  stop (): void {
    this.running = false
    this.generation++
    clearTimeout(this.timer)
    this.timer = undefined
    for (const ac of this.inFlight) ac.abort()
  }

  /** Polls now (after any poll already running) and returns the shared list. */
  async refresh (): Promise<ModelInfo[]> {
    const next = this.queue.then(async () => await this.poll())
    this.queue = next.catch(() => {})
    return await next
  }

  /** Typed addEventListener; returns a function that removes the listener. */
  on<K extends keyof ModelWatcherEventMap> (type: K, listener: (event: ModelWatcherEventMap[K]) => void): () => void {
    const fn = listener as (event: Event) => void
    this.addEventListener(type, fn)
    return () => this.removeEventListener(type, fn)
  }

  private async poll (): Promise<ModelInfo[]> {
    const ac = new AbortController()
    this.inFlight.add(ac)
    let listed: ModelInfo[] | undefined
    let error: unknown
    try {
      listed = await this.engine.listModels(ac.signal)
    } catch (err) {
      error = err
    } finally {
      this.inFlight.delete(ac)
    }
    // stopped while asking: the answer says nothing about Ollama
    if (ac.signal.aborted) return this.current

    const late = listed === undefined && error instanceof KrillError && error.code === 'TIMEOUT'
    this.lateInARow = late ? this.lateInARow + 1 : 0
    // the first late answer while Ollama was up: keep what we have, ask again
    if (late && this.state === 'up' && this.lateInARow < 2) return this.current

    const previous = setKey(this.models)
    if (listed !== undefined) {
      this.models = listed.filter(m => this.shared(m.name))
      if (this.state !== 'up') {
        this.state = 'up'
        this.dispatchEvent(new Event('reachable'))
      }
    } else {
      this.models = []
      if (this.state !== 'down') {
        this.state = 'down'
        this.dispatchEvent(new CustomEvent('unreachable', { detail: { error } }))
      }
    }
    if (setKey(this.models) !== previous) this.dispatchEvent(new CustomEvent('change', { detail: this.current }))
    return this.current
  }
}
