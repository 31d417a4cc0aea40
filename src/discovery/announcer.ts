/**
 * Our side of the announcement topics: publishes this node's models, and receives
 * everyone else's into the provider table (through the validator).
 *
 * Two modes (protocols/README.md "Announcements at scale"):
 * - whole (a small swarm, and every krill before shards): one topic, krill/models/1,
 *   our whole model list and capacity, as described below.
 * - sharded (once we know `largeSwarmProviders` providers; never back): each model on
 *   the topic of its shard (shards.ts), one message per shard we serve in, a long
 *   TTL (`largeTtlMs`, refreshed at a third of it), no capacity-driven or
 *   subscriber-driven messages (load is the router's to learn, newcomers sync), and
 *   only `quota` providers per model gossip it (gossip-quota.ts). We subscribe to
 *   the shards we serve in and those of models we were asked for, and stay on
 *   krill/models/1 to hear small-swarm peers.
 *
 * Whole mode:
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
import { modelId } from '../models/index.js'
import { DEFAULT_ANNOUNCEMENT_LIMITS, encodeAnnouncement, type AnnouncementLimits, type ValidAnnouncement } from './announcement.js'
import { ANNOUNCE_TOPIC, AnnouncementValidator, type AnnouncementValidatorOptions, type ValidationStats } from './announcement-validator.js'
import { GossipQuota } from './gossip-quota.js'
import type { ProviderTable } from './provider-table.js'
import { modelShard, shardTopic } from './shards.js'
import type { Capacity, SyncStore } from './types.js'

const log = logger('discovery')

export { ANNOUNCE_TOPIC }

/** providers known before a node moves to sharded announcements */
export const DEFAULT_LARGE_SWARM_PROVIDERS = 64
/** the TTL of sharded announcements: the receivers' maximum */
export const DEFAULT_LARGE_TTL_MS = 3_600_000

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
  /** this node's peer id (the quota's tickets) */
  selfId: string
  /** move to sharded announcements once this many providers are known (default 64; 0: from the start) */
  largeSwarmProviders?: number
  /** TTL of sharded announcements (default 1 h; never below ttlMs) */
  largeTtlMs?: number
  /** providers per model that gossip it at scale (default 8) */
  quota?: number
  /** we now listen to `shard`: discovery connects us to some of its peers (a sparse topic has no mesh otherwise) */
  onShard?: (shard: number, model: string) => void
}

/** what we last published on one shard */
interface ShardState {
  key: string
  at: number
  data: Uint8Array
  seq: number
  expiresAt: number
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
  private sharded = false
  private readonly shards = new Map<number, ShardState>()
  private readonly subscribedShards = new Set<number>()
  private readonly quota: GossipQuota
  /** model ids we announce on their shard now (the quota's "announcing") */
  private readonly quotaHeld = new Set<string>()
  private modeTimer?: NodeJS.Timeout
  private offVanished?: () => void
  /** sharded: another provider of one of our models went: the quota may let us fill its place */
  private readonly onVanished = (evt: CustomEvent<{ model: string }>): void => {
    if (!this.sharded || !this.running) return
    const id = modelId(evt.detail.model)
    if (this.opts.models().some(m => modelId(m.name) === id) && !this.quotaHeld.has(id)) this.schedule(1_000)
  }

  constructor (opts: AnnouncerOptions) {
    this.opts = opts
    this.pubsub = opts.pubsub
    this.limits = opts.limits ?? DEFAULT_ANNOUNCEMENT_LIMITS
    this.minIntervalMs = opts.minIntervalMs ?? 1_000
    this.ttlMs = Math.min(Math.max(opts.ttlMs, this.limits.minTtlMs), this.limits.maxTtlMs)
    if (this.ttlMs !== opts.ttlMs) log.warn(`announcement TTL ${opts.ttlMs} ms is outside what peers accept; using ${this.ttlMs} ms`)
    this.validator = new AnnouncementValidator({ table: opts.table, limits: this.limits, rateLimit: opts.rateLimit })
    this.quota = new GossipQuota({ selfId: opts.selfId, quota: opts.quota })
  }

