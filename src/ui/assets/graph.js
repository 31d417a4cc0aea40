// The swarm as a picture: this node in the middle, its peers around it, a solid
// edge for a direct connection and a dashed one for a relayed connection (with a
// faint hop to the relay when the relay is a peer too), each labelled with its
// round-trip time. Plain SVG, redrawn from the latest snapshot.

const NS = 'http://www.w3.org/2000/svg'

function el (name, attrs = {}, text) {
  const node = document.createElementNS(NS, name)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value))
  if (text != null) node.textContent = text
  return node
}

export function shortId (id) {
  if (typeof id !== 'string' || id.length <= 14) return id ?? ''
  return `${id.slice(0, 6)}…${id.slice(-6)}`
}

export function formatMs (ms) {
  if (ms == null || !Number.isFinite(ms)) return '–'
  if (ms < 1) return '<1 ms'
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
}

/** Where each peer sits: evenly around an ellipse, a second ring when crowded. */
function layout (peers) {
  const n = peers.length
  const rings = n > 14 ? 2 : 1
  // one or two peers sit left and right, where the picture is widest
  const start = n === 1 ? 0 : n % 2 === 0 ? -Math.PI / 2 + Math.PI / n : -Math.PI / 2
  return peers.map((peer, i) => {
    const angle = start + (2 * Math.PI * i) / Math.max(n, 1)
    const outer = rings === 2 && i % 2 === 1
    const rx = outer ? 255 : (rings === 2 ? 175 : 225)
    const ry = outer ? 175 : (rings === 2 ? 115 : 145)
    return { peer, x: Math.cos(angle) * rx, y: Math.sin(angle) * ry }
  })
}

export function drawSwarm (svg, { selfId, selfModels, peers }) {
  svg.replaceChildren()
  const placed = layout(peers)
  const at = new Map(placed.map(p => [p.peer.id, p]))
  const edges = el('g', { class: 'edges' })
  const labels = el('g', { class: 'labels' })
  const nodes = el('g', { class: 'nodes' })

  for (const { peer, x, y } of placed) {
    const relayed = peer.type === 'relayed'
    edges.append(el('line', { class: `edge ${relayed ? 'relayed' : 'direct'}`, x1: 0, y1: 0, x2: x, y2: y, 'data-peer': peer.id }))
    const relay = relayed && peer.relay != null ? at.get(peer.relay) : undefined
    if (relay != null) edges.append(el('line', { class: 'edge relay-hop', x1: relay.x, y1: relay.y, x2: x, y2: y }))
    const label = peer.latencyMs != null ? formatMs(peer.latencyMs) : (relayed ? 'relayed' : '')
    // along the edge, past this node's own label, nudged off the line
    const len = Math.hypot(x, y) || 1
    const nx = -y / len; const ny = x / len
    if (label !== '') labels.append(el('text', { class: 'edge-label', x: (x * 0.58 + nx * 10).toFixed(1), y: (y * 0.58 + ny * 10 + 4).toFixed(1) }, label))
  }

  for (const { peer, x, y } of placed) {
    const serving = (peer.models ?? []).length > 0
    const g = el('g', { class: `node ${serving ? 'serving' : 'plain'}`, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, 'data-peer': peer.id })
    const title = el('title', {}, `${peer.id}\n${peer.addr}\n${peer.agent ?? ''}`)
    g.append(title, el('circle', { r: serving ? 15 : 11 }))
    const below = y >= 0
    g.append(el('text', { y: below ? 32 : -24 }, shortId(peer.id)))
    const sub = serving ? (peer.models.length === 1 ? peer.models[0].name : `${peer.models.length} models`) : (peer.agent ?? 'peer')
    g.append(el('text', { class: 'sub', y: below ? 46 : -38 }, sub))
    nodes.append(g)
  }

  const self = el('g', { class: 'node self', 'data-peer': selfId })
  self.append(el('title', {}, selfId), el('circle', { class: 'halo', r: 26 }), el('circle', { r: 20 }))
  self.append(el('text', { y: 40 }, 'this node'))
  const served = selfModels.length === 0 ? 'no models' : selfModels.length === 1 ? selfModels[0].name : `${selfModels.length} models`
  self.append(el('text', { class: 'sub', y: 54 }, served))
  nodes.append(self)

  svg.append(edges, labels, nodes)
}
