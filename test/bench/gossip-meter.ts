/**
 * Counts the gossipsub bytes a node receives, at the pubsub layer: every inbound
 * RPC passes through GossipSub.decodeRpc(bytes) (the implementation's method, not
 * the interface's), so wrapping it sees each RPC's exact encoded size. The size is
 * split into published messages (by topic, first copies and duplicates apart),
 * control (IHAVE / IWANT / GRAFT / PRUNE / IDONTWANT) and subscriptions by
 * re-encoding each part with gossipsub's own codec. The length prefix of each RPC
 * (1–3 bytes) is added to the total; noise / yamux framing below is not counted.
 *
 * krill puts nothing but discovery announcements on gossipsub, so every byte
 * counted here is discovery traffic.
 */
import { RPC } from '@libp2p/gossipsub/message'

export interface GossipCounts {
  /** every received RPC, length prefix included */
  totalBytes: number
  rpcs: number
  /** published messages, by the encoded size of each RPC.Message */
  messageBytes: number
  messages: number
  /** messages whose (from, seqno) this node had already received */
  duplicates: number
  duplicateBytes: number
  /** IHAVE / IWANT / GRAFT / PRUNE / IDONTWANT */
  controlBytes: number
  ihaveIds: number
  subscriptionBytes: number
  /** message bytes by topic */
  byTopic: Record<string, number>
}

export function emptyCounts (): GossipCounts {
  return { totalBytes: 0, rpcs: 0, messageBytes: 0, messages: 0, duplicates: 0, duplicateBytes: 0, controlBytes: 0, ihaveIds: 0, subscriptionBytes: 0, byTopic: {} }
}

function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 128); len++ }
  return len
}

/** Adds `b` into `a` (for totals over nodes). */
export function addCounts (a: GossipCounts, b: GossipCounts): GossipCounts {
  const out = { ...a, byTopic: { ...a.byTopic } }
  for (const k of ['totalBytes', 'rpcs', 'messageBytes', 'messages', 'duplicates', 'duplicateBytes', 'controlBytes', 'ihaveIds', 'subscriptionBytes'] as const) out[k] += b[k]
  for (const [t, n] of Object.entries(b.byTopic)) out.byTopic[t] = (out.byTopic[t] ?? 0) + n
  return out
}

export class GossipMeter {
  counts: GossipCounts = emptyCounts()
  private readonly seen = new Set<string>()
  private readonly target: { decodeRpc: (bytes: Uint8Array) => RPC }
  private readonly original: (bytes: Uint8Array) => RPC

  /** `pubsub`: a node's libp2p.services.pubsub (a GossipSub instance) */
  constructor (pubsub: unknown) {
    this.target = pubsub as { decodeRpc: (bytes: Uint8Array) => RPC }
    if (typeof this.target.decodeRpc !== 'function') throw new Error('this gossipsub has no decodeRpc to meter')
    this.original = this.target.decodeRpc
    const decode = this.original.bind(this.target)
    this.target.decodeRpc = (bytes: Uint8Array): RPC => {
      const rpc = decode(bytes)
      this.count(bytes.byteLength, rpc)
      return rpc
    }
  }

  /** Starts a new window: the counts go back to zero (the seen set stays, so later copies stay duplicates). */
  reset (): GossipCounts {
    const out = this.counts
    this.counts = emptyCounts()
    return out
  }

  detach (): void {
    this.target.decodeRpc = this.original
  }

  private count (size: number, rpc: RPC): void {
    const c = this.counts
    c.rpcs++
    c.totalBytes += size + varintLength(size)
    for (const m of rpc.messages) {
      const len = RPC.Message.encode(m).byteLength
      const key = `${Buffer.from(m.from ?? []).toString('hex')}/${Buffer.from(m.seqno ?? []).toString('hex')}`
      c.messages++
      c.messageBytes += len
      c.byTopic[m.topic] = (c.byTopic[m.topic] ?? 0) + len
      if (this.seen.has(key)) {
        c.duplicates++
        c.duplicateBytes += len
      } else {
        if (this.seen.size > 100_000) this.seen.clear()
        this.seen.add(key)
      }
    }
    if (rpc.control != null) {
      c.controlBytes += RPC.ControlMessage.encode(rpc.control).byteLength
      for (const ih of rpc.control.ihave) c.ihaveIds += ih.messageIDs.length
    }
    for (const s of rpc.subscriptions) c.subscriptionBytes += RPC.SubOpts.encode(s).byteLength
  }
}
