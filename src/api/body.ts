/**
 * Request-body handling shared by the OpenAI and Ollama routes: JSON whatever the
 * Content-Type says (curl -d sends form encoding, Ollama accepts anything), and one
 * error handler per API so that body-too-large, malformed JSON and validation
 * failures come back in that API's own error shape.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { describeError, type DescribedError } from './http-errors.js'
import { logger } from '../log.js'

const log = logger('api')

export function acceptJsonBodies (scope: FastifyInstance): void {
  // fetch() sends a string body as text/plain, which fastify would hand over unparsed
  scope.removeContentTypeParser('text/plain')
  scope.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') {
      done(null, undefined)
      return
    }
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
}

/** Sends every error of `scope` through `shape`; the daemon keeps serving. */
export function shapeErrors (scope: FastifyInstance, shape: (d: DescribedError, body: unknown) => unknown): void {
  scope.setErrorHandler(async (err, request, reply: FastifyReply) => {
    const d = describeError(err)
    if (d.status >= 500) log.warn(`${request.method} ${request.url}: ${d.status} ${err instanceof Error ? err.message : String(err)}`)
    else log.debug(`${request.method} ${request.url}: ${d.status} ${d.message}`)
    if (reply.sent || reply.raw.headersSent) return
    return await reply.code(d.status).send(shape(d, request.body))
  })
}
