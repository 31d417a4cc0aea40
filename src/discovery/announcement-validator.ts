/**
 * The gossipsub topic validator for krill/models/1: every announcement that reaches
 * this node is judged here before it is delivered or forwarded to anyone.
 *
 * - Reject (the sending peer is penalized by gossipsub scoring): unsigned, malformed,
 *   oversized, or out-of-bounds announcements — an honest krill node never sends those.
 * - Ignore (dropped, not forwarded, no penalty): replays and stale copies (seq not
 *   above the last accepted one), expired ones, our own, valid announcements of
 *   authors over their rate.
 * - Accept: applied to the provider table and forwarded.
 *
 * Signatures are checked by gossipsub itself (StrictSign): a message whose signature
 * does not match its `from` never gets here. The author is always the signer
 * (`from`), never the peer that relayed it.
 */
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { logger } from '../log.js'
import { decodeAnnouncement, DEFAULT_ANNOUNCEMENT_LIMITS, type AnnouncementLimits } from './announcement.js'
import type { ProviderTable, SignedAnnouncement } from './provider-table.js'
import { PeerRateLimiter, type RateLimitOptions } from '../limits/index.js'
import { modelShard, topicShard } from './shards.js'

/** the whole-list topic (small swarms, and every krill before shards) */
export const ANNOUNCE_TOPIC = 'krill/models/1'

const log = logger('discovery')

export interface ValidationStats {
  accepted: number
  rejected: number
  ignored: number
  rejectedByReason: Record<string, number>
  ignoredByReason: Record<string, number>
}

export interface AnnouncementValidatorOptions {
  table: ProviderTable
  limits?: AnnouncementLimits
  /**
   * Per-author announcement rate. Our own announcer sends at most one per second, so
   * the default (bursts of 10, 60 a minute) never touches honest peers.
   */
  rateLimit?: Omit<RateLimitOptions, 'now'>
  now?: () => number
}

export interface Judgement {
  result: TopicValidatorResult
  reason?: string
  detail?: string
}

export class AnnouncementValidator {
  /** what arrived by gossip */
  readonly stats: ValidationStats = emptyStats()
  /** what the sync exchange handed on (judged the same way, counted apart) */
  readonly syncStats: ValidationStats = emptyStats()
  private readonly table: ProviderTable
  private readonly limits: AnnouncementLimits
  private readonly rate: PeerRateLimiter
  private readonly now: () => number
  /** per-author log throttle, so a flood does not flood the log too */
  private readonly loggedAt = new Map<string, number>()

  constructor (opts: AnnouncementValidatorOptions) {
    this.table = opts.table
    this.limits = opts.limits ?? DEFAULT_ANNOUNCEMENT_LIMITS
    this.now = opts.now ?? Date.now
    this.rate = new PeerRateLimiter({ burst: 10, perMinute: 60, ...opts.rateLimit, now: this.now })
  }

  /** The function for `pubsub.topicValidators.set(topic, …)`. */
  readonly validate = (_propagationSource: unknown, msg: Message): TopicValidatorResult => {
    return this.count(msg, this.judge(msg), this.stats)
  }

  /**
   * Judges an announcement the sync exchange handed on (its signature already
   * checked against its author), exactly as gossip is judged; kept no longer than
   * `remainingMs`.
   */
  validateSynced (msg: Message, remainingMs: number): TopicValidatorResult {
    return this.count(msg, this.judge(msg, remainingMs), this.syncStats)
  }

  private count (msg: Message, judgement: Judgement, stats: ValidationStats): TopicValidatorResult {
    const author = msg.type === 'signed' ? msg.from.toString() : '(unsigned)'
    if (judgement.result === TopicValidatorResult.Accept) {
      stats.accepted++
    } else if (judgement.result === TopicValidatorResult.Reject) {
      stats.rejected++
      bump(stats.rejectedByReason, judgement.reason as string)
      this.logOnce(author, `rejected announcement from ${author}: ${judgement.reason} (${judgement.detail ?? ''})`)
    } else {
      stats.ignored++
      bump(stats.ignoredByReason, judgement.reason as string)
      log.debug(`ignored announcement from ${author}: ${judgement.reason} (${judgement.detail ?? ''})`)
    }
    return judgement.result
  }

  judge (msg: Message, remainingMs?: number): Judgement {
    // StrictSign already drops these; kept so a config change cannot open the door
    if (msg.type !== 'signed' || msg.from == null) return reject('unsigned', 'announcements must be signed by their author')
    const author = msg.from.toString()
    // Decoding first (cheap: at most 64 KiB, and gossipsub has checked the signature
    // already): garbage is always Rejected, so its sender's score keeps falling even
    // while it is over its rate; only well-formed announcements count against the rate.
    const shard = topicShard(msg.topic)
    if (shard == null && msg.topic !== ANNOUNCE_TOPIC) return reject('bad-topic', `${msg.topic.slice(0, 40)} is no announcement topic`)
    const decoded = decodeAnnouncement(msg.data, this.now(), this.limits)
    if (!decoded.ok) {
      return decoded.verdict === 'reject' ? reject(decoded.reason, decoded.detail) : ignore(decoded.reason, decoded.detail)
    }
    // a shard's announcement lists that shard's models only
    const stray = shard == null ? undefined : decoded.announcement.models.find(m => modelShard(m.name) !== shard)
    if (stray != null) return reject('wrong-shard', `${stray.name} belongs to shard ${modelShard(stray.name)}, not ${String(shard)}`)
    // the rate is per author and topic: an author may refresh each of its shards
    if (!this.rate.take(shard == null ? author : `${author}#${shard}`)) return ignore('rate-limited', 'author is over its announcement rate')
    const applied = this.table.applyAnnouncement(author, decoded.announcement, { signed: signedOriginal(msg), remainingMs, ...(shard != null ? { shard } : {}) })
    if (!applied.ok) return ignore(applied.reason, applied.detail)
    return { result: TopicValidatorResult.Accept }
  }

  private logOnce (author: string, line: string): void {
    const now = this.now()
    if ((this.loggedAt.get(author) ?? -Infinity) > now - 60_000) return
    if (this.loggedAt.size >= 1_000) this.loggedAt.clear()
    this.loggedAt.set(author, now)
    log.warn(line)
  }
}

/** gossipsub's fields of a signed message, as its author signed them */
function signedOriginal (msg: Message & { type: 'signed' }): SignedAnnouncement {
  const seqno = new Uint8Array(8)
  new DataView(seqno.buffer).setBigUint64(0, BigInt.asUintN(64, msg.sequenceNumber), false)
  const from = msg.from.toMultihash().bytes
  // an identity-multihash peer id (Ed25519) embeds its key: no need to send it again
  const embedded = msg.from.publicKey != null
  return { from, data: msg.data, seqno, signature: msg.signature, ...(embedded ? {} : { key: publicKeyToProtobuf(msg.key) }) }
}

function emptyStats (): ValidationStats {
  return { accepted: 0, rejected: 0, ignored: 0, rejectedByReason: {}, ignoredByReason: {} }
}

function bump (counts: Record<string, number>, reason: string): void {
  counts[reason] = (counts[reason] ?? 0) + 1
}

function reject (reason: string, detail: string): Judgement {
  return { result: TopicValidatorResult.Reject, reason, detail }
}

function ignore (reason: string, detail: string): Judgement {
  return { result: TopicValidatorResult.Ignore, reason, detail }
}
