/**
 * GET /krill/v1/ledger and GET /krill/v1/balance: this node's receipts and what it
 * and each peer served each other (src/receipts/). Every ledger entry carries the
 * exact signed bytes and both signatures (base64), so anyone can verify it with the
 * two peer ids alone (protocols/README.md, "Receipts").
 */
import type { FastifyInstance } from 'fastify'

export interface TokenCountsAnswer { prompt: number, completion: number, total: number }

export interface LedgerEntryAnswer {
  id: string
  role: 'provider' | 'consumer'
  peer: string
  status: 'signed' | 'disputed' | 'refused' | 'unreceipted'
  kind: 'chat' | 'embed'
  consumer: string
  provider: string
  model: string
  modelDigest: string
  promptTokens: number
  completionTokens: number
  startedAt: string
  finishedAt: string
  recordedAt: string
  nonce?: string
  signedBytes?: string
  providerSignature?: string
  consumerSignature?: string
  reason?: string
}

export interface LedgerAnswer {
  entries: LedgerEntryAnswer[]
}

export interface PeerBalanceAnswer {
  peer: string
  servedThem: TokenCountsAnswer
  servedUs: TokenCountsAnswer
  net: number
  requests: { servedThem: number, servedUs: number }
  receipts: Record<LedgerEntryAnswer['status'], number>
  /** decayed tokens given / taken and the score in (-1, 1) that orders our queue */
  standing: { given: number, taken: number, score: number }
}

export interface BalanceAnswer {
  peers: PeerBalanceAnswer[]
  totals: { servedThem: TokenCountsAnswer, servedUs: TokenCountsAnswer, net: number, disputes: number, unreceipted: number }
  /** tokens peers served us today (UTC) against budget.tokensPerDay */
  today: { tokens: number, cap: number | null, resetsAt: string }
}

/** What the routes need from the receipt book. */
export interface LedgerPort {
  entries: (opts: { peer?: string, limit?: number }) => Promise<LedgerEntryAnswer[]>
  balance: () => Omit<BalanceAnswer, 'today'>
  today: () => BalanceAnswer['today']
}

const MAX_LIMIT = 10_000

export function registerLedgerRoutes (app: FastifyInstance, port: LedgerPort): void {
  app.get('/krill/v1/ledger', async (request, reply) => {
    const q = request.query as Record<string, unknown>
    const limit = q.limit == null ? 100 : Number(q.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      return await reply.code(400).send({ error: { message: `limit must be an integer from 1 to ${MAX_LIMIT}`, code: 'bad_request' } })
    }
    const peer = typeof q.peer === 'string' && q.peer !== '' ? q.peer : undefined
    if (peer != null && !/^[1-9A-HJ-NP-Za-km-z]{10,128}$/.test(peer)) {
      return await reply.code(400).send({ error: { message: `"${peer.slice(0, 64)}" is not a peer id`, code: 'bad_request' } })
    }
    const answer: LedgerAnswer = { entries: await port.entries({ peer, limit }) }
    return answer
  })

  app.get('/krill/v1/balance', async (): Promise<BalanceAnswer> => ({ ...port.balance(), today: port.today() }))
}
