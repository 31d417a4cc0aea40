/**
 * gossipsub peer scoring for krill's one topic. Without topic parameters gossipsub
 * does not count invalid messages at all, so a peer whose announcements our validator
 * Rejects would never lose standing. With them, every Rejected announcement counts
 * against the peer that delivered it (P4, squared), and a peer that keeps sending
 * garbage is first no longer gossiped with, then not published to, then graylisted:
 * everything it sends is dropped unread.
 *
 * Announcements are sparse (one per peer every TTL/3, about 20 s by default), so the
 * mesh-delivery-rate penalty (P3/P3b), built for busy topics, is off: it would punish
 * quiet honest peers for having nothing to say.
 */
import { createTopicScoreParams, type PeerScoreParams, type PeerScoreThresholds, type TopicScoreParams } from '@libp2p/gossipsub/score'
import { ANNOUNCE_TOPIC } from './announcement-validator.js'
import { ALL_SHARD_TOPICS } from './shards.js'

/** weight of one Rejected announcement; the penalty grows with the square of the count */
export const INVALID_MESSAGE_WEIGHT = -10

export const ANNOUNCE_TOPIC_SCORE: Partial<TopicScoreParams> = {
  topicWeight: 1,
  // P1: a little credit for staying in the mesh (at most +1 after 100 s)
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1_000,
  timeInMeshCap: 100,
  // P2: credit for being first with a valid announcement (at most +5)
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 5,
  // P3/P3b off: see above
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  // P4: Rejected announcements. Three are enough to graylist (3² × -10 = -90 < -80);
  // the count decays by 1 % a second, so a single mistake is forgotten in minutes
  // and a flood in about half an hour.
  invalidMessageDeliveriesWeight: INVALID_MESSAGE_WEIGHT,
  invalidMessageDeliveriesDecay: 0.99
}

/**
 * Peers behind one address (a home or office NAT) are normal in krill, and a swarm
 * on one machine shares 127.0.0.1: the co-location penalty would graylist them. Loopback
 * peers are exempt; others start paying beyond 10 peers per address, as gossipsub's
 * default does.
 */
const LOOPBACK = new Set(['127.0.0.1', '::1'])

export function announceScoreParams (): Partial<PeerScoreParams> {
  return {
    // the shard topics (krill/models/2/<shard>) score as krill/models/1 does
    topics: Object.fromEntries([ANNOUNCE_TOPIC, ...ALL_SHARD_TOPICS].map(t => [t, createTopicScoreParams(ANNOUNCE_TOPIC_SCORE)])),
    IPColocationFactorWhitelist: LOOPBACK
  }
}

/** gossipsub's defaults, stated here so that the graylist point is documented next to P4 */
export const ANNOUNCE_SCORE_THRESHOLDS: Partial<PeerScoreThresholds> = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 20
}