  /** true once we announce per shard (a large swarm) */
  get isSharded (): boolean {
    return this.sharded
  }

  /** the shards we listen to now (all of them are heard in whole mode through krill/models/1) */
  get shardSubscriptions (): number[] {
    return [...this.subscribedShards].sort((a, b) => a - b)
  }

  private get largeTtlMs (): number {
    return Math.min(Math.max(this.opts.largeTtlMs ?? DEFAULT_LARGE_TTL_MS, this.ttlMs), this.limits.maxTtlMs)
  }

  /** for the sync exchange: what we hold, and the same judge as for gossip */
  readonly syncStore: SyncStore = {
    held: (max) => this.opts.table.signedAnnouncements(max),
    own: () => {
      const now = Date.now()
      const out: Array<{ data: Uint8Array, seq: number, remainingMs: number, shard?: number }> = []
      if (this.own != null && this.own.expiresAt > now) out.push({ data: this.own.data, seq: this.own.seq, remainingMs: this.own.expiresAt - now })
      for (const [shard, st] of this.shards) if (st.expiresAt > now && st.key !== '') out.push({ data: st.data, seq: st.seq, remainingMs: st.expiresAt - now, shard })
      return out
    },
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
    this.offVanished = this.opts.table.on('model:vanished', this.onVanished)
    if ((this.opts.largeSwarmProviders ?? DEFAULT_LARGE_SWARM_PROVIDERS) <= 0) this.goSharded()
    else {
      this.modeTimer = setInterval(() => { this.checkMode() }, 2_000)
      this.modeTimer.unref()
    }
    this.schedule(0)
  }

  /** The model list changed: announce soon (throttled). */
  changed (): void {
    this.schedule(0)
  }

  /** Our load changed: a small swarm hears it soon (throttled); at scale the router asks no gossip for it. */
  capacityChanged (): void {
    if (!this.sharded) this.schedule(0)
  }

  /** We were asked for `model`: at scale, listen to its shard from now on. */
  interest (model: string): void {
    if (this.sharded && this.running) this.subscribeShard(modelShard(model), model)
  }

  private checkMode (): void {
    if (!this.sharded && this.opts.table.gossipProviders() >= (this.opts.largeSwarmProviders ?? DEFAULT_LARGE_SWARM_PROVIDERS)) {
      this.goSharded()
      this.schedule(0)
    }
  }

  /** From now on: per-shard announcements. Our krill/models/1 record expires at its receivers within its TTL. */
  private goSharded (): void {
    if (this.sharded) return
    this.sharded = true
    clearInterval(this.modeTimer)
    this.modeTimer = undefined
    log.info(`${this.opts.table.gossipProviders()} providers known: announcing per model shard from now on`)
    // no more whole-list refreshes; an owed withdrawal on krill/models/1 is not sent
    // (our shards say what we serve, and small-swarm peers drop us at our TTL)
    this.listed = false
    this.own = undefined
    for (const m of this.opts.models()) this.subscribeShard(modelShard(m.name), m.name)
  }

