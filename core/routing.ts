/**
 * Partner-to-shard routing: an explicit map for named (hot) partners, a stable hash for the rest. Pure and
 * deterministic, so every gateway process (and a later NATS router) sends a partner to the same shard.
 */
import { assert } from "./assert.ts";

/** Routing configuration: how many shards, and which partners are pinned to which shard. */
export interface RoutingOptions {
  shardCount: number;
  /** partnerId -> shard index, for partners that need a shard of their own or a chosen one. */
  pinned?: Record<string, number>;
}

/** Routes partners to shards. */
export class ShardMap {
  readonly shardCount: number;
  private readonly pinned: Map<string, number>;

  constructor(options: RoutingOptions) {
    if (!Number.isInteger(options.shardCount) || options.shardCount < 1 || options.shardCount > 1024) {
      throw new RangeError(`shardCount must be an integer in 1..1024, got ${options.shardCount}`);
    }
    this.shardCount = options.shardCount;
    this.pinned = new Map(Object.entries(options.pinned ?? {}));
    for (const [partnerId, shard] of this.pinned) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= this.shardCount) {
        throw new RangeError(`partner ${partnerId} is pinned to shard ${shard}, but there are ${this.shardCount} shards`);
      }
    }
  }

  /** The shard of `partnerId`: its pinned shard, else FNV-1a of its UTF-16 code units modulo the shard count. */
  shardOf(partnerId: string): number {
    const pinned = this.pinned.get(partnerId);
    if (pinned !== undefined) return pinned;
    let hash = 0x811c9dc5;
    for (let i = 0; i < partnerId.length; i++) hash = Math.imul(hash ^ partnerId.charCodeAt(i), 0x01000193);
    const shard = (hash >>> 0) % this.shardCount;
    assert(shard >= 0 && shard < this.shardCount, "shard out of range");
    return shard;
  }
}
