import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { describe, expect, it } from 'vitest'
import { halfWindowUpdates } from '../../src/node/yamux-window.js'

const WINDOW = 256 * 1024

/** a yamux stream's window state, with the frames it sends recorded */
function streamAt (state: StreamState, used: number): { stream: { sendWindowUpdate: () => void }, sent: Array<{ flag: number, length: number }> } {
  const sent: Array<{ flag: number, length: number }> = []
  const stream = Object.assign(Object.create(YamuxStream.prototype), {
    state,
    streamId: 1,
    recvWindow: WINDOW,
    recvWindowCapacity: WINDOW - used,
    maxStreamWindowSize: 16 * 1024 * 1024,
    epochStart: Date.now(),
    getRTT: () => -1,
    sendFrame: (frame: { flag: number, length: number }) => { sent.push(frame) }
  })
  return { stream, sent }
}

describe('yamux window updates once half the window is read', () => {
  it('without it the library answers every data frame; with it a few hundred bytes get no update', () => {
    // the library's own method, as every stream has it before the tuning
    const before = streamAt(StreamState.Established, 300)
    before.stream.sendWindowUpdate()
    expect(before.sent).toEqual([expect.objectContaining({ length: 300 })])

    halfWindowUpdates()
    const small = streamAt(StreamState.Established, 300)
    small.stream.sendWindowUpdate()
    expect(small.sent).toEqual([])
  })

  it('half the window read: the update goes out, for all of it', () => {
    halfWindowUpdates()
    const half = streamAt(StreamState.Established, WINDOW / 2)
    half.stream.sendWindowUpdate()
    expect(half.sent).toEqual([expect.objectContaining({ length: WINDOW / 2 })])
  })

  it('the ACK of an accepted stream still goes out at once', () => {
    halfWindowUpdates()
    const accepted = streamAt(StreamState.SYNReceived, 40)
    accepted.stream.sendWindowUpdate()
    expect(accepted.sent).toHaveLength(1)
    expect(accepted.sent[0].flag).not.toBe(0)
  })
})
