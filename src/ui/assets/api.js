// Talking to the daemon that served this page: the control API, the live event
// feed and the OpenAI-compatible chat. When the API needs a bearer token, open the
// console as /ui/#token=<token>: the token stays in this tab (never in the URL
// sent to the server) and goes along with every call.

const TOKEN_KEY = 'krill-token'

function takeToken () {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash)
  if (match != null) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]))
    history.replaceState(null, '', location.pathname + location.search)
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

const token = takeToken()

export function headers (extra = {}) {
  return token != null ? { ...extra, authorization: `Bearer ${token}` } : extra
}

/** GET a control route; null when this daemon does not have it (404). */
export async function getJson (path, signal) {
  const res = await fetch(path, { headers: headers(), signal })
  if (res.status === 404) return null
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
  return await res.json()
}

/** Reads a text/event-stream body, calling onData with each message's data. */
export async function readSse (res, onData) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = block.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n')
      if (data !== '') onData(data)
    }
  }
}

/**
 * The live feed (GET /krill/v1/events) with reconnects. fetch rather than
 * EventSource: EventSource cannot send the bearer token.
 */
export function openFeed ({ onMessage, onState }) {
  let stopped = false
  let delay = 500
  const run = async () => {
    while (!stopped) {
      onState('connecting')
      try {
        const res = await fetch('/krill/v1/events', { headers: headers({ accept: 'text/event-stream' }) })
        if (res.status === 401) {
          // retrying cannot help: this API wants its token
          onState('unauthorized')
          return
        }
        if (!res.ok) throw new Error(`HTTP ${res.status}`)
        onState('live')
        delay = 500
        await readSse(res, data => {
          try { onMessage(JSON.parse(data)) } catch (err) { console.error('bad event', err) }
        })
      } catch (err) {
        console.warn('event feed:', err)
      }
      if (stopped) return
      onState('down')
      await new Promise(resolve => setTimeout(resolve, delay))
      delay = Math.min(delay * 2, 5000)
    }
  }
  void run()
  return () => { stopped = true }
}

/**
 * Streams one chat through the local OpenAI-compatible API. Calls onDelta with
 * each piece of text; resolves with who served it, the time to first token and
 * the usage the daemon reported.
 */
export async function streamChat ({ model, messages, signal, onDelta }) {
  const started = performance.now()
  const res = await fetch('/v1/chat/completions', {
    method: 'POST',
    headers: headers({ 'content-type': 'application/json', accept: 'text/event-stream' }),
    body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true } }),
    signal
  })
  if (!res.ok) {
    let message = `HTTP ${res.status}`
    try { message = (await res.json())?.error?.message ?? message } catch {}
    throw new Error(message)
  }
  const provider = res.headers.get('x-krill-provider')
  let firstAt = null
  let usage = null
  let finish = null
  let text = ''
  await readSse(res, data => {
    if (data === '[DONE]') return
    const chunk = JSON.parse(data)
    if (chunk.error != null) throw new Error(chunk.error.message ?? 'the provider failed')
    if (chunk.usage != null) usage = chunk.usage
    for (const choice of chunk.choices ?? []) {
      const piece = choice.delta?.content ?? ''
      if (piece !== '') {
        firstAt ??= performance.now()
        text += piece
        onDelta(piece)
      }
      if (choice.finish_reason != null) finish = choice.finish_reason
    }
  })
  const ended = performance.now()
  return { text, provider, usage, finish, ttftMs: firstAt != null ? firstAt - started : null, durationMs: ended - started, firstAt, ended }
}
