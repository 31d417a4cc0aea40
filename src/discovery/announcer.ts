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
 *   krill/models/1 to hear small-swarm peers. A shard we do not serve in is left
 *   after `shardIdleMs` without use (the router asking for one of its models), and
 *   joined again on the next.
 *
 * The switch, without a gap: the others move to shards about when we do (they
 * count the same providers). Near the switch (fewer than CARRY_FACTOR ×
 * `largeSwarmProviders` providers listed) we also listen to the shard of every
 * model we list, so what we learned on krill/models/1 stays listed once its
 * authors publish on shards only, and their goodbyes reach us. A provider that
 * was listed on krill/models/1 publishes its shards once more ttl/2 after its
 * switch, before its last krill/models/1 announcement (at most ttl/3 old then)
 * expires: for the peers that moved, and subscribed, after it published the first time.
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
/** "near the switch": fewer than this many × largeSwarmProviders providers listed */
export const CARRY_FACTOR = 4
/** carrying listed models over adds no shard beyond this many subscriptions */
export const MAX_CARRIED_SHARDS = 256
/**
 * how long a starting provider holds its first whole list for its first sync answer:
 * a newcomer to a large swarm learns from it that the swarm is large and goes
 * straight to shards, instead of flooding krill/models/1 (every node) once per start
 */
