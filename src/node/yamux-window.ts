/**
 * yamux window updates, as go-yamux sends them: once half of a stream's receive
 * window has been read, not after every data frame.
 *
 * @chainsafe/libp2p-yamux 8 answers every data frame it receives with a window
 * update frame — for a chat, one after the request on the provider and one after
 * each Accepted, Delta batch and Done on the consumer: each a noise encryption, a
 * socket write and a wake-up of the other end (which decrypts and handles it),
 * several of them in front of the first token. The updates carry no information
 * while the window is far from used (a chat's few hundred bytes against 256 KiB),
 * so they wait until half of it is: the sender never stalls (it always has at
 * least half a window), and a long answer still gets its updates and the window's
 * growth (the library's own logic runs whenever one is sent). Updates carrying a
 * flag (the SYN of a new stream, the ACK of an accepted one) and those after a
 * pause still go out at once. The option does not exist in the library, so its
 * stream's method is wrapped, once per process.
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

interface WindowFields {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let tuned = false

export function halfWindowUpdates (): void {
  if (tuned) return
  tuned = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowFields) => void }
  const send = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowFields): void {
    // SYNSent and Established send no flag; Init (SYN), SYNReceived (ACK) and Paused are left to the library
    const flagless = this.state === StreamState.SYNSent || this.state === StreamState.Established
    if (flagless && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return
    send.call(this)
  }
}

/** true once halfWindowUpdates() ran (tests) */
export function windowUpdatesTuned (): boolean {
  return tuned
}
