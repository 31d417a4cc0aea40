import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { rm } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { KRILL_BIN, runKrill, spawnDaemon } from '../helpers/cli.js'
import { startSwarm, startTestDaemon, tempDir, type Swarm } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

/** A loopback port nobody listens on (bound, then released). */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

/** "http://127.0.0.1:1234" → "127.0.0.1:1234", the form --api takes */
function hostPort (url: string): string {
  return url.replace(/^http:\/\//, '')
}

const LLAMA = 'llama3.2:1b'
const QWEN = 'qwen3:0.6b'
const digestOf = (name: string): string => createHash('sha256').update(name).digest('hex')

describe('krill client commands against a 3-node swarm', () => {
  let swarm: Swarm
  let standins: OllamaStandin[]
  let api: string
  let ids: string[]

  beforeAll(async () => {
    // node 0 serves nothing (no Ollama); node 1 serves llama, node 2 llama and qwen
    standins = [
      await OllamaStandin.start({ models: [{ name: LLAMA }] }),
      await OllamaStandin.start({ models: [{ name: LLAMA }, { name: QWEN }] })
    ]
    swarm = await startSwarm(3, i => i === 0 ? {} : { ollama: standins[i - 1].url, modelRefreshMs: 200 })
    ids = swarm.nodes.map(n => n.daemon.peerId.toString())
    api = hostPort(swarm.nodes[0].daemon.apiUrl)
    // node 0 is everybody's bootstrap peer: it sees the other two first
    await waitFor(() => swarm.nodes[0].daemon.libp2p.getPeers().length === 2, 'node 0 to be connected to nodes 1 and 2')
    await waitFor(() => swarm.nodes[0].daemon.providers.providersFor(LLAMA).length === 2 && swarm.nodes[0].daemon.providers.providersFor(QWEN).length === 1,
      'node 0 to learn both providers of llama and the one of qwen')
  })

  /** whether this build's daemon says who answered (x-krill-provider) */
  let providerSays = false

  beforeAll(async () => {
    const res = await fetch(`${swarm.nodes[0].daemon.apiUrl}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: LLAMA, messages: [{ role: 'user', content: 'probe' }] })
    })
    await res.text()
    providerSays = res.headers.get('x-krill-provider') != null
    // the tests below read the stand-ins' last requests: forget the probe
    await waitFor(() => standins.reduce((n, s) => n + s.requests.length, 0) >= 1, 'the probe to reach a stand-in')
    for (const s of standins) s.requests.length = 0
  })

  afterAll(async () => {
    await swarm?.stop()
    await Promise.all((standins ?? []).map(async s => { await s.stop() }))
  })

  it('status: table and --json name the node, its addresses and connections', async () => {
    const json = await runKrill(['status', '--json', '--api', api])
    expect(json.code).toBe(0)
    const status = JSON.parse(json.stdout)
    expect(status.peerId).toBe(ids[0])
    expect(status.addrs).toEqual(swarm.nodes[0].daemon.addrs())
    expect(status.peers).toBe(2)
    expect(status.connections).toBeGreaterThanOrEqual(2)
    expect(status.uptimeMs).toBeGreaterThan(0)
    expect(status.ollama).toEqual({ url: 'http://127.0.0.1:9', serving: true, reachable: false })
    expect(status.models).toEqual([])

    const serving = JSON.parse((await runKrill(['status', '--json', '--api', hostPort(swarm.nodes[2].daemon.apiUrl)])).stdout)
    expect(serving.ollama).toEqual({ url: standins[1].url, serving: true, reachable: true })
    expect(serving.models).toEqual([{ name: LLAMA, digest: digestOf(LLAMA) }, { name: QWEN, digest: digestOf(QWEN) }])

    const table = await runKrill(['status'], { env: { KRILL_API: api } })
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(new RegExp(`^peer id\\s+${ids[0]}$`, 'm'))
    expect(table.stdout).toMatch(/^connections\s+\d+ \(2 peers\)$/m)
    expect(table.stdout).toMatch(/^ollama\s+http:\/\/127\.0\.0\.1:9 \(unreachable\)$/m)
    expect(table.stdout).toMatch(/^serving\s+\(no models\)$/m)
  })

  it('peers: lists both other nodes with address, type, latency and agent', async () => {
    const json = await runKrill(['peers', '--json', '--api', api])
    expect(json.code).toBe(0)
    const { peers } = JSON.parse(json.stdout)
    expect(peers.map((p: any) => p.id).sort()).toEqual([ids[1], ids[2]].sort())
    for (const p of peers) {
      expect(p.type).toBe('direct')
      expect(p.addr).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
      expect(p.agent).toMatch(/^krill\//)
      expect(p.protocols).toContain('/ipfs/ping/1.0.0')
      expect(typeof p.latencyMs).toBe('number')
    }
    const modelsOf = (id: string): string[] => peers.find((p: any) => p.id === id).models.map((m: any) => m.name)
    expect(modelsOf(ids[1])).toEqual([LLAMA])
    expect(modelsOf(ids[2])).toEqual([LLAMA, QWEN])

    // --wide: every id and address whole (people copy ids into `krill ping`)
    const table = await runKrill(['peers', '--wide', '--api', api])
    expect(table.code).toBe(0)
    const lines = table.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^PEER\s+ADDRESS\s+TYPE\s+LATENCY\s+AGENT\s+MODELS$/)
    expect(lines).toHaveLength(3)
    const row = (id: string): string => lines.find(l => l.startsWith(id)) ?? ''
    for (const id of [ids[1], ids[2]]) {
      expect(row(id)).toMatch(new RegExp(`^${id}\\s+/ip4/127\\.0\\.0\\.1/tcp/\\d+\\S*\\s+direct\\s+[\\d.]+ ms\\s+krill/\\S+\\s+`))
    }
    expect(row(ids[1])).toMatch(/\sllama3\.2:1b$/)
    expect(row(ids[2])).toMatch(/\sllama3\.2:1b, qwen3:0\.6b$/)

    // by default: short ids, within 100 columns
    const narrow = await runKrill(['peers', '--api', api])
    expect(narrow.code).toBe(0)
    const short = narrow.stdout.trimEnd().split('\n')
    expect(short[0]).toMatch(/^PEER\s+ADDRESS\s+TYPE\s+LATENCY\s+AGENT\s+MODELS$/)
    expect(short).toHaveLength(3)
    for (const line of short) expect(line.length).toBeLessThanOrEqual(100)
    for (const id of [ids[1], ids[2]]) {
      expect(short.find(l => l.startsWith(`${id.slice(0, 8)}…${id.slice(-6)} `))).toMatch(/^\S+\s+\/ip4\/127\.0\.0\.1\/tcp\/\d+\s+direct\s+[\d.]+ ms\s+krill\//)
    }
    expect(narrow.stdout).not.toContain(ids[1])
  })

  it('peers --watch into a pipe: plain frames under a time stamp, no escape codes; Ctrl-C exits 130', async () => {
    const child = spawn(process.execPath, [KRILL_BIN, 'peers', '--watch', '--wide', '--api', api], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      // two frames: the first and a refresh 2 s later
      await waitFor(() => out.split(/^# krill peers at /m).length >= 3, 'two frames', 15_000)
      child.kill('SIGINT')
      expect(await exited).toBe(130)
    } finally {
      child.kill('SIGKILL')
    }
    expect(out).not.toContain('\x1b')
    const frames = out.split(/^# krill peers at \S+\n/m).filter(f => f !== '')
    for (const frame of frames.slice(0, 2)) {
      expect(frame).toContain(ids[1])
      expect(frame).toContain(ids[2])
    }
  })

  it('peers --watch on a terminal redraws in place', async (ctx) => {
    // script(1) gives the command a pseudo-terminal
    const script = spawnSync('script', ['--version'])
    if (script.error != null) ctx.skip()
    const command = [process.execPath, KRILL_BIN, 'peers', '--watch', '--api', api].map(a => `'${a}'`).join(' ')
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      await waitFor(() => out.split('\x1b[H\x1b[2J').length >= 3, 'two redraws', 15_000)
      // Ctrl-C typed on the terminal
      child.stdin.write('\x03')
      expect(await exited).toBe(130)
    } finally {
      child.kill('SIGKILL')
    }
    expect(out).toContain(`${ids[1].slice(0, 8)}…${ids[1].slice(-6)}`)
  })

  it('status --watch: JSON lines with --json, plain frames otherwise', async () => {
    for (const json of [true, false]) {
      const child = spawn(process.execPath, [KRILL_BIN, 'status', '--watch', '--api', api, ...(json ? ['--json'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString() })
      const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
      try {
        await waitFor(() => json ? out.split('\n').length >= 3 : out.split(/^# krill status at /m).length >= 3, 'two refreshes', 15_000)
        child.kill('SIGINT')
        expect(await exited).toBe(130)
      } finally {
        child.kill('SIGKILL')
      }
      if (json) {
        const docs = out.trimEnd().split('\n').map(l => JSON.parse(l))
        for (const doc of docs) expect(doc.peerId).toBe(ids[0])
      } else {
        expect(out).toMatch(new RegExp(`^peer id\\s+${ids[0]}$`, 'm'))
        expect(out).not.toContain('\x1b')
      }
    }
  })

  it('models: the catalog with digests, provider counts and best latency', async () => {
    const json = await runKrill(['models', '--json', '--api', api])
    expect(json.code).toBe(0)
    const { models } = JSON.parse(json.stdout)
    expect(models.map((m: any) => [m.name, m.digests, m.providers, m.servedHere])).toEqual([
      [LLAMA, [digestOf(LLAMA)], 2, false],
      [QWEN, [digestOf(QWEN)], 1, false]
    ])
    for (const m of models) expect(typeof m.bestLatencyMs).toBe('number')

    const table = await runKrill(['models', '--api', api])
    expect(table.code).toBe(0)
    const lines = table.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^MODEL\s+DIGEST\s+PROVIDERS\s+BEST LATENCY$/)
    expect(lines[1]).toMatch(new RegExp(`^llama3\\.2:1b\\s+${digestOf(LLAMA).slice(0, 12)}\\s+2\\s+[\\d.]+ ms$`))
    expect(lines[2]).toMatch(new RegExp(`^qwen3:0\\.6b\\s+${digestOf(QWEN).slice(0, 12)}\\s+1\\s+[\\d.]+ ms$`))

    // a serving node counts itself apart from its peers
    const fromTwo = await runKrill(['models', '--api', hostPort(swarm.nodes[2].daemon.apiUrl)])
    expect(fromTwo.stdout).toMatch(/^llama3\.2:1b\s+\w{12}\s+1 \+ this node\s+/m)
    // served here only: "this node", never "0 + this node"
    expect(fromTwo.stdout).toMatch(/^qwen3:0\.6b\s+\w{12}\s+this node\s+local$/m)
    expect(fromTwo.stdout).not.toContain('0 + this node')
  })

  it('providers: who serves a model, with load, latency and source; nobody → exit 1', async () => {
    const json = await runKrill(['providers', LLAMA, '--json', '--api', api])
    expect(json.code).toBe(0)
    const answer = JSON.parse(json.stdout)
    expect(answer.model).toBe(LLAMA)
    expect(answer.local).toBeNull()
    expect(answer.providers.map((p: any) => p.peerId).sort()).toEqual([ids[1], ids[2]].sort())
    for (const p of answer.providers) {
      expect(p).toMatchObject({ source: 'gossip', model: { name: LLAMA, digest: digestOf(LLAMA) }, capacity: { slots: swarm.nodes[1].config.slots, active: 0, queued: 0 } })
      expect(typeof p.latencyMs).toBe('number')
    }

    const table = await runKrill(['providers', QWEN, '--wide', '--api', api])
    expect(table.code).toBe(0)
    const lines = table.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^PEER\s+DIGEST\s+LOAD\s+LATENCY\s+SOURCE$/)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(new RegExp(`^${ids[2]}\\s+${digestOf(QWEN).slice(0, 12)}\\s+0/${swarm.nodes[2].config.slots}, 0 queued\\s+[\\d.]+ ms\\s+gossip$`))

    // on a node that serves it, the node itself is listed first
    const here = await runKrill(['providers', QWEN, '--wide', '--api', hostPort(swarm.nodes[2].daemon.apiUrl)])
    expect(here.code).toBe(0)
    expect(here.stdout).toMatch(new RegExp(`^${ids[2]} \\(this node\\)\\s+${digestOf(QWEN).slice(0, 12)}\\s+.*local\\s+local$`, 'm'))

    // by default the id is short
    const short = await runKrill(['providers', QWEN, '--api', api])
    expect(short.stdout.trimEnd().split('\n')[1]).toMatch(new RegExp(`^${ids[2].slice(0, 8)}…${ids[2].slice(-6)}\\s+${digestOf(QWEN).slice(0, 12)}\\s`))

    const nobody = await runKrill(['providers', 'nosuchmodel:7b', '--api', api])
    expect(nobody.code).toBe(1)
    expect(nobody.stderr).toContain('model "nosuchmodel:7b" is not served by anyone in the swarm — see `krill models`')
    // a tag away from a known model: did you mean
    const untagged = await runKrill(['providers', 'qwen3', '--api', api])
    expect(untagged.code).toBe(1)
    expect(untagged.stderr).toContain('did you mean "qwen3:0.6b"?')
    const bad = await runKrill(['providers', 'bad name', '--api', api])
    expect(bad.code).toBe(2)
  })

  it('ping: rtt for a connected peer, exit 1 for an unknown one, exit 2 for a malformed id', async () => {
    const ok = await runKrill(['ping', ids[1], '--api', api])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(new RegExp(`^pong from ${ids[1]}: [\\d.]+ ms$`, 'm'))

    const json = await runKrill(['ping', ids[2], '--json', '--api', api])
    expect(json.code).toBe(0)
    const answer = JSON.parse(json.stdout)
    expect(answer.peerId).toBe(ids[2])
    expect(answer.rttMs).toBeGreaterThanOrEqual(0)
    expect(answer.rttMs).toBeLessThan(5_000)

    // a valid id that nobody in the swarm has
    const stranger = (await startTestDaemon()).daemon
    const strangerId = stranger.peerId.toString()
    await stranger.stop()
    await rm(stranger.config.dataDir, { recursive: true, force: true })
    const unknown = await runKrill(['ping', strangerId, '--api', api])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain(`unknown peer ${strangerId}`)

    const bad = await runKrill(['ping', 'not-a-peer-id', '--api', api])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/"not-a-peer-id" is not a peer id/)
  })

  it('connect: dials a multiaddr (exit 0), malformed → exit 2, unreachable → exit 1 with the reason', async () => {
    const target = swarm.nodes[2].daemon.addrs()[0]
    const json = await runKrill(['connect', target, '--json', '--api', hostPort(swarm.nodes[1].daemon.apiUrl)])
    expect(json.code).toBe(0)
    const answer = JSON.parse(json.stdout)
    expect(answer.peerId).toBe(ids[2])
    expect(answer.type).toBe('direct')
    expect(swarm.nodes[1].daemon.libp2p.getConnections(swarm.nodes[2].daemon.peerId).length).toBeGreaterThan(0)

    const table = await runKrill(['connect', target, '--api', hostPort(swarm.nodes[1].daemon.apiUrl)])
    expect(table.code).toBe(0)
    expect(table.stdout).toContain(`connected to ${ids[2]}`)

    const malformed = await runKrill(['connect', '/ip4/not-an-ip/tcp/1', '--api', api])
    expect(malformed.code).toBe(2)
    expect(malformed.stderr).toMatch(/"\/ip4\/not-an-ip\/tcp\/1" is not a valid multiaddr/)

    const port = await closedPort()
    // no /p2p part: with a connected peer's id libp2p would reuse that connection
    const refused = await runKrill(['connect', `/ip4/127.0.0.1/tcp/${port}`, '--api', api])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/dialing .* failed: .*ECONNREFUSED/)
  })

  it('connect: to a peer already connected says so and does not claim a dial; --force dials', async () => {
    const node1 = hostPort(swarm.nodes[1].daemon.apiUrl)
    await waitFor(() => swarm.nodes[1].daemon.libp2p.getConnections(swarm.nodes[0].daemon.peerId).length > 0, 'node 1 connected to node 0')
    // an address nobody listens on, with the connected peer's id: never tried
    const port = await closedPort()
    const bogus = `/ip4/127.0.0.1/tcp/${port}/p2p/${ids[0]}`
    const table = await runKrill(['connect', bogus, '--api', node1])
    expect(table.code).toBe(0)
    expect(table.stdout).toContain(`already connected to ${ids[0]}`)
    expect(table.stdout).toContain(`${bogus} was not dialed`)
    const json = await runKrill(['connect', bogus, '--json', '--api', node1])
    expect(JSON.parse(json.stdout)).toMatchObject({ peerId: ids[0], dialed: false })
    expect(JSON.parse(json.stdout).addr).not.toContain(`/tcp/${port}`)
    // --force really dials it: and that address is refused
    const forced = await runKrill(['connect', bogus, '--force', '--api', node1])
    expect(forced.code).toBe(1)
    expect(forced.stderr).toMatch(/dialing .* failed: .*ECONNREFUSED/)
    const real = await runKrill(['connect', swarm.nodes[0].daemon.addrs()[0], '--force', '--json', '--api', node1])
    expect(real.code).toBe(0)
    expect(JSON.parse(real.stdout)).toMatchObject({ peerId: ids[0], dialed: true })
  })

  it('connect: a malformed multiaddr reaching the API directly is a 400', async () => {
    const res = await fetch(`${swarm.nodes[0].daemon.apiUrl}/krill/v1/connect`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ multiaddr: 'nope' })
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error.message).toMatch(/not a valid multiaddr/)
  })

  it('chat: streams the answer of a peer\'s Ollama to stdout; prompt from arguments or stdin; --json', async () => {
    const script = DEFAULT_TOKENS.join('')
    const before = standins[0].requests.length + standins[1].requests.length
    const r = await runKrill(['chat', '-m', LLAMA, 'say', 'hello', '--api', api])
    expect(r.code).toBe(0)
    // stderr says who answered when the daemon tells (x-krill-provider), and nothing else
    expect(r.stderr).toMatch(providerSays ? new RegExp(`^answered by (${ids[1]}|${ids[2]})\n$`) : /^$/)
    // piped stdout gets exactly the answer: no added newline, no decoration
    expect(r.stdout).toBe(script)
    const asked = [...standins[0].requests, ...standins[1].requests]
    expect(asked.length).toBe(before + 1)
    expect(asked.at(-1)?.body.messages).toEqual([{ role: 'user', content: 'say hello' }])

    const fromStdin = await runKrill(['chat', '-m', QWEN, '--json', '--api', api], { input: 'a question from stdin\n' })
    expect(fromStdin.code).toBe(0)
    const answer = JSON.parse(fromStdin.stdout)
    expect(answer).toMatchObject({ model: QWEN, content: script, finishReason: 'stop', provider: providerSays ? ids[2] : null })
    expect(answer.usage.completion_tokens).toBeGreaterThan(0)
    expect(standins[1].requests.at(-1)?.body.messages).toEqual([{ role: 'user', content: 'a question from stdin\n' }])
  })

  it('chat --peer pins the provider (x-krill-peer)', async (ctx) => {
    if (!providerSays) ctx.skip()
    for (const peer of [ids[1], ids[2]]) {
      const r = await runKrill(['chat', '-m', LLAMA, '--peer', peer, '--json', 'hi', '--api', api])
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout).provider).toBe(peer)
    }
  })

  it('chat: a model name a tag away gets "did you mean"', async () => {
    const r = await runKrill(['chat', '-m', 'llama3.2', 'hi', '--api', api])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('model "llama3.2" is not served by anyone in the swarm')
    expect(r.stderr).toContain('did you mean "llama3.2:1b"?')
    const json = await runKrill(['chat', '-m', 'qwen3', 'hi', '--json', '--api', api])
    expect(json.code).toBe(1)
    expect(JSON.parse(json.stderr).error).toEqual({ code: 'unknown_model', message: 'model "qwen3" is not served by anyone in the swarm', hint: 'did you mean "qwen3:0.6b"? (see `krill models`)' })
  })

  it('chat: an unknown model is exit 1 with advice; no prompt or no -m is exit 2', async () => {
    const unknown = await runKrill(['chat', '-m', 'nosuchmodel:7b', 'hi', '--api', api])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('model "nosuchmodel:7b" is not served by anyone in the swarm — see `krill models`')
    expect(unknown.stdout).toBe('')

    const empty = await runKrill(['chat', '-m', LLAMA, '--api', api], { input: '' })
    expect(empty.code).toBe(2)
    expect(empty.stderr).toMatch(/no prompt/)
    const noModel = await runKrill(['chat', 'hi', '--api', api])
    expect(noModel.code).toBe(2)
  })

  it('chat: Ctrl-C after the first token aborts the request at the provider\'s Ollama (exit 130)', async () => {
    // only node 2 serves qwen; a slow script leaves time to interrupt
    standins[1].knobs.tokensPerSecond = 4
    try {
      const child = spawn(process.execPath, [KRILL_BIN, 'chat', '-m', QWEN, 'tell me a long story', '--api', api], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString() })
      const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
      try {
        await waitFor(() => out.length > 0, 'the first token on stdout', 15_000)
        const interruptedAt = Date.now()
        child.kill('SIGINT')
        const aborted = await standins[1].waitForAbort(3_000)
        expect(aborted.abortedAt! - interruptedAt).toBeLessThan(2_000)
        expect(aborted.tokensSent).toBeLessThan(DEFAULT_TOKENS.length)
        expect(await exited).toBe(130)
      } finally {
        child.kill('SIGKILL')
      }
      expect(DEFAULT_TOKENS.join('').startsWith(out)).toBe(true)
      expect(out.length).toBeLessThan(DEFAULT_TOKENS.join('').length)
    } finally {
      standins[1].knobs.tokensPerSecond = 0
    }
  })

  it('/metrics: Prometheus text with libp2p metrics, per daemon', async () => {
    for (const node of swarm.nodes) {
      const res = await fetch(`${node.daemon.apiUrl}/metrics`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
      const text = await res.text()
      expect(text).toMatch(/^# TYPE libp2p_data_transfer_bytes_total counter$/m)
      // each node reports its own connections, not the first node's
      const conns = [...text.matchAll(/^libp2p_connection_manager_connections\{[^}]*="(?:inbound|outbound)"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
      expect(conns).toBe(node.daemon.libp2p.getConnections().length)
      for (const name of ['krill_requests_total', 'krill_tokens_total', 'krill_time_to_first_token_seconds', 'krill_failovers_total',
        'krill_announcements_rejected_total', 'krill_active_streams', 'krill_served_requests_total', 'krill_serving_slots']) {
        expect(text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'))
      }
    }
    // the chats above went through node 0 to the stand-ins behind nodes 1 and 2
    const zero = await (await fetch(`${swarm.nodes[0].daemon.apiUrl}/metrics`)).text()
    const value = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}.]/g, c => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
    expect(value(zero, 'krill_requests_total{outcome="done"}')).toBeGreaterThanOrEqual(2)
    expect(value(zero, 'krill_requests_total{outcome="cancelled"}')).toBeGreaterThanOrEqual(1)
    expect(value(zero, 'krill_tokens_total')).toBeGreaterThanOrEqual(2 * DEFAULT_TOKENS.length)
    expect(value(zero, 'krill_time_to_first_token_seconds_count{where="remote"}')).toBeGreaterThanOrEqual(3)
    expect(value(zero, 'krill_active_streams{direction="outbound"}')).toBe(0)
    const two = await (await fetch(`${swarm.nodes[2].daemon.apiUrl}/metrics`)).text()
    expect(value(two, 'krill_served_requests_total{outcome="done"}')).toBeGreaterThanOrEqual(1)
    expect(value(two, 'krill_served_requests_total{outcome="cancelled"}')).toBeGreaterThanOrEqual(1)
    expect(value(two, 'krill_serving_slots{state="total"}')).toBe(swarm.nodes[2].config.slots)
  })
})

describe('krill client commands without a daemon', () => {
  it('every client command says where it looked and how to start one (exit 1)', async () => {
    const api = `127.0.0.1:${await closedPort()}`
    for (const args of [['status'], ['peers'], ['models'], ['providers', LLAMA], ['ping', '12D3KooWSsmH5BXnAV7hr9pvzdFoazDNC2ejxPgVcpuCV8uNxaRW'], ['connect', '/ip4/127.0.0.1/tcp/1'], ['chat', '-m', LLAMA, 'hi']]) {
      const r = await runKrill([...args, '--api', api])
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr).toContain(`no daemon at http://${api} — start one with \`krill daemon\``)
    }
  })

  it('with --json every error is one {"error":{"code","message","hint"}} line on stderr', async () => {
    const api = `127.0.0.1:${await closedPort()}`
    for (const args of [['status'], ['peers'], ['models'], ['providers', LLAMA], ['ping', '12D3KooWSsmH5BXnAV7hr9pvzdFoazDNC2ejxPgVcpuCV8uNxaRW'], ['connect', '/ip4/127.0.0.1/tcp/1'], ['chat', '-m', LLAMA, 'hi'], ['stop'], ['openclaw', 'config']]) {
      const r = await runKrill([...args, '--json', '--api', api])
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stdout).toBe('')
      const lines = r.stderr.trimEnd().split('\n')
      expect(lines, args.join(' ')).toHaveLength(1)
      expect(JSON.parse(lines[0])).toEqual({ error: { code: 'no_daemon', message: `no daemon at http://${api}`, hint: 'start one with `krill daemon` (or point --api / KRILL_API at a running one)' } })
    }
    // commander's own complaints too, with exit 2
    for (const args of [['ping', '--json'], ['status', '--json', '--frobnicate'], ['connect', 'nonsense', '--json']]) {
      const r = await runKrill(args)
      expect(r.code, args.join(' ')).toBe(2)
      const error = JSON.parse(r.stderr.trimEnd()).error
      expect(error.code).toMatch(/^(bad_usage|bad_multiaddr)$/)
      expect(typeof error.message).toBe('string')
      expect(typeof error.hint).toBe('string')
    }
  })

  it('--api pointing at Ollama (or anything not krill) says so', async () => {
    const ollama = await OllamaStandin.start({ models: [{ name: LLAMA }] })
    try {
      for (const args of [['status'], ['peers'], ['models'], ['chat', '-m', LLAMA, 'hi'], ['id']]) {
        const r = await runKrill([...args, '--api', hostPort(ollama.url)])
        expect(r.code, args.join(' ')).toBe(1)
        expect(r.stderr).toContain(`${ollama.url} is not a krill daemon: it is Ollama`)
        expect(r.stderr).toContain("point --api / KRILL_API at krill's API")
      }
      const json = await runKrill(['status', '--json', '--api', hostPort(ollama.url)])
      expect(JSON.parse(json.stderr).error.code).toBe('not_krill')
      expect(ollama.requests.length).toBe(0)
    } finally {
      await ollama.stop()
    }
    // something else entirely
    const other = createHttpServer((_req, res) => { res.writeHead(404).end('nope') })
    await new Promise<void>(resolve => other.listen(0, '127.0.0.1', resolve))
    try {
      const port = (other.address() as { port: number }).port
      const r = await runKrill(['status', '--api', `127.0.0.1:${port}`])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(`http://127.0.0.1:${port} is not a krill daemon: it answered HTTP 404 without krill's x-krill-version header`)
    } finally {
      other.close()
    }
  })

  it('--help works for each command and a missing argument is exit 2', async () => {
    for (const command of ['status', 'peers', 'models', 'providers', 'ping', 'connect', 'chat']) {
      const help = await runKrill([command, '--help'])
      expect(help.code).toBe(0)
      expect(help.stdout).toMatch(/--json/)
      expect(help.stdout).toMatch(/--api/)
    }
    const missing = await runKrill(['ping'])
    expect(missing.code).toBe(2)
  })
})

