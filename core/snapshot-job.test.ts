// Proves an incremental snapshot is exact: a SnapshotJob started at some moment produces byte-for-byte the
// snapshot encodeSnapshot() gives at that moment, even though between its chunks the ledger keeps applying
// commands that change copied and not-yet-copied accounts, evict window entries and open new accounts; and a
// scratch reused from one snapshot to the next (as a shard does) changes no byte of the next one. With small tables
// and the mixed workload, restoring the job's bytes and replaying what ran meanwhile reaches the live state hash.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Engine, type Command } from "./index.ts";
import { SnapshotJob, SnapshotScratch } from "./snapshot-job.ts";
import { seededRandom } from "./testing/random.ts";
import { randomWorkload, workloadOpenings, type WorkloadBatch } from "./testing/workload.ts";

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
      // One scratch for both jobs, as a shard keeps it: the second reuses (and must fully overwrite) the first's memory.
      const scratch = new SnapshotScratch();
      for (let job = 0; job < 2; job++) {
        for (let round = 0; round < 5; round++) engine.execute(batch(next, `w${job}-${round}`, 200, accounts), { timeMs: time++ });
        const expected = engine.snapshot();
        const snapshot = new SnapshotJob(engine.ledger, scratch, 16);
        let interleaved = 0;
        const bytes = await snapshot.run(async () => {
          engine.execute(batch(next, `j${job}-${interleaved++}`, 40, accounts), { timeMs: time++ });
        });
        assert.ok(interleaved > 20, "commands ran between many chunks");
        assert.equal(engine.ledger.observer, undefined, "the job detached itself");
        assert.deepEqual(bytes, expected);
        assert.equal(Engine.restore(bytes).lastSequence, snapshot.lastSequence);
      }
    });
  }

  test("a scratch used by a bigger ledger first leaves nothing behind in a smaller one's snapshot", async () => {
    const scratch = new SnapshotScratch();
    const big = new Engine(SIZES);
    big.execute(Array.from({ length: 300 }, (_, k) => ({ type: "openAccount", id: `o${k}`, partnerId: "p", accountId: `big-account-${k}`, currency: "EUR" })), { timeMs: 1 });
    await new SnapshotJob(big.ledger, scratch).run(async () => {});
    const small = new Engine(SIZES);
    small.execute([{ type: "openAccount", id: "o", partnerId: "q", accountId: "a", currency: "USD" }], { timeMs: 1 });
    const bytes = await new SnapshotJob(small.ledger, scratch).run(async () => {});
    assert.deepEqual(bytes, small.snapshot());
    assert.ok(scratch.take("output", 1).byteLength > bytes.length, "the output memory was reused, not reallocated");
  });

  test("reserve allocates everything the next snapshot of the same state takes, so it allocates nothing", async () => {
    const next = random(9);
    const engine = new Engine(SIZES);
    engine.execute(Array.from({ length: 200 }, (_, k) => ({ type: "openAccount", id: `o${k}`, partnerId: "p", accountId: `a${k}`, currency: "EUR" })), { timeMs: 1 });
    for (let round = 0; round < 6; round++) engine.execute(batch(next, `w${round}`, 200, 200), { timeMs: 2 + round });
    const restored = Engine.restore(engine.snapshot(), SIZES);
    const scratch = new SnapshotScratch();
    SnapshotJob.reserve(restored.ledger, scratch, engine.snapshot().length);
    const reserved = scratch.allocations;
    assert.ok(reserved >= 20, `${reserved} buffers reserved`);
    const bytes = await new SnapshotJob(restored.ledger, scratch).run(async () => {});
    assert.deepEqual(bytes, restored.snapshot());
    assert.equal(scratch.allocations, reserved, "the snapshot allocated no buffer of its own");
  });

  test("a second job cannot start while one runs", () => {
    const engine = new Engine(SIZES);
    new SnapshotJob(engine.ledger);
    assert.throws(() => new SnapshotJob(engine.ledger), /already being taken/);
  });
});

/**
 * What the mixed workload lacks, for a job to meet between its chunks: new partners and currencies, failing groups
 * that open an account in a new currency (rolled back), and holds that expire within a few milliseconds.
 */
function growing(next: () => number, n: number): WorkloadBatch {
  const roll = next();
  if (roll < 0.3) {
    const partnerId = `np${Math.floor(next() * 10)}`;
    return { atomic: false, commands: [{ type: "openAccount", id: `x${n}`, partnerId, accountId: `n${n}`, currency: `C${Math.floor(next() * 30)}X` }] };
  }
  if (roll < 0.6) {
    return { atomic: true, commands: [
      { type: "openAccount", id: `x${n}a`, partnerId: "p1", accountId: `g${n}`, currency: `G${n}X` },
      { type: "credit", id: `x${n}b`, partnerId: "p1", accountId: `g${n}`, amount: 5 },
      { type: "debit", id: `x${n}c`, partnerId: "p1", accountId: next() < 0.5 ? `g${n}` : "a1", amount: next() < 0.5 ? 1 : 1e9 },
    ] };
  }
  return { atomic: false, commands: [{ type: "hold", id: `x${n}h`, partnerId: "p2", accountId: "a1", amount: 1, expiresInMs: 1 + Math.floor(next() * 5) }] };
}

describe("incremental snapshot under the mixed workload", () => {
  // Tables small enough that holds are forgotten, the window wraps (by count and by retention) and accounts run out.
  const SMALL = { accountsMax: 80, partnersMax: 12, holdsMax: 24, idempotencyCommandsMax: 1000, idempotencyRetentionMs: 40, ringSlots: 2048 };
  for (let seed = 1; seed <= 20; seed++) {
    test(`restore of the job's bytes + replay of what ran meanwhile = the live state (seed ${seed})`, async () => {
      const next = random(seed * 7919);
      const engine = new Engine(SMALL);
      const batches = [...workloadOpenings(), ...randomWorkload(seed, 3000)];
      let time = 1;
      let taken = 0;
      let grown = 0;
      const step = (ran?: { batch: WorkloadBatch; timeMs: number }[]) => {
        const batch = next() < 0.3 ? growing(next, grown++) : batches[taken++ % batches.length];
        time += Math.floor(next() * 4);
        engine.execute(batch.commands, { timeMs: time, atomic: batch.atomic });
        ran?.push({ batch, timeMs: time });
      };
      for (let i = 0; i < 200 + Math.floor(next() * 400); i++) step();
      const scratch = new SnapshotScratch();
      for (let job = 0; job < 3; job++) {
        const expected = engine.snapshot();
        const ran: { batch: WorkloadBatch; timeMs: number }[] = [];
        // 1-5 rows per chunk: hundreds of slices, each followed by 0-5 batches.
        const bytes = await new SnapshotJob(engine.ledger, scratch, 1 + Math.floor(next() * 5)).run(async () => {
          for (let k = Math.floor(next() * 6); k > 0; k--) step(ran);
        });
        assert.ok(ran.length > 40, `${ran.length} batches ran during the job`);
        assert.deepEqual(bytes, expected);
        const restored = Engine.restore(bytes, SMALL);
        for (const { batch, timeMs } of ran) restored.execute(batch.commands, { timeMs, atomic: batch.atomic });
        assert.equal(restored.stateHash(), engine.stateHash());
        for (let i = 0; i < 50; i++) step();
      }
    });
  }
});
