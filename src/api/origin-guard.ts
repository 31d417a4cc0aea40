/**
 * Web pages must not drive the local API. Any site the user visits can send
 * requests to 127.0.0.1:11435 from the browser (form posts and no-cors fetches need no
 * permission), and with DNS rebinding a hostile domain can even read the answers. So:
 *
 * - a request whose Origin header names a foreign web origin is refused: real krill
 *   clients (SDKs, curl, Ollama clients, Open WebUI's server side) send no Origin, or
 *   a loopback one;
 * - on a loopback-bound API, the Host header must name a loopback host: a rebinding
 *   attack arrives with the attacker's domain in Host.
 *
 * An API bound beyond loopback requires a bearer token already, which a web page
 * cannot guess; the Host check is skipped there (clients use whatever name they like),
 * and the web console served by the API itself may call it (its Origin is the
 * API's own, as the Host header names it; its calls still carry the token).
 */
import type { FastifyInstance } from 'fastify'
import { logger } from '../log.js'
import { isLoopbackHostHeader } from '../peers/index.js'
import { BreachLog } from '../protocol/breach-log.js'

const log = logger('api')

/** what Ollama allows by default besides loopback: desktop app shells and editor webviews */
const APP_ORIGIN = /^(app|tauri|vscode-webview|vscode-file):\/\//i

function loopbackOrigin (origin: string): boolean {
  try {
    const url = new URL(origin)
    return (url.protocol === 'http:' || url.protocol === 'https:') && isLoopbackHostHeader(url.host)
  } catch {
    return false
  }
}

function sameOriginAs (origin: string, host: string | undefined): boolean {
  try {
    return host != null && new URL(origin).host.toLowerCase() === host.toLowerCase()
  } catch {
    return false
  }
}

export function registerOriginGuard (app: FastifyInstance, opts: { loopbackOnly: boolean, sameOrigin?: boolean }): void {
  // a page that keeps trying must not flood the log: one line per origin a minute
  const breaches = new BreachLog(log)
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin
    if (origin != null && !loopbackOrigin(origin) && !APP_ORIGIN.test(origin) && !(opts.sameOrigin === true && sameOriginAs(origin, request.headers.host))) {
      breaches.note(origin.slice(0, 100), 'origin', `refused ${request.method} ${request.url.slice(0, 100)} from a web page (Origin ${origin.slice(0, 100)})`)
      return await reply.code(403).send({ error: { message: `requests from web pages are refused (Origin ${origin.slice(0, 100)}): call the krill API from a program, not from a browser page`, type: 'permission_error', code: 'forbidden_origin' } })
    }
    if (opts.loopbackOnly && !isLoopbackHostHeader(request.headers.host ?? '')) {
      breaches.note((request.headers.host ?? '').slice(0, 100), 'host', `refused ${request.method} ${request.url.slice(0, 100)} for Host ${(request.headers.host ?? '').slice(0, 100)}: not a loopback name (DNS rebinding?)`)
      return await reply.code(403).send({ error: { message: `Host "${(request.headers.host ?? '').slice(0, 100)}" is not a loopback name: use http://127.0.0.1:<port> or http://localhost:<port>`, type: 'permission_error', code: 'forbidden_host' } })
    }
  })
}
