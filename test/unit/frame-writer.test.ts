/**
 * FrameWriter (src/protocol/frame-io.ts) on real libp2p message streams
 * (@libp2p/utils streamPair): the bytes it writes, a lone frame going out at once,
 * frames held while the stream is backed up going out in one send, and batches
 * that fit one noise message.
 */
import { streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import type { Stream } from '@libp2p/interface'
import { FrameReader, FrameWriter, MAX_BATCH_BYTES, lengthPrefixed } from '../../src/protocol/frame-io.js'
import { encodeContentDelta } from '../../src/protocol/frames.js'

/** the byte lengths of what the stream was handed, send by send */
function recordSends (stream: Stream): number[] {
  const sizes: number[] = []
  const send = stream.send.bind(stream)
  stream.send = (data) => {
    sizes.push(data.byteLength)
    return send(data)
  }
  return sizes
}

const TOKENS = ['', 'a', ' the', 'é', '漢字', '🦐', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(20_000)]

describe('FrameWriter', () => {
  it('writes a content delta as the same bytes as encodeContentDelta, and other frames as given', async () => {
    const [a, b] = await streamPair()
    const writer = new FrameWriter(a)
    const reader = new FrameReader(b, { maxFrameBytes: 100_000 })
    for (const t of TOKENS) {
      expect(writer.writeContent(t)).toBeUndefined()
      writer.write(Uint8Array.of(1, 2, 3))
    }
    writer.flush()
    await a.close()
    for (const t of TOKENS) {
      expect(Array.from((await reader.read())?.subarray() ?? [])).toEqual(Array.from(encodeContentDelta(t)))
      expect(Array.from((await reader.read())?.subarray() ?? [])).toEqual([1, 2, 3])
    }
    expect(await reader.read()).toBeNull()
  })

  it('sends a lone frame at once and holds the ones right behind it until the window ends', async () => {
    const [a] = await streamPair()
    const sizes = recordSends(a)
    const writer = new FrameWriter(a, { holdMs: 20 })
    writer.writeContent('first')
    expect(sizes).toEqual([lengthPrefixed(encodeContentDelta('first')).byteLength])
    writer.writeContent('second')
    writer.writeContent('third')
    expect(sizes).toHaveLength(1)
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(sizes).toHaveLength(2)
    expect(sizes[1]).toBe(lengthPrefixed(encodeContentDelta('second')).byteLength + lengthPrefixed(encodeContentDelta('third')).byteLength)
    writer.flush()
    // flushed: the next frame goes out at once again
    writer.writeContent('fourth')
    expect(sizes).toHaveLength(3)
  })

  it('holds frames while the stream is backed up and sends them together on the drain', async () => {
    const [a, b] = await streamPair({ capacity: 1, delay: 20 })
    const reader = new FrameReader(b, { maxFrameBytes: 100 })
    const writer = new FrameWriter(a, { holdMs: 1 })
    writer.writeContent('one')
    writer.writeContent('two')
    await new Promise(resolve => setTimeout(resolve, 5))
    // the window's batch found the stream full: nothing more goes out until it drains
    expect(a.writableNeedsDrain).toBe(true)
    const sizes = recordSends(a)
    for (let i = 0; i < 50; i++) expect(writer.writeContent(`t${i}`)).toBeUndefined()
    expect(sizes).toEqual([])
    await new Promise<void>(resolve => { a.addEventListener('drain', () => { resolve() }, { once: true }) })
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(sizes).toHaveLength(1)
    writer.flush()
    await a.close()
    const got: string[] = []
    for (let f = await reader.read(); f != null; f = await reader.read()) got.push(Buffer.from(f.subarray().subarray(4)).toString())
    expect(got).toEqual(['one', 'two', ...Array.from({ length: 50 }, (_, i) => `t${i}`)])
  })

  it('keeps every batch within one noise message when the stream takes everything', async () => {
    const [a] = await streamPair()
    const sizes = recordSends(a)
    const writer = new FrameWriter(a, { holdMs: 1_000 })
    for (let i = 0; i < 30_000; i++) writer.writeContent('token')
    writer.flush()
    expect(sizes.length).toBeGreaterThan(2)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_BATCH_BYTES)
    expect(sizes.reduce((n, s) => n + s, 0)).toBe(30_000 * lengthPrefixed(encodeContentDelta('token')).byteLength)
  })
})
