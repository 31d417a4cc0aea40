/**
 * Unknown routes answer in their caller's dialect: OpenAI's error object under /v1/
 * (set by the OpenAI routes themselves), Ollama's {"error": "…"} everywhere else,
 * never the web framework's default body that clients cannot show.
 */
import type { FastifyInstance } from 'fastify'

export function registerDialectNotFound (app: FastifyInstance): void {
  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0]
    const hint = path.startsWith('/api/')
      ? 'krill answers /api/tags, /api/show, /api/ps, /api/version, /api/chat, /api/generate, /api/embed and /api/embeddings'
      : 'krill answers the Ollama API under /api/, the OpenAI API under /v1/ and its own under /krill/v1/'
    return await reply.code(404).send({ error: `unknown endpoint ${request.method} ${path}: ${hint}` })
  })
}
