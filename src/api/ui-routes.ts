/**
 * GET /ui/: the web console. A fixed set of static files read once at start-up
 * (never a path from the request), served with a strict Content-Security-Policy:
 * the page may load only its own scripts and talk only to this daemon.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'

export interface UiRoutesDeps {
  /** folder with index.html and the page's modules and styles */
  assetsDir: string
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon'
}

const SAFE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/

export const UI_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache'
}

interface Asset { body: Buffer, type: string }

function loadAssets (dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)]
    if (type == null || !SAFE_NAME.test(name)) continue
    assets.set(name, { body: readFileSync(join(dir, name)), type })
  }
  if (!assets.has('index.html')) throw new Error(`${dir} has no index.html`)
  return assets
}

/** Paths under /ui/ are the console's static files (no data: they need no token). */
export function isUiAsset (url: string): boolean {
  return url === '/ui' || url.startsWith('/ui/') || url.startsWith('/ui?')
}

export function registerUiRoutes (app: FastifyInstance, deps: UiRoutesDeps): void {
  const assets = loadAssets(deps.assetsDir)
  const send = (name: string, reply: any): unknown => {
    const asset = assets.get(name)
    if (asset == null) return reply.code(404).headers(UI_HEADERS).type('text/plain; charset=utf-8').send(`no such file in the console: ${name.slice(0, 64)}`)
    return reply.headers(UI_HEADERS).type(asset.type).send(asset.body)
  }
  app.get('/ui', async (_request, reply) => await reply.redirect('/ui/'))
  app.get('/ui/', async (_request, reply) => send('index.html', reply))
  app.get<{ Params: { file: string } }>('/ui/:file', async (request, reply) => send(request.params.file, reply))
}
