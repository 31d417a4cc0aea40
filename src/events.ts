/** The notable things a daemon reports as JSON lines on stdout (with --json). */
export type DaemonEvent =
  | { event: 'ready', peerId: string, addrs: string[], api: string, network: 'private' | 'public' }
  | { event: 'peer:joined', peerId: string }
  | { event: 'peer:left', peerId: string }
  | { event: 'model:appeared', model: string, digest: string, peerId: string }
  | { event: 'model:vanished', model: string, digest: string, peerId: string }
  /** we answered a peer's chat; peerId is the consumer */
  | { event: 'request:served', model: string, peerId: string, tokens: number, durationMs: number, outcome: string }
  /** our API's chat was answered by the network; peerId is the provider that finished it; ttftMs null when no token came */
  | { event: 'request:routed', model: string, peerId: string, tokens: number, durationMs: number, outcome: string, ttftMs: number | null }
  | { event: 'ollama:unreachable', url: string }
  | { event: 'ollama:reachable', url: string }
  | { event: 'stopping' }

export type EventSink = (event: DaemonEvent) => void
