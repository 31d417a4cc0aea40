// The krill console: one live picture of this node and its swarm, fed by the
// daemon's event stream (GET /krill/v1/events: its events plus a snapshot every
// few seconds), and a chat box that streams through the local API.
import { openFeed } from './api.js'
import { setupChat } from './chat.js'
import { drawSwarm, formatMs, shortId } from './graph.js'

/** the same speed the daemon's request log reports: tokens after the first, per second */
function tokensPerSecond (tokens, durationMs, ttftMs) {
  if (tokens <= 0) return null
  if (ttftMs != null && tokens > 1 && durationMs > ttftMs) return (tokens - 1) / ((durationMs - ttftMs) / 1000)
  return durationMs > 0 ? tokens / (durationMs / 1000) : null
}

const $ = id => document.getElementById(id)

const state = {
  snapshot: null,
  /** events since the last snapshot, newest last (shown until the next snapshot says the same) */
  pending: []
}

function h (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue
    if (key === 'class') node.className = value
    else node.setAttribute(key, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return node
}

function fill (tbody, rows) { tbody.replaceChildren(...rows) }

export function formatBytes (n) {
  if (!Number.isFinite(n) || n <= 0) return '–'
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let i = 0
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++ }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`
}

function formatDuration (ms) {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${s % 60}s`
  const hours = Math.floor(m / 60)
  if (hours < 48) return `${hours}h ${m % 60}m`
  return `${Math.floor(hours / 24)}d ${hours % 24}h`
}

function formatContext (n) {
  if (!Number.isFinite(n) || n <= 0) return '–'
  return n >= 1024 ? `${Math.round(n / 1024)}k` : String(n)
}

function timeAgo (at) {
  const s = Math.max(0, Math.round((Date.now() - at) / 1000))
  if (s < 5) return 'just now'
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  return new Date(at).toLocaleTimeString()
}

function who (peerId, selfId, finished = false) {
  if (peerId == null || peerId === '') return h('span', { class: 'muted' }, finished ? 'nobody' : 'choosing…')
  if (peerId === selfId || peerId === 'local') return h('span', { class: 'tag here' }, 'this node')
  return h('code', { title: peerId }, shortId(peerId))
}

function renderTiles (s) {
  const st = s.status
  $('self-id').textContent = st.peerId
  $('self-id').title = st.addrs.join('\n')
  // { mode: 'private' | 'public', swarm: 'own' | 'joined' | 'file' | 'public' }
  const mode = typeof st.network === 'object' ? st.network?.mode : st.network
  const how = { own: 'this node\'s own', joined: 'joined by invite', file: 'swarm key file' }[st.network?.swarm]
  const pill = $('network')
  pill.textContent = mode === 'public' ? 'public network' : mode === 'private' ? `private swarm${how != null ? ` · ${how}` : ''}` : `krill ${st.version}`
  pill.className = `pill ${mode ?? ''}`
  $('version').textContent = `krill ${st.version}`
  $('t-peers').textContent = String(st.peers)
  $('t-conns').textContent = `${st.connections} connection${st.connections === 1 ? '' : 's'}`
  const models = s.models?.models ?? []
  $('t-models').textContent = String(models.length)
  $('t-served').textContent = st.models.length > 0 ? `${st.models.length} served here` : 'none served here'
  const r = st.requests
  const sharing = r.slots > 0 && st.models.length > 0
  $('t-load').textContent = sharing ? `${r.active}/${r.slots}` : 'none'
  $('t-load').title = sharing ? 'chats this node runs for peers / its chat slots' : ''
  $('t-queue').textContent = sharing ? `${r.queued} queued` : 'no models shared'
  $('t-routing').textContent = String(r.routing)
  const recent = s.requests?.recent ?? []
  $('t-recent').textContent = recent.length > 0 ? `${recent.length} recent` : 'none yet'
  const ollama = st.ollama
  const o = $('t-ollama')
  o.textContent = !ollama.serving ? 'not serving' : ollama.reachable === true ? 'reachable' : 'not found'
  o.className = !ollama.serving ? '' : ollama.reachable === true ? 'good' : 'warn'
  o.title = ollama.reachable === true ? 'this node shares its models' : 'this node uses the swarm but shares no models'
  $('t-ollama-url').textContent = ollama.url
  const nat = st.nat ?? {}
  $('t-reach').textContent = nat.reachable ? 'public' : (nat.relays?.length ?? 0) > 0 ? 'via relay' : 'not public'
  $('t-uptime').textContent = `DHT ${st.dht?.mode ?? '?'} · up ${formatDuration(st.uptimeMs)}`
}

