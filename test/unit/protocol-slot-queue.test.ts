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

  it('orders the line by standing, and waiting time overtakes standing', async () => {
    let now = 0
    const standing: Record<string, number> = { giver: 0.9, taker: -0.9 }
    const q = new SlotQueue(1, 10, { standing: p => standing[p] ?? 0, agingMs: 1000, now: () => now })
    const first = q.enter(undefined, 'x')
    const order: string[] = []
    const wait = (peer: string): void => { void q.enter(undefined, peer)?.ready.then(release => { order.push(peer); release() }) }
    wait('taker')
    now = 100
    wait('newcomer')
    now = 200
    wait('giver')
    ;(await first?.ready)?.()
    await new Promise(resolve => setImmediate(resolve))
    expect(order).toEqual(['giver', 'newcomer', 'taker'])

    // a taker that has waited 1 agingMs longer still goes after a giver (1000 vs 100 ms)
    const hold = q.enter(undefined, 'x')
    order.length = 0
    now = 10_000
    wait('taker')
    now = 10_000 + 900
    wait('giver')
    now = 11_000
    ;(await hold?.ready)?.()
    await new Promise(resolve => setImmediate(resolve))
    expect(order).toEqual(['giver', 'taker'])
    const hold2 = q.enter(undefined, 'x')
    order.length = 0
    now = 20_000
    wait('taker')
    now = 20_000 + 1900
    wait('giver')
    now = 22_000
    ;(await hold2?.ready)?.()
    await new Promise(resolve => setImmediate(resolve))
    // waited 2000 vs 100 ms: -0.9 + 2.0 = 1.1 > 0.9 + 0.1 = 1.0
    expect(order).toEqual(['taker', 'giver'])
  })

  it('says whether a slot is free', async () => {
    const q = new SlotQueue(1, 1)
    expect(q.hasFreeSlot).toBe(true)
    const a = q.enter()
    expect(q.hasFreeSlot).toBe(false)
    ;(await a?.ready)?.()
    expect(q.hasFreeSlot).toBe(true)
  })
})
