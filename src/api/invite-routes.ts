/**
 * POST /krill/v1/invite: a token for one more node to join this node's private
 * swarm. Body: {} or {"expiresInMs": N} (1 s … 1 year). Answer:
 * {"token": "krill-invite-v1-…", "expires": ms since the epoch | null, "addrs": [...]}.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'

export interface InvitePort {
  createInvite: (opts: { expiresInMs?: number }) => Promise<{ token: string, expires: number | null, addrs: string[] }>
}

const bodySchema = z.object({
  expiresInMs: z.number().int().min(1_000).max(366 * 24 * 3_600_000).optional()
}).strict()

export function registerInviteRoutes (app: FastifyInstance, port: InvitePort): void {
  app.post('/krill/v1/invite', async (request, reply) => {
    const parsed = bodySchema.safeParse(request.body ?? {})
    if (!parsed.success) {
      return await reply.code(400).send({ error: { message: 'send {} or {"expiresInMs": N} with N from 1000 to a year in ms', code: 'bad_request' } })
    }
    try {
      return await port.createInvite(parsed.data)
    } catch (err: any) {
      return await reply.code(409).send({ error: { message: String(err?.message ?? err), code: 'no_invite' } })
    }
  })
}
