/**
 * Which network a node belongs to, and what follows from it — decided here only.
 *
 * - 'private' (the default): a pnet swarm. The first start makes the node its own
 *   swarm (a fresh key in the data dir); `--join TOKEN` or `--swarm-key FILE` name
 *   another one. Nobody without the key gets past the handshake, so serving is on
 *   and nothing asks the home router to open a port unless the user does (--upnp).
 * - 'public' (`--public`): the open krill network, no pnet key. Nodes meet through
 *   the public IPFS DHT (discovery/rendezvous.ts). Strangers connect, so a node
 *   serves only when asked (--serve) — without it, it still answers its own API
 *   from its own Ollama — and maps its port with UPnP to be reachable.
 */
export type NetworkMode = 'private' | 'public'

export interface ModeDefaults {
  /** ask the home router to forward our port (UPnP) unless --upnp / --no-upnp says otherwise */
  upnp: boolean
  /** serve the local Ollama's models unless --serve / --no-serve says otherwise */
  serve: boolean
}

const DEFAULTS: Record<NetworkMode, ModeDefaults> = {
  private: { upnp: false, serve: true },
  public: { upnp: true, serve: false }
}

export function modeDefaults (mode: NetworkMode): ModeDefaults {
  return DEFAULTS[mode]
}

/** The mode the options ask for: `--public` (or `"public": true` in krill.json) is the public network. */
export function networkMode (opts: { public?: boolean } = {}): NetworkMode {
  return opts.public === true ? 'public' : 'private'
}

/** Who can use this node's Ollama, in one sentence for the start-up banner. */
export function whoCanUse (mode: NetworkMode, serving: boolean): string {
  if (!serving && mode === 'public') return 'this node serves nobody on the public network (add --serve to share): its Ollama answers only its own API, and providers read your prompts in clear'
  if (!serving) return 'this node serves nobody (--no-serve): it only uses and relays for the network'
  return mode === 'private'
    ? 'only members of this private swarm (nodes you invite with `krill invite`) can use this node\'s Ollama'
    : 'anyone on the public krill network can use this node\'s Ollama, and providers read prompts in clear'
}
