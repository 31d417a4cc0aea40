import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../src/node/config.js'
import { tempDir } from '../helpers/swarm.js'

const dirs: string[] = []
afterEach(async () => { await Promise.all(dirs.splice(0).map(async d => { await rm(d, { recursive: true, force: true }) })) })

async function withFile (file: unknown): Promise<string> {
  const d = await tempDir()
  dirs.push(d)
  await writeFile(join(d, 'krill.json'), JSON.stringify(file))
  return d
}

describe('limits in krill.json', () => {
  it('default to none set (the protocol defaults apply) and sane connection caps', async () => {
    const c = await resolveConfig({ dataDir: await withFile({}) }, {})
    expect(c.limits).toEqual({})
    expect(c.maxPendingConnections).toBe(16)
    expect(c.inboundConnectionsPerSecond).toBe(10)
  })

  it('take the chat limits a provider may change', async () => {
    const limits = { maxRequestBytes: 1024 * 1024, maxMessages: 50, maxMessageChars: 10_000, maxStreamsPerPeer: 2, requestsPerMinute: 30, requestBurst: 5, requestTimeoutMs: 5_000, stallTimeoutMs: 30_000 }
    const c = await resolveConfig({ dataDir: await withFile({ limits, maxPendingConnections: 8, inboundConnectionsPerSecond: 3 }) }, {})
    expect(c.limits).toEqual(limits)
    expect(c.maxPendingConnections).toBe(8)
    expect(c.inboundConnectionsPerSecond).toBe(3)
  })

  it('refuses unknown limits, the shared frame size, and values that would disable a limit', async () => {
    await expect(resolveConfig({ dataDir: await withFile({ limits: { maxFrameBytes: 10 } }) }, {})).rejects.toThrow(/krill\.json: "limits": Unrecognized key/)
    await expect(resolveConfig({ dataDir: await withFile({ limits: { requestsPerMinute: 0 } }) }, {})).rejects.toThrow(/"limits\.requestsPerMinute"/)
    await expect(resolveConfig({ dataDir: await withFile({ limits: { maxRequestBytes: 10 } }) }, {})).rejects.toThrow(/"limits\.maxRequestBytes"/)
    await expect(resolveConfig({ dataDir: await withFile({ limits: { requestBurst: 1.5 } }) }, {})).rejects.toThrow(/"limits\.requestBurst"/)
  })
})
