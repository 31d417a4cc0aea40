import { describe, expect, it } from 'vitest'
import { SlotQueue } from '../../src/protocol/slot-queue.js'

describe('SlotQueue', () => {
  it('grants slots, queues in FIFO order and refuses beyond maxQueue', async () => {
    const q = new SlotQueue(2, 2)
    const a = q.enter()
    const b = q.enter()
    const c = q.enter()
    const d = q.enter()
    expect([a?.position, b?.position, c?.position, d?.position]).toEqual([0, 0, 1, 2])
    expect(q.enter()).toBeUndefined()
    expect({ active: q.active, queued: q.queued }).toEqual({ active: 2, queued: 2 })

    const order: string[] = []
    void c?.ready.then(() => order.push('c'))
    void d?.ready.then(() => order.push('d'))
    const releaseA = await a?.ready
    releaseA?.()
    releaseA?.() // idempotent: must not free a second slot
    await new Promise(resolve => setImmediate(resolve))
    expect(order).toEqual(['c'])
    expect({ active: q.active, queued: q.queued }).toEqual({ active: 2, queued: 1 })
    ;(await b?.ready)?.()
    await new Promise(resolve => setImmediate(resolve))
    expect(order).toEqual(['c', 'd'])
    expect(q.queued).toBe(0)
  })

  it('lets an aborted waiter leave the line', async () => {
    const q = new SlotQueue(1, 5)
    const first = q.enter()
    const ctl = new AbortController()
    const second = q.enter(ctl.signal)
    const third = q.enter()
    expect(third?.position).toBe(2)
    ctl.abort(new Error('gone'))
    await expect(second?.ready).rejects.toThrow('gone')
    expect(q.queued).toBe(1)
    ;(await first?.ready)?.()
    const releaseThird = await third?.ready
    expect(q.active).toBe(1)
    releaseThird?.()
    expect(q.active).toBe(0)
  })

  it('rejects everyone waiting on demand', async () => {
    const q = new SlotQueue(1, 3)
    q.enter()
    const waiting = [q.enter(), q.enter()]
    q.rejectWaiting(new Error('shutting down'))
    for (const w of waiting) await expect(w?.ready).rejects.toThrow('shutting down')
    expect(q.queued).toBe(0)
    expect(q.active).toBe(1)
  })

  it('with maxQueue 0 only admits what fits in the slots', () => {
    const q = new SlotQueue(1, 0)
    expect(q.enter()?.position).toBe(0)
    expect(q.enter()).toBeUndefined()
    expect(() => new SlotQueue(0, 1)).toThrow(RangeError)
  })
})
