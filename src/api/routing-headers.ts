/**
 * Who answers: `x-krill-peer: <peer id | local>` on a request sends it to that peer
 * only; `x-krill-provider: <peer id | local>` on every answer names who served it.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { HttpError } from './http-errors.js'

export const PEER_HEADER = 'x-krill-peer'
export const PROVIDER_HEADER = 'x-krill-provider'

/** The pinned peer of a request: undefined when none, "local" or a peer id; 400 for anything else. */
export function pinnedPeer (request: FastifyRequest): string | undefined {
  const raw = request.headers[PEER_HEADER]
  if (raw == null) return undefined
  const value = (Array.isArray(raw) ? raw[0] : raw).trim()
  if (value === '') return undefined
  if (value === 'local') return value
  try {
    return peerIdFromString(value).toString()
  } catch {
    throw new HttpError(400, `${PEER_HEADER} must be a peer id (12D3Koo…) or "local", got "${value.slice(0, 80)}"`, { code: 'invalid_peer' })
  }
}

/** The x-krill-provider value for a provider: "local" for this node. */
export function providerName (peerId: string, local: boolean): string {
  return local ? 'local' : peerId
}

/** Records who delivered an answer (the last one to start delivering wins). */
export class ProviderTracker {
  current = ''
  readonly onProvider = (peerId: string, local: boolean): void => { this.current = providerName(peerId, local) }
}

/**
 * Answers this node gives itself (model lists, /api/ps, /api/version, the control
 * API) say so: `x-krill-provider: local`, unless a route named a peer already.
 * Errors carry no provider: nobody served them.
 */
export function registerProviderDefault (app: FastifyInstance): void {
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 && !reply.hasHeader(PROVIDER_HEADER)) void reply.header(PROVIDER_HEADER, 'local')
    return payload
  })
}
