/**
 * Peer policies on real daemons: the serve side refuses peers with FORBIDDEN, the
 * consume side keeps prompts away from excluded providers, and both change without a
 * restart, through the control API or by editing policy.json.
 */
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_TOKENS, OllamaStandin } from '../fixtures/ollama-standin.js'
import { startSwarm, type Swarm, type TestDaemon } from '../helpers/swarm.js'
import { waitFor } from '../helpers/wait.js'

const MODEL = 'llama3.2:1b'

async function chat (node: TestDaemon): Promise<{ status: number, content?: string, error?: string }> {
  const res = await fetch(`${node.daemon.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
  })
  const body = await res.json() as any
  return { status: res.status, content: body.choices?.[0]?.message?.content, error: body.error?.message }
}

async function putPolicy (node: TestDaemon, policy: unknown): Promise<{ status: number, body: any }> {
  const res = await fetch(`${node.daemon.apiUrl}/krill/v1/policy`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(policy) })
  return { status: res.status, body: await res.json() }
}

async function getPolicy (node: TestDaemon): Promise<any> {
  return await (await fetch(`${node.daemon.apiUrl}/krill/v1/policy`)).json()
}

async function metric (node: TestDaemon, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${node.daemon.apiUrl}/metrics`)).text()
  const hit = text.split('\n').find(l => line.test(l))
  return hit != null ? Number(hit.split(' ').at(-1)) : undefined
}

describe('peer policies', () => {
  let standin: OllamaStandin
  let swarm: Swarm
  let provider: TestDaemon, c1: TestDaemon, c2: TestDaemon
  let id1: string, id2: string, providerId: string

  beforeAll(async () => {
    standin = await OllamaStandin.start({ models: [{ name: MODEL }] })
    swarm = await startSwarm(3, i => i === 0 ? { ollama: standin.url, modelRefreshMs: 200 } : {})
    ;[provider, c1, c2] = swarm.nodes
    ;[providerId, id1, id2] = swarm.nodes.map(n => n.daemon.peerId.toString())
    for (const c of [c1, c2]) await waitFor(() => c.daemon.providers.providersFor(MODEL).length === 1, 'the consumers to learn the provider')
  })

  afterAll(async () => {
    await swarm?.stop()
    await standin?.stop()
  })

  it('is open until someone sets one', async () => {
    const got = await getPolicy(provider)
    // every node is in a private swarm now (its own, or the test's shared key)
    expect(got).toMatchObject({ policy: { serve: { deny: [] }, consume: { deny: [] } }, privateSwarm: true, lastError: null })
    expect(got.path).toBe(join(provider.config.dataDir, 'policy.json'))
    expect((await chat(c1)).content).toBe(DEFAULT_TOKENS.join(''))
  })

  it('a serve deny-list set through the API refuses that peer at once and serves the other', async () => {
    const before = standin.requests.length
    const put = await putPolicy(provider, { serve: { deny: [id1] } })
    expect(put.status).toBe(200)
    expect(put.body.policy.serve).toEqual({ deny: [id1] })

    const refused = await chat(c1)
    expect(refused.status).toBe(403)
    expect(refused.error).toMatch(/does not serve your peer: peer .* is on the serve deny-list/)
    expect((await chat(c2)).content).toBe(DEFAULT_TOKENS.join(''))
    // only c2's prompt reached Ollama
    expect(standin.requests.length - before).toBe(1)

    expect(await metric(provider, /^krill_chat_refused_total\{reason="forbidden"\}/)).toBe(1)
    expect(await metric(provider, /^krill_policy_refusals_total\{side="serve"\}/)).toBe(1)
  })

  it('an edit of policy.json applies without a restart; a broken edit keeps the policy in force', async () => {
    const file = join(provider.config.dataDir, 'policy.json')
    const tmp = `${file}.edit`
    await writeFile(tmp, JSON.stringify({ serve: { allow: [id1] } }))
    await rename(tmp, file)
    await waitFor(async () => (await getPolicy(provider)).policy.serve.allow?.[0] === id1, 'the edited file to apply', 5_000)
    expect((await chat(c1)).content).toBe(DEFAULT_TOKENS.join(''))
    expect((await chat(c2)).error).toMatch(/is not on the serve allow-list/)

    await writeFile(tmp, '{"serve": {"allow": [')
    await rename(tmp, file)
    await waitFor(async () => (await getPolicy(provider)).lastError != null, 'the broken edit to be reported', 5_000)
    const got = await getPolicy(provider)
    expect(got.lastError).toMatch(/not valid JSON/)
    expect(got.policy.serve.allow).toEqual([id1])
    expect(await metric(provider, /^krill_policy_reload_errors_total/)).toBe(1)
    expect((await chat(c2)).error).toMatch(/is not on the serve allow-list/)

    await putPolicy(provider, {})
    expect((await chat(c2)).content).toBe(DEFAULT_TOKENS.join(''))
  })

  it('a consume deny-list keeps our prompts away from that provider', async () => {
    const before = standin.requests.length
    expect((await putPolicy(c1, { consume: { deny: [providerId] } })).status).toBe(200)
    const res = await chat(c1)
    expect(res.status).toBe(404)
    expect(standin.requests.length).toBe(before)
    expect(await metric(c1, /^krill_policy_refusals_total\{side="consume"\}/)).toBeGreaterThan(0)

    // an allow-list that names the provider lets it through again
    await putPolicy(c1, { consume: { allow: [providerId] } })
    expect((await chat(c1)).content).toBe(DEFAULT_TOKENS.join(''))
    await putPolicy(c1, { consume: { allow: [id2] } })
    expect((await chat(c1)).status).toBe(404)
    await putPolicy(c1, {})
  })

  it('refuses an invalid policy with 400 and changes nothing', async () => {
    const bad = await putPolicy(provider, { serve: { deny: ['12D3KooWnotapeer'] } })
    expect(bad.status).toBe(400)
    expect(bad.body.error).toMatchObject({ code: 'bad_policy' })
    expect(bad.body.error.message).toMatch(/"serve\.deny\.0": "12D3KooWnotapeer" is not a peer id/)
    expect((await putPolicy(provider, { serve: { deny: [id1] }, sneaky: true })).status).toBe(400)
    expect((await getPolicy(provider)).policy.serve).toEqual({ deny: [] })
  })
})