function renderSwarm (s) {
  const peers = s.peers?.peers ?? []
  drawSwarm($('graph'), { selfId: s.status.peerId, selfModels: s.status.models, peers })
  $('graph-empty').hidden = peers.length > 0
  fill($('peers-table').tBodies[0], peers.map(p => h('tr', { 'data-peer': p.id },
    h('td', {}, h('code', { title: `${p.id}\n${p.addr}` }, shortId(p.id))),
    h('td', {}, h('span', { class: `tag ${p.type}`, title: p.relay != null ? `through relay ${p.relay}` : p.addr }, p.type), h('span', { class: 'muted' }, p.direction === 'inbound' ? 'in' : 'out')),
    h('td', { class: 'num' }, formatMs(p.latencyMs)),
    h('td', {}, (p.models ?? []).length > 0 ? p.models.map(m => h('span', { class: 'tag' }, m.name)) : h('span', { class: 'muted' }, '–')),
    h('td', { class: 'muted' }, p.agent ?? '–')
  )))
  $('peers-empty').hidden = peers.length > 0
}

function loadBar (capacity) {
  if (capacity == null || capacity.slots <= 0) return null
  const used = Math.min(1, (capacity.active + capacity.queued) / capacity.slots)
  const bar = h('span', { class: 'bar', title: `${capacity.active} of ${capacity.slots} slots busy, ${capacity.queued} queued` }, h('i'))
  bar.firstChild.style.width = `${Math.round(used * 100)}%`
  return bar
}

function renderModels (s) {
  const models = s.models?.models ?? []
  const self = s.status
  fill($('models-table').tBodies[0], models.map(m => {
    const info = m.model ?? {}
    const providers = s.providers?.[m.name]?.providers ?? []
    let slots = 0; let active = 0; let queued = 0
    for (const p of providers) { slots += p.capacity?.slots ?? 0; active += p.capacity?.active ?? 0; queued += p.capacity?.queued ?? 0 }
    if (m.servedHere) { slots += self.requests.slots; active += self.requests.active; queued += self.requests.queued }
    const capacity = slots > 0 ? { slots, active, queued } : null
    const who = [
      m.servedHere ? h('span', { class: 'tag here' }, 'this node') : null,
      ...providers.map(p => h('span', { class: 'tag', title: `${p.peerId}\n${p.version}\n${p.capacity?.active ?? 0}/${p.capacity?.slots ?? 0} busy` }, shortId(p.peerId)))
    ]
    if (providers.length === 0 && m.providers > 0) who.push(h('span', { class: 'muted' }, `${m.providers} peer${m.providers === 1 ? '' : 's'}`))
    return h('tr', { 'data-model': m.name },
      h('td', {}, h('b', {}, m.name), h('div', { class: 'muted' }, [info.family, info.parameterSize, info.quantization].filter(Boolean).join(' · '))),
      h('td', {}, formatBytes(info.size)),
      h('td', { class: 'num' }, formatContext(info.contextLength)),
      h('td', {}, who),
      h('td', {}, capacity != null ? [loadBar(capacity), h('span', { class: 'muted' }, `${capacity.active}/${capacity.slots}${capacity.queued > 0 ? ` +${capacity.queued}` : ''}`)] : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'num' }, formatMs(m.bestLatencyMs))
    )
  }))
  $('models-empty').hidden = models.length > 0
}

