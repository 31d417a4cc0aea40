/**
 * Our side of the gossip topic krill/models/1: publishes this node's models and
 * capacity, and receives everyone else's into the provider table (through the
 * validator).
 *
 * When we publish: at start, on every change of the model list or capacity (at most one
 * message per `minIntervalMs`), and every ttl/3 so receivers never let us expire.
 * Never because a peer subscribed: every message goes to the whole network, and in a
 * churning swarm (peers trimmed and reconnecting all the time) re-announcing for each
 * new subscriber was 92 % of all announcement bytes. A newcomer gets the current
 * catalog from its first peers instead, and from us alone when it connects to us
 * (the sync exchange). A node with nothing to share stays silent; one that stops
 * sharing sends a single empty announcement (a withdrawal).
 *
 * seq is max(last + 1, now in ms): strictly increasing, also across restarts, as long
 * as the clock does not go back by more than the downtime.
 */
import type { GossipSub } from '@libp2p/gossipsub'
import type { ModelInfo } from '../engine/types.js'
import { logger } from '../log.js'
import { DEFAULT_ANNOUNCEMENT_LIMITS, encodeAnnouncement, type AnnouncementLimits, type ValidAnnouncement } from './announcement.js'
import { AnnouncementValidator, type AnnouncementValidatorOptions, type ValidationStats } from './announcement-validator.js'
import type { ProviderTable } from './provider-table.js'
import type { Capacity, SyncStore } from './types.js'

const log = logger('discovery')

export const ANNOUNCE_TOPIC = 'krill/models/1'

export interface AnnouncerOptions {
  pubsub: GossipSub
  table: ProviderTable
  /** lifetime receivers give our announcements (raised to the receivers' minimum) */
  ttlMs: number
  /** our software version, e.g. "krill/0.1.0" */
  version: string
  /** what we serve right now */
  models: () => ModelInfo[]
  capacity: () => Capacity
  /** least time between two of our announcements (default 1 s) */
  minIntervalMs?: number
  limits?: AnnouncementLimits
  rateLimit?: AnnouncementValidatorOptions['rateLimit']
}

export class Announcer {
  readonly ttlMs: number
  private readonly pubsub: GossipSub
  private readonly validator: AnnouncementValidator
  private readonly opts: AnnouncerOptions
  private readonly limits: AnnouncementLimits
  private readonly minIntervalMs: number
  private seq = 0
  private lastPublishAt = -Infinity
  /** true while receivers list models of ours: a withdrawal is owed when that ends */
  private listed = false
  private timer?: NodeJS.Timeout
  private timerDue = Infinity
  private running = false
  private lastSkipped = ''
  /** our last announcement while it lists models: the sync exchange hands it to newcomers */
  private own?: { data: Uint8Array, seq: number, expiresAt: number }
  constructor (opts: AnnouncerOptions) {
    this.opts = opts
    this.pubsub = opts.pubsub
    this.limits = opts.limits ?? DEFAULT_ANNOUNCEMENT_LIMITS
    this.minIntervalMs = opts.minIntervalMs ?? 1_000
    this.ttlMs = Math.min(Math.max(opts.ttlMs, this.limits.minTtlMs), this.limits.maxTtlMs)
    if (this.ttlMs !== opts.ttlMs) log.warn(`announcement TTL ${opts.ttlMs} ms is outside what peers accept; using ${this.ttlMs} ms`)
    this.validator = new AnnouncementValidator({ table: opts.table, limits: this.limits, rateLimit: opts.rateLimit })
  }

  /** for the sync exchange: what we hold, and the same judge as for gossip */
  readonly syncStore: SyncStore = {
    held: (max) => this.opts.table.signedAnnouncements(max),
    own: () => this.own != null && this.own.expiresAt > Date.now() ? { data: this.own.data, seq: this.own.seq, remainingMs: this.own.expiresAt - Date.now() } : undefined,
    receive: (msg, remainingMs) => this.validator.validateSynced(msg, remainingMs)
  }

  /** accepted / rejected / ignored counts of received announcements, by reason */
  get stats (): ValidationStats {
    return this.validator.stats
  }

  /** seq of our last announcement (0 before the first) */
  get lastSeq (): number {
    return this.seq
  }

  /** Subscribes to the topic, starts judging what arrives there, and announces. */
  start (): void {
    if (this.running) return
    this.running = true
    this.pubsub.topicValidators.set(ANNOUNCE_TOPIC, this.validator.validate)
    this.pubsub.subscribe(ANNOUNCE_TOPIC)
    this.schedule(0)
  }

  /** The model list or our capacity changed: announce soon (throttled). */
  changed (): void {
    this.schedule(0)
  }

  /**
   * Stops announcing. With `withdraw` (a clean shutdown) peers are first told that we
   * serve nothing any more, so they drop us at once instead of after the TTL.
   */
  async stop (opts: { withdraw?: boolean } = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    clearTimeout(this.timer)
    this.timer = undefined
    if (opts.withdraw === true && this.listed) await this.publish([])
    if (this.pubsub.topicValidators.get(ANNOUNCE_TOPIC) === this.validator.validate) this.pubsub.topicValidators.delete(ANNOUNCE_TOPIC)
    try {
      this.pubsub.unsubscribe(ANNOUNCE_TOPIC)
    } catch {
      // the node may already be stopping
    }
  }

  /** Publishes at `delayMs` from now, or as soon after our last message as allowed. */
  private schedule (delayMs: number): void {
    if (!this.running) return
    const now = Date.now()
    const due = Math.max(now + delayMs, this.lastPublishAt + this.minIntervalMs)
    if (this.timer != null && this.timerDue <= due) return
    clearTimeout(this.timer)
    this.timerDue = due
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.timerDue = Infinity
      void this.tick()
    }, due - now)
    this.timer.unref()
  }

  private async tick (): Promise<void> {
    if (!this.running) return
    const models = this.opts.models()
    // nothing to share and nothing to take back: a consumer stays silent
    if (models.length > 0 || this.listed) await this.publish(models)
    // re-announce well before receivers let us expire
    if (this.listed) this.schedule(Math.floor(this.ttlMs / 3))
  }

  private async publish (models: ModelInfo[]): Promise<void> {
    const now = Date.now()
    this.seq = Math.max(this.seq + 1, now)
    const ann: ValidAnnouncement = {
      models,
      capacity: this.opts.capacity(),
      version: this.opts.version,
      seq: this.seq,
      timestampMs: now,
      ttlMs: this.ttlMs
    }
    const { bytes, skipped } = encodeAnnouncement(ann, this.limits)
    const skippedKey = skipped.join('\n')
    if (skippedKey !== '' && skippedKey !== this.lastSkipped) log.warn(`not announcing ${skipped.length} model(s): ${skipped.join('; ')}`)
    this.lastSkipped = skippedKey
    this.lastPublishAt = now
    this.listed = models.length > skipped.length
    this.own = this.listed && this.running ? { data: bytes, seq: this.seq, expiresAt: now + this.ttlMs } : undefined
    try {
      const { recipients } = await this.pubsub.publish(ANNOUNCE_TOPIC, bytes)
      log.debug(`announced ${models.length - skipped.length} model(s), seq ${this.seq}, to ${recipients.length} peer(s)`)
    } catch (err: any) {
      log.debug(`announcing failed: ${err.message}`)
    }
  }
}
