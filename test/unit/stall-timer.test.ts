import { describe, expect, it } from 'vitest'
import { StallTimer } from '../../src/stall-timer.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('StallTimer', () => {
  it('fires after its limit of silence, not while touched, and not after clear', async () => {
    let fired = 0
    const started = Date.now()
    const t = new StallTimer(200, () => { fired++ })
    // touched for 600 ms: three limits long, no firing
    let lastTouch = 0
    while (Date.now() - started < 600) {
      t.touch()
      lastTouch = Date.now()
      await sleep(20)
    }
    expect(fired).toBe(0)
    // the silence started at the last touch (a sleep may have taken longer on a loaded machine)
    const quietFrom = lastTouch
    while (fired === 0 && Date.now() - quietFrom < 5_000) await sleep(5)
    expect(fired).toBe(1)
    // never before the limit (the upper end depends on the machine's load)
    expect(Date.now() - quietFrom).toBeGreaterThanOrEqual(195)
    await sleep(400)
    expect(fired).toBe(1)

    let cleared = 0
    const c = new StallTimer(50, () => { cleared++ })
    c.clear()
    await sleep(150)
    expect(cleared).toBe(0)
  })
})
