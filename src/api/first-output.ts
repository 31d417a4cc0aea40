import type { ChatEvent } from '../engine/types.js'

/**
 * Reads a chat's events up to its first output (a delta or the done), remembering
 * the digest the provider announced. Errors before that point still get a proper
 * HTTP status, since no byte of the answer has been sent yet.
 */
export async function firstOutput (events: AsyncIterator<ChatEvent>): Promise<{ digest: string, first: Exclude<ChatEvent, { type: 'accepted' }> }> {
  let digest = ''
  while (true) {
    const next = await events.next()
    if (next.done === true) throw new Error('the answer ended before it started')
    const event = next.value
    if (event.type === 'accepted') {
      if (event.digest !== '') digest = event.digest
      continue
    }
    return { digest, first: event }
  }
}

/** the next event, or undefined at the end */
export async function nextEvent (events: AsyncIterator<ChatEvent>): Promise<ChatEvent | undefined> {
  const next = await events.next()
  return next.done === true ? undefined : next.value
}

/**
 * An iterator result as the event it carries, or undefined at the end: a plain
 * function, so a streaming loop awaits the router's own promise and no wrapper's
 * (`event = stepOf(await events.next())`).
 */
export function stepOf (next: IteratorResult<ChatEvent>): ChatEvent | undefined {
  return next.done === true ? undefined : next.value
}
