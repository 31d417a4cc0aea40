import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import type { ModelsAnswer, PeerView, ProvidersAnswer } from '../../src/api/control.js'
import { relayOf } from '../../src/peers/index.js'
import { apiBase } from '../../src/cli/api-client.js'
import { sseData } from '../../src/cli/commands/chat.js'
import { renderModels } from '../../src/cli/commands/models.js'
import { renderPeers } from '../../src/cli/commands/peers.js'
import { formatLoad, renderProviders } from '../../src/cli/commands/providers.js'
import { formatMs, shortDigest } from '../../src/cli/output.js'

const RELAY = '12D3KooWSsmH5BXnAV7hr9pvzdFoazDNC2ejxPgVcpuCV8uNxaRW'
const TARGET = '12D3KooWBJqygjsYjLZWVmzirMEpcQLN4QDgVhQixg8cqbjcyyo8'
const DIGEST = 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72'

function peer (over: Partial<PeerView>): PeerView {
  return { id: TARGET, addr: '/ip4/192.0.2.7/tcp/4747', type: 'direct', direction: 'outbound', connections: 1, latencyMs: 3.25, agent: 'krill/0.1.0', protocols: [], models: [], ...over }
}

describe('relayOf', () => {
  it('finds the relay of a circuit address and says direct otherwise', () => {
    expect(relayOf(multiaddr(`/ip4/198.51.100.1/tcp/4747/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`))).toEqual({ relayed: true, relay: RELAY })
    expect(relayOf(multiaddr(`/ip4/198.51.100.1/tcp/4747/p2p/${RELAY}/p2p-circuit`))).toEqual({ relayed: true, relay: RELAY })
    expect(relayOf(multiaddr(`/ip4/192.0.2.7/tcp/4747/p2p/${TARGET}`))).toEqual({ relayed: false })
  })
})

describe('tables', () => {
  it('peers: relayed peers name their relay, unmeasured latency is "-"', () => {
    const text = renderPeers({
      peers: [
        peer({ models: [{ name: 'llama3.2:1b', digest: DIGEST }, { name: 'qwen3:0.6b', digest: DIGEST }] }),
        peer({ id: RELAY, type: 'relayed', relay: TARGET, latencyMs: null, agent: null })
      ]
    })
    const lines = text.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^PEER\s+ADDRESS\s+TYPE\s+LATENCY\s+AGENT\s+MODELS$/)
    expect(lines[1]).toMatch(new RegExp(`^${TARGET}\\s+/ip4/192\\.0\\.2\\.7/tcp/4747\\s+direct\\s+3\\.3 ms\\s+krill/0\\.1\\.0\\s+llama3\\.2:1b, qwen3:0\\.6b$`))
    expect(lines[2]).toMatch(new RegExp(`^${RELAY}\\s+\\S+\\s+relayed via 12D3KooW…jcyyo8\\s+-\\s+-\\s+-$`))
    // columns line up: every row starts its ADDRESS where the header does
    const col = lines[0].indexOf('ADDRESS')
    for (const line of lines.slice(1)) expect(line[col - 1]).toBe(' ')
    expect(renderPeers({ peers: [] })).toContain('(no peers connected)')
  })

  it('models: short digests, "+ this node" and "local"', () => {
    const model = { name: 'm', digest: DIGEST, size: 1, family: '', parameterSize: '', quantization: '', contextLength: 0 }
    const answer: ModelsAnswer = {
      models: [
        { name: 'llama3.2:1b', digests: [DIGEST], providers: 2, model, servedHere: false, bestLatencyMs: 12.4 },
        { name: 'only-here:1b', digests: [DIGEST], providers: 0, model, servedHere: true, bestLatencyMs: null }
      ],
      local: [model]
    }
    const lines = renderModels(answer).trimEnd().split('\n')
    expect(lines[1]).toMatch(/^llama3\.2:1b\s+a80c4f17acd5\s+2\s+12 ms$/)
    expect(lines[2]).toMatch(/^only-here:1b\s+a80c4f17acd5\s+0 \+ this node\s+local$/)
  })

  it('providers: load as active/slots and queue; DHT entries without details show "-"', () => {
    const model = { name: 'llama3.2:1b', digest: DIGEST, size: 1, family: '', parameterSize: '', quantization: '', contextLength: 0 }
    const answer: ProvidersAnswer = {
      model: 'llama3.2:1b',
      providers: [
        { peerId: RELAY, model, capacity: { slots: 4, active: 1, queued: 2 }, version: 'krill/0.1.0', source: 'gossip', receivedAt: 0, expiresAt: 1, latencyMs: 7 },
        { peerId: TARGET, model: { ...model, digest: '' }, capacity: { slots: 0, active: 0, queued: 0 }, version: '', source: 'dht', receivedAt: 0, expiresAt: 1, latencyMs: null }
      ],
      local: null
    }
    const lines = renderProviders(answer).trimEnd().split('\n')
    expect(lines[1]).toMatch(new RegExp(`^${RELAY}\\s+a80c4f17acd5\\s+1/4, 2 queued\\s+7\\.0 ms\\s+gossip$`))
    expect(lines[2]).toMatch(new RegExp(`^${TARGET}\\s+-\\s+-\\s+-\\s+dht$`))
    expect(formatLoad(undefined)).toBe('-')
  })

  it('formats', () => {
    expect(shortDigest(`sha256:${DIGEST}`)).toBe('a80c4f17acd5')
    expect(shortDigest('')).toBe('-')
    expect(formatMs(null)).toBe('-')
    expect(formatMs(0.42)).toBe('0.4 ms')
    expect(formatMs(123.6)).toBe('124 ms')
  })
})

describe('apiBase', () => {
  it('--api beats KRILL_API beats the default; IPv6 gets brackets', () => {
    expect(apiBase('127.0.0.1:9999', { KRILL_API: '127.0.0.1:1' })).toBe('http://127.0.0.1:9999')
    expect(apiBase(undefined, { KRILL_API: '127.0.0.1:1' })).toBe('http://127.0.0.1:1')
    expect(apiBase(undefined, {})).toBe('http://127.0.0.1:11435')
    expect(apiBase('[::1]:5', {})).toBe('http://[::1]:5')
  })
})

describe('sseData', () => {
  it('reassembles events split across chunks and multi-line data', async () => {
    const parts = ['data: {"a"', ':1}\n\nda', 'ta: [DONE]\n\n', ': comment\n\n', 'data: x\ndata: y\n\n']
    const body = new ReadableStream<Uint8Array>({
      start (controller) {
        for (const p of parts) controller.enqueue(new TextEncoder().encode(p))
        controller.close()
      }
    })
    const out: string[] = []
    for await (const data of sseData(body)) out.push(data)
    expect(out).toEqual(['{"a":1}', '[DONE]', 'x\ny'])
  })
})
