import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { rm } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KRILL_BIN, runKrill } from '../helpers/cli.js'
import { startSwarm, startTestDaemon, type Swarm } from '../helpers/swarm.js'
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

describe('krill client commands against a 3-node swarm', () => {
  let swarm: Swarm
  let api: string
  let ids: string[]

  beforeAll(async () => {
    swarm = await startSwarm(3)
    ids = swarm.nodes.map(n => n.daemon.peerId.toString())
    api = hostPort(swarm.nodes[0].daemon.apiUrl)
    // node 0 is everybody's bootstrap peer: it sees the other two first
    await waitFor(() => swarm.nodes[0].daemon.libp2p.getPeers().length === 2, 'node 0 to be connected to nodes 1 and 2')
  })

  afterAll(async () => {
    await swarm?.stop()
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

    const table = await runKrill(['status'], { env: { KRILL_API: api } })
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(new RegExp(`^peer id\\s+${ids[0]}$`, 'm'))
    expect(table.stdout).toMatch(/^connections\s+\d+ \(2 peers\)$/m)
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

    const table = await runKrill(['peers', '--api', api])
    expect(table.code).toBe(0)
    const lines = table.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^PEER\s+ADDRESS\s+TYPE\s+LATENCY\s+AGENT\s+MODELS$/)
    expect(lines).toHaveLength(3)
    for (const id of [ids[1], ids[2]]) {
      expect(table.stdout).toMatch(new RegExp(`^${id}\\s+/ip4/127\\.0\\.0\\.1/tcp/\\d+\\S*\\s+direct\\s+[\\d.]+ ms\\s+krill/`, 'm'))
    }
  })

  it('peers --watch redraws in place and exits 0 on Ctrl-C', async () => {
    const child = spawn(process.execPath, [KRILL_BIN, 'peers', '--watch', '--api', api], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      // two frames: the first draw and a refresh 2 s later
      await waitFor(() => out.split('\x1b[H\x1b[2J').length >= 3, 'two redraws', 15_000)
      child.kill('SIGINT')
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
    const frames = out.split('\x1b[H\x1b[2J').filter(f => f !== '')
    for (const frame of frames.slice(0, 2)) {
      expect(frame).toContain(ids[1])
      expect(frame).toContain(ids[2])
    }
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

  it('connect: a malformed multiaddr reaching the API directly is a 400', async () => {
    const res = await fetch(`${swarm.nodes[0].daemon.apiUrl}/krill/v1/connect`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ multiaddr: 'nope' })
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error.message).toMatch(/not a valid multiaddr/)
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
    }
  })
})

describe('krill client commands without a daemon', () => {
  it('every client command says where it looked and how to start one (exit 1)', async () => {
    const api = `127.0.0.1:${await closedPort()}`
    for (const args of [['status'], ['peers'], ['ping', '12D3KooWSsmH5BXnAV7hr9pvzdFoazDNC2ejxPgVcpuCV8uNxaRW'], ['connect', '/ip4/127.0.0.1/tcp/1']]) {
      const r = await runKrill([...args, '--api', api])
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr).toContain(`no daemon at http://${api} — start one with \`krill daemon\``)
    }
  })

  it('--help works for each command and a missing argument is exit 2', async () => {
    for (const command of ['status', 'peers', 'ping', 'connect']) {
      const help = await runKrill([command, '--help'])
      expect(help.code).toBe(0)
      expect(help.stdout).toMatch(/--json/)
      expect(help.stdout).toMatch(/--api/)
    }
    const missing = await runKrill(['ping'])
    expect(missing.code).toBe(2)
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
