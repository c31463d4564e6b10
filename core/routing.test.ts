// Proves routing is stable and configurable: pinned partners go where they are pinned, others by a fixed hash
// that spreads partners over every shard and never depends on the process; bad configuration is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ShardMap } from "./routing.ts";

test("pinned partners go to their shard; the rest by a stable hash over all shards", () => {
  const map = new ShardMap({ shardCount: 4, pinned: { "hot-partner": 3 } });
  assert.equal(map.shardOf("hot-partner"), 3);
  // FNV-1a is fixed (values computed independently in Python): they must never change, or partners would move
  // shards between deploys.
  assert.deepEqual(["a", "b", "partner-1", "partner-2"].map((p) => map.shardOf(p)), [0, 1, 3, 2]);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(map.shardOf(`p${i}`));
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
});

test("bad routing configuration is refused", () => {
  assert.throws(() => new ShardMap({ shardCount: 0 }), RangeError);
  assert.throws(() => new ShardMap({ shardCount: 2, pinned: { p: 2 } }), /pinned to shard 2/);
});
