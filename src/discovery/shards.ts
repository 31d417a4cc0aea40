/**
 * Announcement shards (protocols/README.md "Sharded announcements"): at scale a
 * provider announces each model on the gossipsub topic of that model's shard, and a
 * node subscribes only to the shards it serves or uses, so it hears about the
 * models it cares about and not about everyone else's.
 *
 * shard(model) = the first 12 bits of sha256("krill/model/v1/" + id), where id is
 * the model's normalized name (src/models: untagged gets ":latest", ASCII lower
 * case) — the same string the DHT key of the model hashes. Topic:
 * "krill/models/2/" + the shard as three lower-case hex digits. 4096 shards: even if
 * every provider served models nobody else has (the long tail), a shard holds
 * about 60 000 / 4096 ≈ 15 announcers at 100k nodes; nobody subscribes to all of
 * them (small swarms use krill/models/1), so many shards cost nothing.
 */
import { createHash } from 'node:crypto'
import { modelId } from '../models/index.js'

export const SHARD_COUNT = 4096
export const SHARD_TOPIC_PREFIX = 'krill/models/2/'

/** the shard of a model name (any spelling of one model gives one shard) */
export function modelShard (name: string): number {
  const h = createHash('sha256').update(`krill/model/v1/${modelId(name)}`).digest()
  return ((h[0] << 4) | (h[1] >> 4)) % SHARD_COUNT
}

export function shardTopic (shard: number): string {
  return SHARD_TOPIC_PREFIX + shard.toString(16).padStart(3, '0')
}

/** the shard a topic names, or undefined when it is no shard topic */
export function topicShard (topic: string): number | undefined {
  if (!topic.startsWith(SHARD_TOPIC_PREFIX)) return undefined
  const hex = topic.slice(SHARD_TOPIC_PREFIX.length)
  if (!/^[0-9a-f]{3}$/.test(hex)) return undefined
  return parseInt(hex, 16)
}

export const ALL_SHARD_TOPICS: readonly string[] = Array.from({ length: SHARD_COUNT }, (_, i) => shardTopic(i))
