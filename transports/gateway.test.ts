// Proves how RoutingGateway fails a request that spans shards: when several shards refuse it, the caller gets the
// first shard's error and no other rejection is left unhandled (an unhandled rejection ends a Bun or Node process:
// one request that overflowed two worker shards used to take the whole gateway down); a shard that throws at once
// stops the request before the shards after it are asked; and a malformed command anywhere in the request is refused
// before any shard applies anything (over real in-memory shards, whose state is then read back unchanged).
import { test } from "node:test";
import assert from "node:assert/strict";
import { InvalidCommandError, OverloadedError, Shard, ShardMap, ShardUnavailableError, type Command, type Result } from "../core/index.ts";
import { MemoryJournal, MemorySnapshotStore } from "../core/testing/memory-ports.ts";
import { RoutingGateway, type ShardPort } from "./gateway.ts";

const map = new ShardMap({ shardCount: 3 });
/** One partner id per shard. */
const partners = [0, 1, 2].map((shard) => {
  for (let n = 0; n < 1000; n++) if (map.shardOf(`partner-${n}`) === shard) return `partner-${n}`;
  throw new Error(`no partner for shard ${shard}`);
});
const credit = (partnerId: string, id: string): Command => ({ type: "credit", id, partnerId, accountId: "a", amount: 1 });

/** A port whose submit does what `submit` says, counting calls. */
function port(submit: (commands: readonly Command[]) => Promise<Result[]>): ShardPort & { calls: number } {
  const counted = {
    calls: 0,
    submit: (commands: readonly Command[]) => {
      counted.calls++;
      return submit(commands);
    },
    account: () => undefined,
    storedResult: () => undefined,
    metrics: () => { throw new Error("not used"); },
    accepting: true,
  };
  return counted;
}

const later = <T>(value: () => T) => new Promise<T>((resolve, reject) => setTimeout(() => {
  try {
    resolve(value());
  } catch (error) {
    reject(error);
  }
}, 5));

test("several shards reject one request: the caller gets the first shard's error, nothing is left unhandled", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const shards = [
      port(() => later(() => { throw new OverloadedError("shard 0 full"); })),
      port(() => later(() => { throw new ShardUnavailableError("shard 1 disk", 100); })),
      port(() => later(() => { throw new OverloadedError("shard 2 full"); })),
    ];
    const gateway = new RoutingGateway(shards, map);
    await assert.rejects(gateway.submit(partners.map((partnerId, k) => credit(partnerId, `c${k}`))), /shard 0 full/);
    await assert.rejects(gateway.submit(partners.map((partnerId, k) => credit(partnerId, `d${k}`)), { mode: "async" }), /shard 0 full/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(unhandled, []);
    assert.deepEqual(shards.map((shard) => shard.calls), [2, 2, 2], "every shard was asked (in parallel)");
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a shard that throws at once fails the request before the shards after it are asked; results keep request order", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const answer = (commands: readonly Command[]) =>
      later(() => commands.map((command): Result => ({ id: command.id!, status: "ok", code: "ok", seq: 1 })));
    const shards = [
      port(() => later(() => { throw new OverloadedError("shard 0 full, later"); })),
      port(() => { throw new OverloadedError("shard 1 full, at once"); }),
      port(answer),
    ];
    const gateway = new RoutingGateway(shards, map);
    await assert.rejects(gateway.submit([credit(partners[0], "a"), credit(partners[1], "b"), credit(partners[2], "c")]), /shard 1 full, at once/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(unhandled, [], "shard 0's later rejection is handled");
    assert.deepEqual(shards.map((shard) => shard.calls), [1, 1, 0]);

    const working = new RoutingGateway([port(answer), port(answer), port(answer)], map);
    const order = [credit(partners[2], "x"), credit(partners[0], "y"), credit(partners[2], "z"), credit(partners[1], "w")];
    assert.deepEqual((await working.submit(order)).map((result) => result.id), ["x", "y", "z", "w"]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a malformed command for a later shard fails the request before the earlier shard applies its part", async () => {
  const sizes = { accountsMax: 16, partnersMax: 4, holdsMax: 16, idempotencyCommandsMax: 1024, ringSlots: 64 };
  const shards = await Promise.all(
    partners.map(() => Shard.open({ ...sizes, journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), clock: () => 1_000 })),
  );
  try {
    const gateway = new RoutingGateway(shards, map);
    const open = (partnerId: string): Command => ({ type: "openAccount", id: `open:${partnerId}`, partnerId, accountId: "a", currency: "EUR" });
    await gateway.submit(partners.map(open));
    const before = await Promise.all(shards.map((shard) => shard.stateHash()));
    const sequencesBefore = shards.map((shard) => shard.lastSequence);

    // Shard 0's valid credit comes first, so shard 0 would be asked first; shard 1's amount is not a number.
    const bad = { ...credit(partners[1], "c1"), amount: "5" } as unknown as Command;
    await assert.rejects(gateway.submit([credit(partners[0], "c0"), bad]), (error: unknown) => {
      assert.ok(error instanceof InvalidCommandError);
      assert.match(error.message, /commands\[1\]\.amount/, "the path is the command's position in the request");
      return true;
    });
    const missingId = { type: "credit", partnerId: partners[2], accountId: "a", amount: 1 } as Command;
    await assert.rejects(gateway.submit([credit(partners[0], "c0"), credit(partners[1], "c1"), missingId]), InvalidCommandError);

    assert.deepEqual(shards.map((shard) => shard.lastSequence), sequencesBefore, "no shard sequenced anything");
    assert.deepEqual(await Promise.all(shards.map((shard) => shard.stateHash())), before, "no shard's state changed");
    assert.equal((await gateway.account(partners[0], "a"))?.balance, 0);
    assert.equal(await gateway.storedResult(partners[0], "c0"), undefined, "the valid command is not remembered either");
  } finally {
    await Promise.all(shards.map((shard) => shard.close()));
  }
});