  private subscribeShard (shard: number, model: string): void {
    if (this.subscribedShards.has(shard)) return
    this.subscribedShards.add(shard)
    try {
      this.pubsub.topicValidators.set(shardTopic(shard), this.validator.validate)
      this.pubsub.subscribe(shardTopic(shard))
      this.opts.onShard?.(shard, model)
    } catch (err: any) {
      log.debug(`subscribing to shard ${shard} failed: ${err.message}`)
    }
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
    clearInterval(this.modeTimer)
    this.modeTimer = undefined
    this.offVanished?.()
    this.offVanished = undefined
    if (opts.withdraw === true && this.listed) await this.publish([])
    if (opts.withdraw === true) {
      for (const [shard, st] of this.shards) if (st.key !== '') await this.publishShard(shard, [])
    }
    for (const topic of [ANNOUNCE_TOPIC, ...[...this.subscribedShards].map(shardTopic)]) {
      if (this.pubsub.topicValidators.get(topic) === this.validator.validate) this.pubsub.topicValidators.delete(topic)
    }
    for (const topic of [ANNOUNCE_TOPIC, ...[...this.subscribedShards].map(shardTopic)]) {
      try {
        this.pubsub.unsubscribe(topic)
      } catch {
        // the node may already be stopping
      }
    }
    this.subscribedShards.clear()
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
    if (this.sharded) {
      await this.tickSharded()
      return
    }
    const models = this.opts.models()
    // nothing to share and nothing to take back: a consumer stays silent
    if (models.length > 0 || this.listed) await this.publish(models)
    // re-announce well before receivers let us expire
    if (this.listed) this.schedule(Math.floor(this.ttlMs / 3))
  }

  /**
   * Sharded mode: publish each shard whose content changed or whose refresh is due
   * (a third of the TTL), withdraw shards we no longer serve in, and come back at the
   * next refresh or quota re-check.
   */
  private async tickSharded (): Promise<void> {
    const now = Date.now()
    const ttl = this.largeTtlMs
    const groups = new Map<number, ModelInfo[]>()
    let next = Infinity
    for (const m of this.opts.models()) {
      const shard = modelShard(m.name)
      this.subscribeShard(shard, m.name)
      const announcers = this.opts.table.providersFor(m.name).filter(e => e.source === 'gossip').map(e => e.peerId)
      const id = modelId(m.name)
      const d = this.quota.decide(m.name, announcers, this.quotaHeld.has(id), now)
      if (d.recheckAt != null) next = Math.min(next, d.recheckAt)
      if (!d.announce) {
        this.quotaHeld.delete(id)
        continue
      }
      this.quotaHeld.add(id)
      const list = groups.get(shard) ?? []
      list.push(m)
      groups.set(shard, list)
    }
    for (const shard of new Set([...groups.keys(), ...this.shards.keys()])) {
      const models = groups.get(shard) ?? []
      const key = models.map(m => `${m.name}@${m.digest}`).sort().join(',')
      const st = this.shards.get(shard)
      if (st == null && models.length === 0) continue
      if (st != null && st.key === '' && models.length === 0) {
        this.shards.delete(shard)
        continue
      }
      if (st == null || st.key !== key || st.at + Math.floor(ttl / 3) <= now) await this.publishShard(shard, models)
      const at = this.shards.get(shard)?.at ?? now
      if (models.length > 0) next = Math.min(next, at + Math.floor(ttl / 3))
    }
    // quiet for a model is no reason to stop looking: a vacancy may open any time
    if (this.opts.models().length > 0) next = Math.min(next, now + Math.floor(ttl / 3))
    if (next < Infinity) this.schedule(Math.max(0, next - Date.now()))
  }

  private async publishShard (shard: number, models: ModelInfo[]): Promise<void> {
    const now = Date.now()
    this.seq = Math.max(this.seq + 1, now)
    const ttlMs = this.largeTtlMs
    const { bytes, skipped } = encodeAnnouncement({ models, capacity: this.opts.capacity(), version: this.opts.version, seq: this.seq, timestampMs: now, ttlMs }, this.limits)
    if (skipped.length > 0) log.debug(`shard ${shard}: not announcing ${skipped.join('; ')}`)
    const key = models.length > skipped.length ? models.map(m => `${m.name}@${m.digest}`).sort().join(',') : ''
    this.shards.set(shard, { key, at: now, data: bytes, seq: this.seq, expiresAt: now + ttlMs })
    this.lastPublishAt = now
    try {
      const { recipients } = await this.pubsub.publish(shardTopic(shard), bytes)
      log.debug(`announced ${models.length} model(s) on shard ${shard}, seq ${this.seq}, to ${recipients.length} peer(s)`)
    } catch (err: any) {
      log.debug(`announcing on shard ${shard} failed: ${err.message}`)
    }
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
