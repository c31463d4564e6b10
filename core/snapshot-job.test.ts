// Proves an incremental snapshot is exact: a SnapshotJob started at some moment produces byte-for-byte the
// snapshot encodeSnapshot() gives at that moment, even though between its chunks the ledger keeps applying
// commands that change copied and not-yet-copied accounts, evict window entries and open new accounts.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Engine, type Command } from "./index.ts";
import { SnapshotJob } from "./snapshot-job.ts";
import { seededRandom } from "./testing/random.ts";

const SIZES = { accountsMax: 512, partnersMax: 8, holdsMax: 256, idempotencyCommandsMax: 1000, ringSlots: 2048 };

const random = seededRandom;

function batch(next: () => number, tag: string, count: number, accounts: number): Command[] {
  const commands: Command[] = [];
  for (let i = 0; i < count; i++) {
    const account = `a${Math.floor(next() * accounts)}`;
    const pick = next();
    const id = `${tag}-${i}`;
    if (pick < 0.35) commands.push({ type: "credit", id, partnerId: "p", accountId: account, amount: 1 + Math.floor(next() * 50) });
    else if (pick < 0.6) commands.push({ type: "debit", id, partnerId: "p", accountId: account, amount: 1 + Math.floor(next() * 50) });
    else if (pick < 0.75) commands.push({ type: "hold", id, partnerId: "p", accountId: account, amount: 1 + Math.floor(next() * 20), expiresInMs: 5 });
    else if (pick < 0.85) commands.push({ type: "openAccount", id, partnerId: "p", accountId: `n${tag}${i}`, currency: "EUR" });
    else if (pick < 0.92) commands.push({ type: "freeze", id, partnerId: "p", accountId: account });
    else commands.push({ type: "unfreeze", id, partnerId: "p", accountId: account });
  }
  return commands;
}

describe("incremental snapshot", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`job bytes equal encodeSnapshot at its start while commands run between chunks (seed ${seed})`, async () => {
      const next = random(seed);
      const engine = new Engine(SIZES);
      const accounts = 200;
      const opens: Command[] = Array.from({ length: accounts }, (_, k) => ({ type: "openAccount", id: `o${k}`, partnerId: "p", accountId: `a${k}`, currency: "EUR" }));
      engine.execute(opens, { timeMs: 1 });
      let time = 2;
      for (let round = 0; round < 5; round++) engine.execute(batch(next, `w${round}`, 200, accounts), { timeMs: time++ });
      const expected = engine.snapshot();
      const job = new SnapshotJob(engine.ledger, 16);
      let interleaved = 0;
      const bytes = await job.run(async () => {
        engine.execute(batch(next, `j${interleaved++}`, 40, accounts), { timeMs: time++ });
      });
      assert.ok(interleaved > 20, "commands ran between many chunks");
      assert.equal(engine.ledger.observer, undefined, "the job detached itself");
      assert.deepEqual(bytes, expected);
      assert.equal(Engine.restore(bytes).lastSequence, job.lastSequence);
    });
  }

  test("a second job cannot start while one runs", () => {
    const engine = new Engine(SIZES);
    new SnapshotJob(engine.ledger);
    assert.throws(() => new SnapshotJob(engine.ledger), /already being taken/);
  });
});
