/**
 * Peer policy: who may use this node's GPU (serve) and whom this node sends its
 * prompts to (consume). Each side has an optional allow-list and a deny-list of peer
 * ids:
 *
 * - no `allow` (the default): every peer, except those denied;
 * - `allow: [...]`: only these peers, except those denied (`allow: []`: nobody);
 * - `deny` always wins.
 *
 * The policy is plain data, validated here whether it comes from policy.json or from
 * the control API; peer ids are parsed and stored in their canonical string form, so
 * a CID-encoded id and its base58 form count as the same peer.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'

export interface PeerList {
  /** undefined: everyone not denied */
  allow?: string[]
  deny: string[]
}

export interface PeerPolicy {
  /** peers that may send us chat requests */
  serve: PeerList
  /** peers our router may send chat requests to */
  consume: PeerList
}

export type PolicySide = keyof PeerPolicy

export const OPEN_POLICY: Readonly<PeerPolicy> = Object.freeze({
  serve: Object.freeze({ deny: [] }),
  consume: Object.freeze({ deny: [] })
}) as Readonly<PeerPolicy>

/** far more than any hand-written list; keeps a pasted file from eating memory */
export const MAX_PEERS_PER_LIST = 10_000

const peerId = z.string().max(256).transform((value, ctx) => {
  try {
    return peerIdFromString(value.trim()).toString()
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${value.length > 80 ? value.slice(0, 80) + '…' : value}" is not a peer id (they look like 12D3KooW…; see \`krill peers\`)` })
    return z.NEVER
  }
})

const peerList = z.array(peerId).max(MAX_PEERS_PER_LIST)

const sideSchema = z.object({
  allow: peerList.nullable().optional(),
  deny: peerList.optional()
}).strict()

const policySchema = z.object({
  serve: sideSchema.optional(),
  consume: sideSchema.optional()
}).strict()

export class PolicyError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'PolicyError'
  }
}

function side (input: z.infer<typeof sideSchema> | undefined): PeerList {
  const out: PeerList = { deny: [...new Set(input?.deny ?? [])] }
  if (input?.allow != null) out.allow = [...new Set(input.allow)]
  return out
}

/** Validates a policy from JSON; throws PolicyError naming the first problem. */
export function parsePolicy (input: unknown): PeerPolicy {
  const parsed = policySchema.safeParse(input)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue.path.length > 0 ? `"${issue.path.join('.')}": ` : ''
    throw new PolicyError(`${where}${issue.message}`)
  }
  return { serve: side(parsed.data.serve), consume: side(parsed.data.consume) }
}

/** The policy as lookups: lists become sets so a long list costs nothing per request. */
export class CompiledPolicy {
  readonly policy: PeerPolicy
  private readonly sets: Record<PolicySide, { allow?: Set<string>, deny: Set<string> }>

  constructor (policy: PeerPolicy) {
    this.policy = policy
    const compile = (l: PeerList): { allow?: Set<string>, deny: Set<string> } =>
      ({ deny: new Set(l.deny), ...(l.allow != null ? { allow: new Set(l.allow) } : {}) })
    this.sets = { serve: compile(policy.serve), consume: compile(policy.consume) }
  }

  /** undefined when allowed; otherwise a reason fit for a log line */
  check (sideName: PolicySide, peer: string): string | undefined {
    const s = this.sets[sideName]
    if (s.deny.has(peer)) return `peer ${peer} is on the ${sideName} deny-list`
    if (s.allow != null && !s.allow.has(peer)) return `peer ${peer} is not on the ${sideName} allow-list`
    return undefined
  }
}