function renderRequests (s) {
  const selfId = s.status.peerId
  const running = s.requests?.running ?? []
  fill($('running-table').tBodies[0], running.map(r => h('tr', {},
    h('td', {}, r.model), h('td', {}, who(r.peerId, selfId)),
    h('td', { class: 'num' }, formatMs(r.elapsedMs)), h('td', { class: 'num' }, String(r.tokens))
  )))
  $('running-empty').hidden = running.length > 0
  const recent = (s.requests?.recent ?? []).slice(0, 12)
  fill($('recent-table').tBodies[0], recent.map(r => h('tr', {},
    h('td', { class: 'muted' }, timeAgo(r.at)), h('td', {}, r.model), h('td', {}, who(r.peerId, selfId, true)),
    h('td', { class: 'num' }, formatMs(r.ttftMs)),
    h('td', { class: 'num' }, r.tokensPerSecond != null ? r.tokensPerSecond.toFixed(1) : '–'),
    h('td', { class: 'num' }, String(r.tokens)),
    h('td', {}, h('span', { class: `tag ${r.outcome === 'done' ? 'ok' : 'bad'}` }, r.outcome))
  )))
  $('recent-empty').hidden = recent.length > 0
}

/** Whatever shape the ledger routes answer: the first list of records as a table. */
function genericTable (value, limit) {
  const list = Array.isArray(value) ? value : Object.values(value ?? {}).find(v => Array.isArray(v))
  if (list == null) return h('pre', { class: 'mono' }, JSON.stringify(value, null, 2).slice(0, 2000))
  if (list.length === 0) return h('p', { class: 'empty' }, 'Nothing recorded yet.')
  const rows = list.slice(0, limit)
  const keys = [...new Set(rows.flatMap(r => Object.keys(r ?? {})))].filter(k => typeof rows[0]?.[k] !== 'object').slice(0, 7)
  const cell = v => typeof v === 'string' && /^12D3Koo|^Qm/.test(v) ? h('code', { title: v }, shortId(v)) : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v ?? '–')
  return h('table', {},
    h('thead', {}, h('tr', {}, keys.map(k => h('th', {}, k)))),
    h('tbody', {}, rows.map(r => h('tr', {}, keys.map(k => h('td', { class: typeof r[k] === 'number' ? 'num' : null }, cell(r[k]))))))
  )
}

const tokens = n => Number.isFinite(n) ? n.toLocaleString('en-US') : '–'

