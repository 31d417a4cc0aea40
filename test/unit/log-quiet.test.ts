import { enable, disable } from '@libp2p/logger'
import type { ComponentLogger } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { quietWhenDisabled } from '../../src/log.js'

/** a ComponentLogger that records which loggers it was asked to make */
function recording (): { inner: ComponentLogger, made: string[] } {
  const made: string[] = []
  const inner: ComponentLogger = {
    forComponent: name => {
      made.push(name)
      return Object.assign(() => {}, { enabled: true, error: () => {}, trace: () => {}, newScope: () => { throw new Error('not used') } })
    }
  }
  return { inner, made }
}

describe('libp2p loggers for namespaces nobody switched on', () => {
  afterEach(() => { disable() })

  it('are no-ops made without the real logger; a switched-on namespace, its :error or :trace, gets the real one', () => {
    const on = new Set(['libp2p:on', 'libp2p:err:error', 'libp2p:tr:trace'])
    const { inner, made } = recording()
    const quiet = quietWhenDisabled(inner, ns => on.has(ns))
    const off = quiet.forComponent('libp2p:yamux')
    expect(off.enabled).toBe(false)
    off('nothing %s', 'printed')
    off.error('nor this')
    off.trace('nor this')
    expect(made).toEqual([])
    expect(quiet.forComponent('libp2p:on').enabled).toBe(true)
    quiet.forComponent('libp2p:err')
    quiet.forComponent('libp2p:tr')
    expect(made).toEqual(['libp2p:on', 'libp2p:err', 'libp2p:tr'])
  })

  it('ask again for a scope below a quiet logger: the scope may be switched on by itself', () => {
    const { inner, made } = recording()
    const quiet = quietWhenDisabled(inner, ns => ns === 'libp2p:yamux:mss:select')
    const scoped = quiet.forComponent('libp2p:yamux').newScope('mss:select')
    expect(scoped.enabled).toBe(true)
    expect(made).toEqual(['libp2p:yamux:mss:select'])
    expect(quiet.forComponent('libp2p:yamux').newScope('other').enabled).toBe(false)
  })

  it('follow DEBUG (the debug module\'s namespaces) by default', () => {
    const { inner, made } = recording()
    const quiet = quietWhenDisabled(inner)
    expect(quiet.forComponent('krill:quiet-test').enabled).toBe(false)
    enable('krill:quiet-test')
    expect(quiet.forComponent('krill:quiet-test').enabled).toBe(true)
    expect(made).toEqual(['krill:quiet-test'])
  })
})