describe('krill daemon start-up progress', () => {
  it('says on stderr when its models have been announced', async () => {
    const standin = await OllamaStandin.start({ models: [{ name: LLAMA }] })
    const dataDir = await tempDir()
    const daemon = await spawnDaemon(['--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--ollama', standin.url, '--data-dir', dataDir])
    try {
      await waitFor(() => daemon.stderr().includes(`models announced: ${LLAMA}`), 'the "models announced" line', 15_000)
      expect(daemon.stderr()).toMatch(/listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+/)
    } finally {
      await daemon.stop()
      await standin.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('API bearer token', () => {
  it('a daemon with apiToken rejects requests without it (401) and accepts them with it', async () => {
    const token = 'a-test-token-of-32-characters!!!'
    const { daemon, config } = await startTestDaemon({ apiToken: token })
    try {
      const none = await fetch(`${daemon.apiUrl}/krill/v1/status`)
      expect(none.status).toBe(401)
      const wrong = await fetch(`${daemon.apiUrl}/metrics`, { headers: { authorization: 'Bearer wrong' } })
      expect(wrong.status).toBe(401)
      const right = await fetch(`${daemon.apiUrl}/krill/v1/status`, { headers: { authorization: `Bearer ${token}` } })
      expect(right.status).toBe(200)
      expect((await right.json()).peerId).toBe(daemon.peerId.toString())

      const cliWithout = await runKrill(['status', '--api', hostPort(daemon.apiUrl)], { env: { KRILL_API_TOKEN: '' } })
      expect(cliWithout.code).toBe(1)
      expect(cliWithout.stderr).toMatch(/bearer token/)
      const cliWith = await runKrill(['status', '--json', '--api', hostPort(daemon.apiUrl)], { env: { KRILL_API_TOKEN: token } })
      expect(cliWith.code).toBe(0)
      expect(JSON.parse(cliWith.stdout).peerId).toBe(daemon.peerId.toString())
    } finally {
      await daemon.stop()
      await rm(config.dataDir, { recursive: true, force: true })
    }
  })
})
