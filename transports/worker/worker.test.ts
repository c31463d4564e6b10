// Proves shards on worker threads behave like shards in process: commands, reads and metrics go through the
// RoutingGateway to two worker shards, typed errors (InvalidCommandError with its path, OverloadedError) come back
// as the same classes, and after close() a new worker recovers the same state from disk. A worker that ends (killed,
// or an uncaught error) refuses what waits and what comes as ShardUnavailableError, and a call that cannot cross to
// the thread (an argument postMessage cannot clone) is refused alone, without ending the process.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidCommandError, OverloadedError, ShardMap, ShardUnavailableError, type Command } from "../../core/index.ts";
import { RoutingGateway } from "../gateway.ts";
import { WorkerShard } from "./index.ts";

const directory = mkdtempSync(join(tmpdir(), "hotledger-worker-test-"));
after(() => rmSync(directory, { recursive: true, force: true }));

const start = (index: number, log: (line: string) => void = () => {}) =>
  WorkerShard.start({ directory: join(directory, `shard-${index}`), fsync: "batch", accountsMax: 1024, idempotencyCommandsMax: 4096 }, log);

test("a gateway over worker shards: commands, reads, metrics, typed errors, recovery after close", async () => {
  let shards = [await start(0), await start(1)];
  const map = new ShardMap({ shardCount: 2 });
  const partners = ["partner-1", "partner-2"];
  assert.notEqual(map.shardOf(partners[0]), map.shardOf(partners[1]), "the two partners live on different workers");
  let gateway = new RoutingGateway(shards, map);
  try {
    assert.equal(gateway.ready(), true);
    const opens: Command[] = partners.map((partnerId) => ({ type: "openAccount", id: "o", partnerId, accountId: "a", currency: "EUR" }));
    assert.deepEqual((await gateway.submit(opens)).map((result) => result.code), ["ok", "ok"]);
    const credits = await Promise.all(
      Array.from({ length: 40 }, (_, i) => gateway.submit([{ type: "credit", id: `c${i}`, partnerId: partners[i % 2], accountId: "a", amount: i + 1 }])),
    );
    assert.ok(credits.every(([result]) => result.code === "ok"));
    assert.equal((await gateway.account(partners[0], "a"))?.balance, [...Array(20).keys()].reduce((sum, i) => sum + 2 * i + 1, 0));
    assert.equal((await gateway.storedResult(partners[1], "c1"))?.balance, 2);
    const metrics = await gateway.metrics();
    assert.equal(metrics[0].resultsByCode[0] + metrics[1].resultsByCode[0], 42);
    await assert.rejects(
      gateway.submit([{ type: "credit", id: "", partnerId: partners[0], accountId: "a", amount: 1 }]),
      (error: unknown) => error instanceof InvalidCommandError && error.path === "commands[0].id",
    );
    const tooMany = Array.from({ length: 1000 }, (_, i): Command => ({ type: "credit", id: `x${i}`, partnerId: partners[0], accountId: "a", amount: 1 }));
    const flood = await Promise.allSettled(Array.from({ length: 12 }, () => gateway.submit(tooMany)));
    assert.ok(flood.some((outcome) => outcome.status === "rejected" && outcome.reason instanceof OverloadedError), "a full ring is OverloadedError");
    const balance = (await gateway.account(partners[0], "a"))?.balance;
    await Promise.all(shards.map((shard) => shard.close()));
    shards = [await start(0), await start(1)];
    gateway = new RoutingGateway(shards, map);
    assert.equal((await gateway.account(partners[0], "a"))?.balance, balance, "recovered from disk by a new worker");
    const [retry] = await gateway.submit([{ type: "credit", id: "c0", partnerId: partners[0], accountId: "a", amount: 1 }]);
    assert.equal(retry.duplicate, true);
  } finally {
    await Promise.all(shards.map((shard) => shard.close()));
  }
});

test("a worker that stops on its own: calls waiting and calls after are refused with ShardUnavailableError, close() ends", async () => {
  const shard = await start(2);
  await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }], {});
  // The thread ends without close() (as an uncaught error or an out-of-memory kill would end it).
  const waiting = shard.account("p", "a");
  await (shard as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  const refused = (error: unknown) => error instanceof Error && error.name === "ShardUnavailableError" && /shard worker stopped/.test(error.message);
  await assert.rejects(waiting, (error: unknown) => error instanceof Error && error.name === "ShardUnavailableError");
  await assert.rejects(shard.submit([{ type: "credit", id: "c", partnerId: "p", accountId: "a", amount: 1 }], {}), refused);
  assert.equal(shard.accepting, false);
  const closing = await Promise.race([shard.close().then(() => "closed"), new Promise((resolve) => setTimeout(() => resolve("hung"), 5000))]);
  assert.equal(closing, "closed");
});

test("a worker that fails with an uncaught error: the call waiting is refused with ShardUnavailableError, the error is logged", async () => {
  const logged: string[] = [];
  const shard = await start(3, (line) => logged.push(line));
  await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }], {});
  // A credit waits for its journal write; the same message carries a request the worker cannot read, so handling it
  // throws outside any try (as a bug in the worker would) and the thread ends with an uncaught error.
  const waiting = shard.submit([{ type: "credit", id: "c", partnerId: "p", accountId: "a", amount: 1 }], {});
  (shard as unknown as { outbox: unknown[] }).outbox.push(null);
  await assert.rejects(waiting, (error: unknown) => error instanceof ShardUnavailableError && error.retryAfterMs > 0);
  await assert.rejects(shard.account("p", "a"), (error: unknown) => error instanceof ShardUnavailableError);
  assert.ok(logged.some((line) => /failed: .*TypeError/s.test(line)), `the worker's error is logged: ${logged.join(" | ")}`);
  assert.equal(shard.accepting, false);
  await shard.close();
});

test("a call whose arguments cannot be cloned is refused alone; the other calls of its turn are answered", async () => {
  const shard = await start(4);
  try {
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }], {});
    const before = shard.account("p", "a");
    const uncloneable = shard.submit([{ type: "credit", id: "c1", partnerId: "p", accountId: "a", amount: 1, note: () => "x" } as Command], {});
    const after = shard.submit([{ type: "credit", id: "c2", partnerId: "p", accountId: "a", amount: 2 }], {});
    await assert.rejects(uncloneable, (error: unknown) => error instanceof InvalidCommandError && error.path === "commands");
    assert.equal((await before)?.balance, 0);
    assert.equal((await after)[0].code, "ok");
    assert.equal((await shard.account("p", "a"))?.balance, 2, "only the clonable credit was applied");
  } finally {
    await shard.close();
  }
});