export const FIRST_SYNC_WAIT_MS = 3_000

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
  /** a shard we listen to but do not serve in is left after this long without use (default: largeTtlMs) */
  shardIdleMs?: number
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
  /** messages we published: on krill/models/1, and on shards */
  readonly published = { whole: 0, shard: 0 }
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
  private startedAt = 0
  /** a sync answer arrived since start (or the wait for one is over) */
  private heardSwarm = false
  private lastSkipped = ''
  /** our last announcement while it lists models: the sync exchange hands it to newcomers */
  private own?: { data: Uint8Array, seq: number, expiresAt: number }
  private sharded = false
  private readonly shards = new Map<number, ShardState>()
  private readonly subscribedShards = new Set<number>()
  /** subscribed shard → its last use (a router lookup, or listing one of its models near the switch) */
  private readonly shardUsedAt = new Map<number, number>()
  private shardTimer?: NodeJS.Timeout
  /** set a refresh period after the switch: publish every shard once more */
  private repeatShards = false
  private repeatTimer?: NodeJS.Timeout
  /** until then receivers may still list our last krill/models/1 announcement */
  private wholeUntil = 0
  private readonly quota: GossipQuota
  /** model ids we announce on their shard now (the quota's "announcing") */
  private readonly quotaHeld = new Set<string>()
  private modeTimer?: NodeJS.Timeout
  private offVanished?: () => void
  private offAppeared?: () => void
  /** sharded, near the switch: a model we now list gets its shard listened to */
  private readonly onAppeared = (evt: CustomEvent<{ model: string }>): void => {
    if (this.sharded && this.running && this.nearSwitch()) this.carry(modelShard(evt.detail.model), evt.detail.model)
  }
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

  private get shardIdleMs (): number {
    return this.opts.shardIdleMs ?? this.largeTtlMs
  }

  private get largeSwarmProviders (): number {
    return this.opts.largeSwarmProviders ?? DEFAULT_LARGE_SWARM_PROVIDERS
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
    receive: (msg, remainingMs) => this.validator.validateSynced(msg, remainingMs),
    synced: () => { this.onSynced() }
  }

  /** our first sync answer: the table now shows how large the swarm is, so the mode is known */
  private onSynced (): void {
    if (this.heardSwarm || !this.running) return
    this.heardSwarm = true
    if (this.sharded) return
    // far above the switch nobody lists models from krill/models/1 for long: straight
    // to shards. Near it, peers still build their catalog from whole lists (and carry
    // them over to shards), so our first one goes out as before.
    const n = this.largeSwarmProviders
    if (n > 0 && this.opts.table.gossipProviders() >= CARRY_FACTOR * n) this.goSharded()
    // a first list held for this answer goes now (one already out stays on its refresh)
    if (!this.listed) this.schedule(0)
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
    this.startedAt = Date.now()
    this.heardSwarm = false
    this.pubsub.topicValidators.set(ANNOUNCE_TOPIC, this.validator.validate)
    this.pubsub.subscribe(ANNOUNCE_TOPIC)
    this.offVanished = this.opts.table.on('model:vanished', this.onVanished)
    this.offAppeared = this.opts.table.on('model:appeared', this.onAppeared)
    if (this.largeSwarmProviders <= 0) this.goSharded()
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

  /** We were asked for `model`: at scale, listen to its shard (until it goes unused for shardIdleMs). */
  interest (model: string): void {
    if (this.sharded && this.running) this.subscribeShard(modelShard(model), model, true)
  }

  private checkMode (): void {
    if (!this.sharded && this.opts.table.gossipProviders() >= this.largeSwarmProviders) {
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
    // no more whole-list refreshes; no withdrawal on krill/models/1 either (our shards
    // say what we serve, and small-swarm peers drop us at our TTL), unless we stop first
    if (this.listed) {
      // the peers that subscribed to our shards after our first shard messages
      // (they moved a little later) hear them before our last whole list expires
      this.repeatTimer = setTimeout(() => {
        this.repeatShards = true
        this.schedule(0)
      }, Math.floor(this.ttlMs / 2))
      this.repeatTimer.unref()
    }
    this.listed = false
    this.own = undefined
    for (const m of this.opts.models()) this.subscribeShard(modelShard(m.name), m.name, true)
    this.carryOver()
    this.shardTimer = setInterval(() => {
      this.carryOver()
      this.leaveIdleShards()
    }, Math.max(250, Math.min(2_000, Math.floor(this.shardIdleMs / 2))))
    this.shardTimer.unref()
  }

  /** true while the swarm we see is not far above the switch: listed models keep their shard listened to */
  private nearSwitch (): boolean {
    const n = this.largeSwarmProviders
    return n > 0 && this.opts.table.gossipProviders() < CARRY_FACTOR * n
  }

  /** near the switch: listen to (and count as used) the shard of every model we list */
  private carryOver (): void {
    if (!this.running || !this.nearSwitch()) return
    for (const e of this.opts.table.all()) if (e.source === 'gossip') this.carry(modelShard(e.model.name), e.model.name)
  }

  /** a listed model's shard: no DHT dial (its announcement reached us, so a path exists) */
  private carry (shard: number, model: string): void {
    if (this.subscribedShards.has(shard) || this.subscribedShards.size < MAX_CARRIED_SHARDS) this.subscribeShard(shard, model, false)
  }

  /** Listens to `shard` (marked used now); `dial`: a new subscription looks the model's providers up and dials some. */
  private subscribeShard (shard: number, model: string, dial: boolean): void {
    this.shardUsedAt.set(shard, Date.now())
    if (this.subscribedShards.has(shard)) return
    this.subscribedShards.add(shard)
    try {
      this.pubsub.topicValidators.set(shardTopic(shard), this.validator.validate)
      this.pubsub.subscribe(shardTopic(shard))
      if (dial) this.opts.onShard?.(shard, model)
    } catch (err: any) {
      log.debug(`subscribing to shard ${shard} failed: ${err.message}`)
    }
  }

  /** Leaves the shards we do not serve in that nobody used for shardIdleMs (the next use joins again). */
  private leaveIdleShards (): void {
    if (!this.running) return
    const now = Date.now()
    const served = new Set(this.opts.models().map(m => modelShard(m.name)))
    for (const shard of [...this.subscribedShards]) {
      if (served.has(shard) || (this.shards.get(shard)?.key ?? '') !== '') continue
      if ((this.shardUsedAt.get(shard) ?? 0) + this.shardIdleMs > now) continue
      this.leaveShard(shard)
      log.debug(`left shard ${shard}: unused for ${this.shardIdleMs} ms`)
    }
  }

  private leaveShard (shard: number): void {
    const topic = shardTopic(shard)
    this.subscribedShards.delete(shard)
    this.shardUsedAt.delete(shard)
    if (this.pubsub.topicValidators.get(topic) === this.validator.validate) this.pubsub.topicValidators.delete(topic)
    try {
      this.pubsub.unsubscribe(topic)
    } catch {
      // the node may already be stopping
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
    clearInterval(this.shardTimer)
    this.shardTimer = undefined
    clearTimeout(this.repeatTimer)
    this.repeatTimer = undefined
    this.offVanished?.()
    this.offVanished = undefined
    this.offAppeared?.()
    this.offAppeared = undefined
    // also just after the switch: receivers still list our last whole list until its TTL
    if (opts.withdraw === true && (this.listed || Date.now() < this.wholeUntil)) await this.publish([])
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
    this.shardUsedAt.clear()
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
    // our first list waits (briefly) for a sync answer to tell us the swarm's size
    const waitLeft = this.startedAt + FIRST_SYNC_WAIT_MS - Date.now()
    if (!this.listed && !this.heardSwarm && models.length > 0 && waitLeft > 0) {
      this.holdWhole(models)
      this.schedule(waitLeft)
      return
    }
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
    // taken now: a repeat asked for while we publish is the next tick's
    const repeat = this.repeatShards
    this.repeatShards = false
    for (const m of this.opts.models()) {
      const shard = modelShard(m.name)
      this.subscribeShard(shard, m.name, true)
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
      if (st == null || st.key !== key || st.at + Math.floor(ttl / 3) <= now || (repeat && models.length > 0)) await this.publishShard(shard, models)
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
    this.published.shard++
    try {
      const { recipients } = await this.pubsub.publish(shardTopic(shard), bytes)
      log.debug(`announced ${models.length} model(s) on shard ${shard}, seq ${this.seq}, to ${recipients.length} peer(s)`)
    } catch (err: any) {
      log.debug(`announcing on shard ${shard} failed: ${err.message}`)
    }
  }

  /** our whole list as an announcement with the next seq */
  private encodeWhole (models: ModelInfo[], now: number): { bytes: Uint8Array, skipped: string[] } {
    this.seq = Math.max(this.seq + 1, now)
    const ann: ValidAnnouncement = {
      models,
      capacity: this.opts.capacity(),
      version: this.opts.version,
      seq: this.seq,
      timestampMs: now,
      ttlMs: this.ttlMs
    }
    return encodeAnnouncement(ann, this.limits)
  }

  /**
   * While our first list waits for a sync answer it is not gossiped, but a peer that
   * asks us (the sync exchange, one peer at a time) gets it: one that connected and
   * asked before we published would otherwise wait for our next refresh.
   */
  private holdWhole (models: ModelInfo[]): void {
    if (this.own != null) return
    const now = Date.now()
    const { bytes, skipped } = this.encodeWhole(models, now)
    if (models.length > skipped.length) this.own = { data: bytes, seq: this.seq, expiresAt: now + this.ttlMs }
  }

  private async publish (models: ModelInfo[]): Promise<void> {
    const now = Date.now()
    const { bytes, skipped } = this.encodeWhole(models, now)
    const skippedKey = skipped.join('\n')
    if (skippedKey !== '' && skippedKey !== this.lastSkipped) log.warn(`not announcing ${skipped.length} model(s): ${skipped.join('; ')}`)
    this.lastSkipped = skippedKey
    this.lastPublishAt = now
    this.listed = models.length > skipped.length
    this.wholeUntil = this.listed ? now + this.ttlMs : 0
    this.own = this.listed && this.running ? { data: bytes, seq: this.seq, expiresAt: now + this.ttlMs } : undefined
    this.published.whole++
    try {
      const { recipients } = await this.pubsub.publish(ANNOUNCE_TOPIC, bytes)
      log.debug(`announced ${models.length - skipped.length} model(s), seq ${this.seq}, to ${recipients.length} peer(s)`)
    } catch (err: any) {
      log.debug(`announcing failed: ${err.message}`)
    }
  }
}
