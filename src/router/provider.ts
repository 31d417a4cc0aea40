/**
 * One abstraction for "somewhere a chat can run": the local engine or a remote
 * peer over /krill/chat/1.0.0. Both yield the same ChatEvents, starting with
 * 'accepted', and throw KrillError on failure.
 */
import type { ChatEvent, ChatRequest, Engine } from '../engine/types.js'

export interface Provider {
  /** the peer id (this node's own for the local engine) */
  readonly peerId: string
  readonly local: boolean
  chat: (request: ChatRequest, signal: AbortSignal) => AsyncIterable<ChatEvent>
}

/** Runs a chat on a remote peer; the daemon binds this to requestChat. */
export type RemoteChat = (peerId: string, request: ChatRequest, signal: AbortSignal) => AsyncIterable<ChatEvent>

export function localProvider (selfId: string, engine: Engine, digestOf: (model: string) => string): Provider {
  return {
    peerId: selfId,
    local: true,
    async * chat (request, signal) {
      yield { type: 'accepted', peer: selfId, digest: digestOf(request.model), queuePosition: 0 }
      yield * engine.chat(request, signal)
    }
  }
}

export function remoteProvider (peerId: string, remote: RemoteChat): Provider {
  return {
    peerId,
    local: false,
    chat: (request, signal) => remote(peerId, request, signal)
  }
}
