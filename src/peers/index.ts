/** Peers: address kinds, short ids, round-trip times. */
export {
  isLoopbackAddr,
  isLoopbackHost,
  isLoopbackHostHeader,
  isPrivateAddr,
  isPublicAddr,
  isRelayedAddr,
  isUnspecifiedHost,
  relayOf
} from './addr.js'
export { shortPeerId } from './peer-id.js'
export { RoundTripTimes, type RoundTripTimesOptions, type RttSource } from './rtt.js'