/** GET /krill/v1/balance: totals, today's use against the budget, and each peer */
function balanceView (balance) {
  if (!Array.isArray(balance?.peers) || balance.totals == null) return genericTable(balance, 10)
  const t = balance.totals
  const today = balance.today
  const summary = h('dl', { class: 'kv' },
    h('dt', {}, 'served to peers'), h('dd', {}, `${tokens(t.servedThem?.total)} tokens`),
    h('dt', {}, 'received from peers'), h('dd', {}, `${tokens(t.servedUs?.total)} tokens`),
    h('dt', {}, 'net'), h('dd', { title: 'served to peers minus received from them' }, `${t.net >= 0 ? '+' : ''}${tokens(t.net)}`),
    today != null ? [h('dt', {}, 'used today'), h('dd', {}, today.cap != null ? `${tokens(today.tokens)} of ${tokens(today.cap)}` : `${tokens(today.tokens)} (no daily cap)`)] : null,
    (t.disputes ?? 0) + (t.unreceipted ?? 0) > 0 ? [h('dt', {}, 'unsettled'), h('dd', { class: 'bad' }, `${t.disputes} disputed, ${t.unreceipted} without receipt`)] : null
  )
  if (balance.peers.length === 0) return [summary, h('p', { class: 'empty' }, 'No tokens exchanged with any peer yet.')]
  return [summary, h('table', { id: 'balance-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'peer'), h('th', { class: 'num' }, 'served them'), h('th', { class: 'num' }, 'served us'), h('th', { class: 'num' }, 'net'), h('th', { class: 'num' }, 'standing'))),
    h('tbody', {}, balance.peers.slice(0, 10).map(p => h('tr', { 'data-peer': p.peer },
      h('td', {}, h('code', { title: p.peer }, shortId(p.peer))),
      h('td', { class: 'num' }, tokens(p.servedThem?.total)),
      h('td', { class: 'num' }, tokens(p.servedUs?.total)),
      h('td', { class: 'num' }, `${p.net >= 0 ? '+' : ''}${tokens(p.net)}`),
      h('td', { class: 'num' }, p.standing?.score != null ? p.standing.score.toFixed(2) : '–')
    )))
  )]
}

/** GET /krill/v1/ledger: the newest receipts */
function ledgerView (ledger) {
  if (!Array.isArray(ledger?.entries)) return genericTable(ledger, 8)
  if (ledger.entries.length === 0) return h('p', { class: 'empty' }, 'No receipts yet.')
  return h('table', { id: 'ledger-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'when'), h('th', {}, 'we'), h('th', {}, 'peer'), h('th', {}, 'model'), h('th', { class: 'num' }, 'tokens'), h('th', {}, 'receipt'))),
    h('tbody', {}, ledger.entries.slice(0, 8).map(e => h('tr', {},
      h('td', { class: 'muted' }, timeAgo(Date.parse(e.finishedAt ?? e.recordedAt))),
      h('td', {}, e.role === 'provider' ? 'served' : 'used'),
      h('td', {}, h('code', { title: e.peer }, shortId(e.peer))),
      h('td', {}, e.model),
      h('td', { class: 'num' }, tokens((e.promptTokens ?? 0) + (e.completionTokens ?? 0))),
      h('td', {}, h('span', { class: `tag ${e.status === 'signed' ? 'ok' : 'bad'}`, title: e.reason ?? '' }, e.status))
    )))
  )
}

function renderLedger (s) {
  const balance = s.balance
  const ledger = s.ledger
  $('balance').replaceChildren(
    h('h3', {}, 'Balance'),
    ...[balance == null ? h('p', { class: 'na' }, 'Not available: this daemon has no /krill/v1/balance.') : balanceView(balance)].flat()
  )
  $('ledger').replaceChildren(
    h('h3', {}, 'Ledger'),
    ...[ledger == null ? h('p', { class: 'na' }, 'Not available: this daemon has no /krill/v1/ledger.') : ledgerView(ledger)].flat()
  )
}

let chat

function render () {
  const s = state.snapshot
  if (s == null || s.status == null) return
  renderTiles(s)
  renderSwarm(s)
  renderModels(s)
  renderRequests(s)
  renderLedger(s)
  chat?.setModels((s.models?.models ?? []).map(m => m.name))
}

/** Small events change the picture at once; the next snapshot confirms it. */
function applyEvent (event) {
  const s = state.snapshot
  if (s == null) return
  switch (event.event) {
    case 'request:routed':
      s.requests ??= { running: [], recent: [] }
      s.requests.recent = [{ at: Date.now(), model: event.model, peerId: event.peerId, local: event.peerId === s.status.peerId, tokens: event.tokens, durationMs: event.durationMs, ttftMs: event.ttftMs ?? null, tokensPerSecond: tokensPerSecond(event.tokens, event.durationMs, event.ttftMs ?? null), outcome: event.outcome }, ...s.requests.recent]
      break
    case 'peer:left':
      if (s.peers != null) s.peers.peers = s.peers.peers.filter(p => p.id !== event.peerId)
      break
    default:
      return
  }
  render()
}

function onMessage (message) {
  if (message.event === 'snapshot') {
    state.snapshot = message
    render()
    document.body.dataset.ready = 'true'
    return
  }
  applyEvent(message)
}

function onState (feed) {
  const el = $('feed')
  el.className = `feed ${feed}`
  el.querySelector('span').textContent = feed === 'live'
    ? 'live'
    : feed === 'down'
      ? 'disconnected, retrying…'
      : feed === 'unauthorized' ? 'this API needs its token: open /ui/#token=<KRILL_API_TOKEN>' : 'connecting…'
}

chat = setupChat({
  form: $('chat-form'), select: $('chat-model'), input: $('chat-input'), log: $('chat-log'),
  send: $('chat-send'), clear: $('chat-clear'), meta: $('chat-meta'),
  selfId: () => state.snapshot?.status?.peerId
})
openFeed({ onMessage, onState })
// "3s ago" stays true between snapshots
setInterval(() => { if (state.snapshot != null) renderRequests(state.snapshot) }, 5000)
