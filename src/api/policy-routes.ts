/**
 * GET/PUT /krill/v1/policy: the live peer policy (see src/policy/). PUT replaces the
 * whole policy, writes policy.json and applies it to the next request; an invalid
 * body changes nothing and gets a 400 saying what is wrong.
 */
import type { FastifyInstance } from 'fastify'
import { PolicyError, type PeerPolicy } from '../policy/peer-policy.js'
import type { PolicyStats, PolicyStore } from '../policy/policy-store.js'

export interface PolicyAnswer {
  policy: PeerPolicy
  /** the file that holds it */
  path: string
  /** a swarm key is set: only swarm members can connect, and chats are served only over key-protected connections */
  privateSwarm: boolean
  /** why the last edit of the file was not applied (the policy shown stayed in force) */
  lastError: string | null
  stats: PolicyStats
}

function answer (store: PolicyStore): PolicyAnswer {
  return { policy: store.policy, path: store.path, privateSwarm: store.privateSwarm, lastError: store.lastError ?? null, stats: { ...store.stats } }
}

export function registerPolicyRoutes (app: FastifyInstance, store: PolicyStore): void {
  app.get('/krill/v1/policy', async (): Promise<PolicyAnswer> => answer(store))

  app.put('/krill/v1/policy', async (request, reply) => {
    try {
      await store.replace(request.body)
    } catch (err) {
      if (err instanceof PolicyError) {
        return await reply.code(400).send({ error: { message: `invalid policy: ${err.message}; send {"serve": {"allow": [...], "deny": [...]}, "consume": {...}}`, code: 'bad_policy' } })
      }
      throw err
    }
    return answer(store)
  })
}
