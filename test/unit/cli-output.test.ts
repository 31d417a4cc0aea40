import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import type { ModelsAnswer, PeerView, ProvidersAnswer } from '../../src/api/control.js'
import { relayOf } from '../../src/peers/index.js'
import { apiBase } from '../../src/cli/api-client.js'
import { sseData } from '../../src/cli/commands/chat.js'
import { NO_MODELS, renderModels } from '../../src/cli/commands/models.js'
import { renderPeers } from '../../src/cli/commands/peers.js'
import { formatLoad, renderProviders } from '../../src/cli/commands/providers.js'
import { addrCell, ellipsize, formatMs, formatTable, shortDigest } from '../../src/cli/output.js'
import { didYouMean, suggestModels } from '../../src/cli/suggest.js'
import { describeError, errorJson } from '../../src/cli/report-error.js'
import { CliError } from '../../src/cli/cli-error.js'
import { UsageError } from '../../src/errors.js'

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
    // --wide: every id whole
    const text = renderPeers({
      peers: [
        peer({ models: [{ name: 'llama3.2:1b', digest: DIGEST }, { name: 'qwen3:0.6b', digest: DIGEST }] }),
        peer({ id: RELAY, type: 'relayed', relay: TARGET, latencyMs: null, agent: null })
      ]
    }, { wide: true })
    const lines = text.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^PEER\s+ADDRESS\s+TYPE\s+LATENCY\s+AGENT\s+MODELS$/)
    expect(lines[1]).toMatch(new RegExp(`^${TARGET}\\s+/ip4/192\\.0\\.2\\.7/tcp/4747\\s+direct\\s+3\\.3 ms\\s+krill/0\\.1\\.0\\s+llama3\\.2:1b, qwen3:0\\.6b$`))
    expect(lines[2]).toMatch(new RegExp(`^${RELAY}\\s+\\S+\\s+relayed via ${TARGET}\\s+-\\s+-\\s+-$`))
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
    // only this node serves it: never "0 + this node"
    expect(lines[2]).toMatch(/^only-here:1b\s+a80c4f17acd5\s+this node\s+local$/)
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
    const lines = renderProviders(answer, { wide: true }).trimEnd().split('\n')
    expect(lines[1]).toMatch(new RegExp(`^${RELAY}\\s+a80c4f17acd5\\s+1/4, 2 queued\\s+7\\.0 ms\\s+gossip$`))
    expect(lines[2]).toMatch(new RegExp(`^${TARGET}\\s+-\\s+-\\s+-\\s+dht$`))
    expect(formatLoad(undefined)).toBe('-')
  })

  it('peers: by default short ids, no own /p2p suffix, and every line within 100 columns', () => {
    const relayedAddr = `/ip4/198.51.100.1/tcp/4747/p2p/${TARGET}/p2p-circuit/p2p/${RELAY}`
    const many = Array.from({ length: 12 }, (_, i) => ({ name: `hf.co/some-org/a-rather-long-model-name-${i}:q4_K_M`, digest: DIGEST }))
    const text = renderPeers({
      peers: [
        peer({ addr: `/ip4/192.0.2.7/tcp/4747/p2p/${TARGET}`, models: many }),
        peer({ id: RELAY, addr: relayedAddr, type: 'relayed', relay: TARGET, latencyMs: null, agent: 'krill/0.1.0 (a very long agent string from some fork of it)' })
      ]
    })
    const lines = text.trimEnd().split('\n')
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(100)
    // cut where needed, but each row still starts with its short id and its address
    expect(lines[1]).toMatch(/^12D3KooW…jcyyo8\s+\/ip4\/192\.0\S*\s+direct\s+3\.3 ms\s+\S+\s+hf\.co\/\S*…$/)
    expect(lines[2]).toMatch(/^12D3KooW…uNxaRW\s+\/ip4\/198\.5\S*\s+relayed via 12D3KooW…jcyyo8\s+-\s+krill\/.+\s+-$/)
    // a common row (a LAN peer, two models) is not cut at all
    const lan = renderPeers({ peers: [peer({ addr: `/ip4/192.168.1.20/tcp/4747/p2p/${TARGET}`, models: [{ name: 'llama3.2:1b', digest: DIGEST }, { name: 'qwen3:0.6b', digest: DIGEST }] })] })
    expect(lan.split('\n')[1]).toMatch(/^12D3KooW…jcyyo8\s+\/ip4\/192\.168\.1\.20\/tcp\/4747\s+direct\s+3\.3 ms\s+krill\/0\.1\.0\s+llama3\.2:1b, qwen3:0\.6b$/)
    // --wide: nothing is cut
    const wide = renderPeers({ peers: [peer({ models: many })] }, { wide: true })
    expect(wide).toContain(many.map(m => m.name).join(', '))
    expect(wide).toContain(TARGET)
  })

  it('tables cut only the columns they may, with "…"', () => {
    const text = formatTable(['A', 'B'], [['x'.repeat(80), 'y'.repeat(80)]], { width: 100, shrink: [1] })
    const row = text.split('\n')[1]
    expect(row.length).toBe(100)
    expect(row).toMatch(/^x{80}  y{17}…$/)
    expect(ellipsize('abcdef', 4)).toBe('abc…')
    expect(ellipsize('abc', 4)).toBe('abc')
    expect(addrCell(`/ip4/1.2.3.4/tcp/1/p2p/${TARGET}`, TARGET, false)).toBe('/ip4/1.2.3.4/tcp/1')
    expect(addrCell(`/ip4/1.2.3.4/tcp/1/p2p/${TARGET}`, TARGET, true)).toBe(`/ip4/1.2.3.4/tcp/1/p2p/${TARGET}`)
  })

  it('models: an empty catalog never says "yet", and a stale entry nobody serves is not listed', () => {
    const model = { name: 'm', digest: DIGEST, size: 1, family: '', parameterSize: '', quantization: '', contextLength: 0 }
    const text = renderModels({ models: [{ name: 'gone:1b', digests: [DIGEST], providers: 0, model, servedHere: false, bestLatencyMs: null }], local: [] })
    expect(text).not.toContain('gone:1b')
    expect(text).not.toMatch(/yet/)
    expect(text).toContain(NO_MODELS)
    expect(renderModels({ models: [], local: [] })).toContain(NO_MODELS)
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

describe('model suggestions', () => {
  const known = ['tinyllama:1b', 'llama3.2:1b', 'llama3.2:3b', 'qwen3:0.6b', 'hf.co/org/model:q4']
  it('the same model under another tag, else a typo away; nothing for a stranger', () => {
    expect(suggestModels('tinyllama', known)).toEqual(['tinyllama:1b'])
    expect(suggestModels('tinyllama:latest', known)).toEqual(['tinyllama:1b'])
    expect(suggestModels('llama3.2', known)).toEqual(['llama3.2:1b', 'llama3.2:3b'])
    expect(suggestModels('lama3.2:1b', known)).toEqual(['llama3.2:1b'])
    expect(suggestModels('qwen3:06b', known)).toEqual(['qwen3:0.6b'])
    expect(suggestModels('hf.co/org/model', known)).toEqual(['hf.co/org/model:q4'])
    expect(suggestModels('nosuchmodel:7b', known)).toEqual([])
    expect(suggestModels('tinyllama:1b', known)).toEqual([])
    expect(didYouMean(['a'])).toBe('did you mean "a"?')
    expect(didYouMean(['a', 'b', 'c'])).toBe('did you mean "a", "b" or "c"?')
    expect(didYouMean([])).toBeUndefined()
  })
})

describe('errors for people and for programs', () => {
  it('every error has a code, a message and (where one helps) a hint; usage is exit 2', () => {
    expect(describeError(new CliError('no_daemon', 'no daemon at x', { hint: 'start one' }))).toEqual({ code: 'no_daemon', message: 'no daemon at x', hint: 'start one', exitCode: 1 })
    expect(describeError(new UsageError('bad flag'))).toMatchObject({ code: 'bad_usage', exitCode: 2 })
    expect(describeError(new UsageError('cannot read', 1))).toMatchObject({ code: 'failed', exitCode: 1 })
    expect(describeError(new Error('boom'))).toMatchObject({ code: 'internal', message: 'boom', exitCode: 1 })
    expect(JSON.parse(errorJson({ code: 'c', message: 'm', hint: 'h' }))).toEqual({ error: { code: 'c', message: 'm', hint: 'h' } })
    expect(JSON.parse(errorJson({ code: 'c', message: 'm' }))).toEqual({ error: { code: 'c', message: 'm' } })
  })
})
