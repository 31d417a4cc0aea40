/** Peer ids for people: tables show `12D3KooW…a1b2c3`, the full id stays in --json. */
export function shortPeerId (id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}
