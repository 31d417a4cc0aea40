import { streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { encode as encodeVarint } from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { FrameFormatError, FrameReader, FrameTooLargeError, TruncatedFrameError, lengthPrefixed, readLengthPrefix, writeFrame } from '../../src/protocol/frame-io.js'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const str = (b: { subarray: () => Uint8Array } | null): string => b == null ? '<eof>' : new TextDecoder().decode(b.subarray())

describe('length prefix (uint8-varint)', () => {
  it.each([0, 1, 127, 128, 300, 16_384, 4 * 1024 * 1024, 2 ** 40])('round-trips %d', n => {
    const bytes = encodeVarint(n)
    expect(readLengthPrefix(bytes)).toEqual({ status: 'ok', value: n, bytes: bytes.byteLength })
  })

  it('tells incomplete from overlong', () => {
    expect(readLengthPrefix(Uint8Array.from([0x80, 0x80]))).toEqual({ status: 'incomplete' })
    expect(readLengthPrefix(new Uint8Array(9).fill(0xff))).toEqual({ status: 'overlong' })
    // a non-minimal encoding still says how many bytes it took
    expect(readLengthPrefix(Uint8Array.from([0x85, 0x00, 0x42]))).toEqual({ status: 'ok', value: 5, bytes: 2 })
    expect(readLengthPrefix(new Uint8ArrayList(Uint8Array.from([0x80]), Uint8Array.from([0x01])))).toEqual({ status: 'ok', value: 128, bytes: 2 })
  })
})

describe('FrameReader', () => {
  it('reassembles frames that arrive a byte at a time, then reports a clean end', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 100 })
    const wire = Uint8Array.from([...lengthPrefixed(text('hello')).subarray(), ...lengthPrefixed(text('')).subarray(), ...lengthPrefixed(text('world')).subarray()])
    for (const byte of wire) a.send(Uint8Array.of(byte))
    await a.close()
    expect(str(await reader.read())).toBe('hello')
    expect(str(await reader.read())).toBe('')
    expect(str(await reader.read())).toBe('world')
    expect(await reader.read()).toBeNull()
  })

  it('reads frames packed into one chunk and frames (and prefixes) split between chunks', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 100_000 })
    const payloads = ['one', 'two', 'x'.repeat(300), '', 'three', 'y'.repeat(20_000), 'end']
    const wire = Uint8Array.from(payloads.flatMap(p => [...lengthPrefixed(text(p)).subarray()]))
    // cuts inside a payload, inside a two-byte prefix (the 300-byte one) and at a boundary
    const cuts = [0, 5, 9, 11, 400, 1_000, 15_000, wire.byteLength]
    for (let i = 1; i < cuts.length; i++) a.send(wire.subarray(cuts[i - 1], cuts[i]))
    await a.close()
    const got: string[] = []
    for (let f = await reader.read(); f != null; f = await reader.read()) got.push(str(f))
    expect(got).toEqual(payloads)
    expect(reader.bufferedBytes).toBe(0)
  })

  it('refuses an oversized frame from its length prefix alone', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 1024 })
    a.send(encodeVarint(5 * 1024 * 1024)) // no body follows
    const err = await reader.read().catch(e => e)
    expect(err).toBeInstanceOf(FrameTooLargeError)
    expect(err.length).toBe(5 * 1024 * 1024)
    a.abort(new Error('done'))
  })

  it('reports a frame cut short by the end of the stream', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 100 })
    a.send(Uint8Array.from([10, 1, 2, 3]))
    await a.close()
    await expect(reader.read()).rejects.toBeInstanceOf(TruncatedFrameError)
  })

  it('rejects a length prefix that is not a sane varint', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 100 })
    a.send(new Uint8Array(12).fill(0xff))
    await expect(reader.read()).rejects.toBeInstanceOf(FrameFormatError)
    a.abort(new Error('done'))
  })

  it('gives up when its signal aborts and surfaces a remote reset', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 100 })
    await expect(reader.read(AbortSignal.timeout(50))).rejects.toThrow(/timed out|aborted/i)
    const pending = reader.read()
    a.abort(new Error('bye'))
    await expect(pending).rejects.toThrow()
  })

  it('pauses the stream above its high-water mark and resumes as frames are read', async () => {
    const [a, b] = await streamPair()
    const reader = new FrameReader(b, { maxFrameBytes: 64, highWaterMark: 256 })
    for (let i = 0; i < 100; i++) a.send(lengthPrefixed(text(`frame-${String(i).padStart(3, '0')}`)))
    await a.close()
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(b.readStatus).toBe('paused')
    expect(reader.bufferedBytes).toBeLessThan(2000)
    const got: string[] = []
    for (let f = await reader.read(); f != null; f = await reader.read()) got.push(str(f))
    expect(got).toHaveLength(100)
    expect(got[0]).toBe('frame-000')
    expect(got[99]).toBe('frame-099')
  })
})

describe('writeFrame', () => {
  it('waits for the stream to drain when it asks for it', async () => {
    const [a, b] = await streamPair({ capacity: 1, delay: 5 })
    const reader = new FrameReader(b, { maxFrameBytes: 100_000 })
    const payload = new Uint8Array(50_000).fill(7)
    let drains = 0
    a.addEventListener('drain', () => { drains++ })
    for (let i = 0; i < 5; i++) {
      await writeFrame(a, payload)
      // it only returns once the stream takes more
      expect(a.writableNeedsDrain).toBe(false)
    }
    expect(drains).toBeGreaterThan(0)
    for (let i = 0; i < 5; i++) expect((await reader.read())?.byteLength).toBe(50_000)
    await a.close()
    expect(await reader.read()).toBeNull()
  })
})
