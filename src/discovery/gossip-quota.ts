/**
 * How many providers of one model gossip it at scale (protocols/README.md "Quota").
 * Every provider of a model m draws a fixed ticket, the first 8 bytes of
 * sha256(peer id bytes ‖ "/" ‖ model id) read as a fraction of 2^64; the `quota`
 * lowest tickets announce m on its shard, everyone else stays quiet (still in the
 * DHT, still serving). So a popular model costs its shard's subscribers `quota`
 * announcers, not thousands. When an announcer goes, the quiet ones notice a
 * vacancy; each waits ticket × fillWindowMs × (announcers left / quota) before filling it (the lowest ticket
 * goes first, and the rest see it and stay quiet), so a vacancy costs about one
 * message, not one per quiet provider.
 */
import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { modelId } from '../models/index.js'

export const DEFAULT_QUOTA = 8
export const DEFAULT_FILL_WINDOW_MS = 10 * 60_000

/** the ticket of `peerId` for `model`, in [0, 1) */
export function quotaTicket (peerId: string, model: string): number {
  const h = createHash('sha256').update(peerIdFromString(peerId).toMultihash().bytes).update(`/${modelId(model)}`).digest()
  return Number(h.readBigUInt64BE(0) >> 11n) / 2 ** 53
}

export interface QuotaDecision {
  announce: boolean
  /** when quiet: at this time a re-check may let us fill a vacancy */
  recheckAt?: number
}

export class GossipQuota {
  private readonly selfId: string
  private readonly quota: number
  private readonly fillWindowMs: number
  /** model id → when we first saw fewer than `quota` announcers while quiet */
  private readonly vacancySince = new Map<string, number>()

  constructor (opts: { selfId: string, quota?: number, fillWindowMs?: number }) {
    this.selfId = opts.selfId
    this.quota = opts.quota ?? DEFAULT_QUOTA
    this.fillWindowMs = opts.fillWindowMs ?? DEFAULT_FILL_WINDOW_MS
  }

  /**
   * Whether we announce `model`, given the other peers that announce it now and
   * whether we do already.
   */
  decide (model: string, announcers: string[], announcing: boolean, now: number): QuotaDecision {
    const key = modelId(model)
    const mine = quotaTicket(this.selfId, model)
    const lower = announcers.filter(p => p !== this.selfId && quotaTicket(p, model) < mine).length
    if (announcing) {
      this.vacancySince.delete(key)
      return { announce: lower < this.quota }
    }
    const others = announcers.filter(p => p !== this.selfId).length
    // among the lowest tickets: our place, at once
    if (lower < this.quota && others >= this.quota) return { announce: true }
    if (others >= this.quota) {
      this.vacancySince.delete(key)
      return { announce: false }
    }
    // a vacancy: fill it after our ticket's share of the window (at once when nobody
    // announces the model at all: then there is no herd of quiet providers to fear)
    const since = this.vacancySince.get(key) ?? now
    this.vacancySince.set(key, since)
    const due = since + Math.floor(mine * this.fillWindowMs * others / this.quota)
    if (now >= due) {
      this.vacancySince.delete(key)
      return { announce: true }
    }
    return { announce: false, recheckAt: due }
  }
}
