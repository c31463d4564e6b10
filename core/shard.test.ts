// Proves the durable shard's contract over in-memory ports: results are released only after their record is
// appended, concurrent submits share one record (group commit), a failed append applies nothing and makes the
// shard unavailable until it retries, and recovery from journal, snapshot + journal, or an older snapshot when
// the newest is damaged gives the same state hash and idempotency window.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Engine, InvalidCommandError, JournalCorruptError, limits, OverloadedError, Shard, ShardUnavailableError, SnapshotError, type Command } from "./index.ts";
import { KeepingJournal, MemoryJournal, MemorySnapshotStore } from "./testing/memory-ports.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CommandBatchSchema, ResultBatchSchema } from "./gen/hotledger/v1/ledger_pb.ts";
import { scanCommandBatch } from "./command-batch-reader.ts";
import { commandToProto, encodeResultBatch } from "./wire.ts";
import { openWorkloadShard, randomWorkload, workloadOpenings } from "./testing/workload.ts";
import { seededRandom } from "./testing/random.ts";

const SIZES = { accountsMax: 1024, partnersMax: 16, holdsMax: 256, idempotencyCommandsMax: 4096, ringSlots: 64 };

function open(journal: MemoryJournal, snapshots: MemorySnapshotStore, extra: Record<string, unknown> = {}) {
  let now = 1_000;
  return Shard.open({ ...SIZES, journal, snapshots, clock: () => now++, snapshotEveryCommands: 1e9, ...extra });
}

const credit = (id: string, amount: number): Command => ({ type: "credit", id, partnerId: "p", accountId: "a", amount });

/** Lets every pending promise job and the event loop run once. */
const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

describe("durable shard", () => {
  test("results are released after the append; concurrent submits share one record", async () => {
    const journal = new MemoryJournal();
    const shard = await open(journal, new MemorySnapshotStore());
    const opened = shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    const first = shard.submit([credit("c1", 5)]);
    const second = shard.submit([credit("c2", 7), credit("c3", 1)]);
    assert.equal(journal.appends, 0, "nothing is written before the turn ends");
    const results = await Promise.all([opened, first, second]);
    assert.equal(journal.appends, 1, "one record for the three submits");
    assert.deepEqual(results.flat().map((result) => result.code), ["ok", "ok", "ok", "ok"]);
    assert.equal(results[2][1].balance, 13);
    assert.equal(shard.lastSequence, 4);
    await shard.close();
  });

  test("with a yield to the event loop, requests that arrive as a record's results are released join the next record", async () => {
    for (const yieldToEventLoop of [undefined, () => new Promise<void>((resolve) => setTimeout(resolve, 0))]) {
      const journal = new MemoryJournal();
      const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), yieldToEventLoop });
      await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
      let openGate!: () => void;
      journal.gate = new Promise<void>((resolve) => (openGate = resolve));
      const first = shard.submit([credit("c1", 1)]);
      await nextTurn(); // the record of c1 is being written
      const second = shard.submit([credit("c2", 1)]);
      journal.gate = undefined;
      openGate();
      await first;
      // A request that arrives now, as c1's result is released (here: in that result's continuation).
      const third = shard.submit([credit("c3", 1)]);
      await Promise.all([second, third]);
      const counts = journal.records.map((record) => record.commandCount);
      if (yieldToEventLoop === undefined) assert.deepEqual(counts, [1, 1, 1, 1], "without: the next record starts at once");
      else assert.deepEqual(counts, [1, 1, 2], "with: c3 joins c2's record");
      await shard.close();
    }
  });

  test("async mode resolves once durable with no results; the results are stored", async () => {
    const journal = new MemoryJournal();
    const shard = await open(journal, new MemorySnapshotStore());
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    const accepted = await shard.submit([credit("c1", 5), credit("c2", 6)], { mode: "async" });
    assert.deepEqual(accepted, []);
    assert.equal(journal.lastSequence(), 3, "durable when resolved");
    await shard.submit([credit("c3", 1)]);
    assert.equal((await shard.storedResult("p", "c2"))?.balance, 11);
    assert.equal(shard.metrics().resultsByCode[0], 4, "async results are counted too");
    await shard.close();
  });

  test("storedResult of an entry past retention on the clock is undefined before another command arrives", async () => {
    let now = 1_000;
    const retentionMs = 60_000;
    const shard = await Shard.open({ ...SIZES, journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), clock: () => now, snapshotEveryCommands: 1e9, idempotencyRetentionMs: retentionMs });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    const [original] = await shard.submit([credit("c1", 5)]);
    now += retentionMs - 1;
    assert.deepEqual(await shard.storedResult("p", "c1"), { ...original, duplicate: true });
    now += 1;
    assert.equal(await shard.storedResult("p", "c1"), undefined, "past retention: a retry now would be applied anew");
    const [again] = await shard.submit([credit("c1", 5)]);
    assert.equal(again.duplicate, undefined);
    assert.equal((await shard.account("p", "a"))?.balance, 10);
    await shard.close();
  });

  test("metrics count each commit's time in its histogram bucket, and in the sum", async () => {
    const journal = new MemoryJournal();
    let now = 5_000;
    const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => now, snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12 });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    // Each write is held at the journal while the clock moves on by `ms`.
    for (const [index, ms] of [10, 30, 20_000].entries()) {
      let openGate!: () => void;
      journal.gate = new Promise<void>((resolve) => (openGate = resolve));
      const submitted = shard.submit([credit(`c${index}`, 1)]);
      await nextTurn();
      now += ms;
      journal.gate = undefined;
      openGate();
      await submitted;
    }
    const metrics = shard.metrics();
    assert.equal(metrics.records, 4);
    assert.equal(metrics.commitMsSum, 10 + 30 + 20_000);
    const counted = Object.fromEntries(limits.COMMIT_MS_BUCKETS.map((bound, bucket) => [bound, metrics.commitMsBuckets[bucket]]).filter(([, count]) => count > 0));
    assert.deepEqual(counted, { 1: 1, 10: 1, 50: 1 }, "0 ms, 10 ms (a bound is inclusive) and 30 ms in their buckets; 20 s past the last bound");
    await shard.close();
  });

  test("a record is applied while it is written; its results, reads and snapshots wait until it is durable", async () => {
    const journal = new MemoryJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await open(journal, snapshots);
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    let openGate!: () => void;
    journal.gate = new Promise<void>((resolve) => (openGate = resolve));
    const settled: string[] = [];
    const credited = shard.submit([credit("c1", 5)]).then((results) => (settled.push("results"), results));
    await nextTurn();
    const read = shard.account("p", "a").then((account) => (settled.push("read"), account));
    const snapshot = shard.takeSnapshot().then(() => settled.push("snapshot"));
    await nextTurn();
    assert.equal(shard.metrics().lastApplied, 2, "the record is applied while its write is in flight");
    assert.equal(shard.metrics().ringOccupancy, 1, "its slot stays taken until its result is released");
    assert.equal(shard.lastSequence, 1);
    assert.deepEqual(settled, [], "nothing leaves the shard before the record is durable");
    openGate();
    journal.gate = undefined;
    assert.equal((await credited)[0].balance, 5);
    assert.equal((await read)?.balance, 5, "the read is answered at the durable point");
    await snapshot;
    assert.deepEqual(settled, ["results", "read", "snapshot"]);
    assert.deepEqual(await snapshots.list(), [2], "the snapshot of the durable state");
    await shard.close();
  });

  test("slots of a record applied but not yet durable stay taken: the ring is full until its results are released", async () => {
    const journal = new MemoryJournal();
    const shard = await open(journal, new MemorySnapshotStore());
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    let openGate!: () => void;
    journal.gate = new Promise<void>((resolve) => (openGate = resolve));
    const first = shard.submit(Array.from({ length: 40 }, (_, i) => credit(`x${i}`, 1)));
    await nextTurn();
    assert.equal(shard.metrics().lastApplied, 41, "applied while written");
    assert.equal(shard.metrics().ringOccupancy, 40, "the 40 slots are taken until their results are released");
    // 40 + 40 > 64 slots: overwriting the first record's slots would change the results it has yet to release.
    assert.throws(() => shard.submit(Array.from({ length: 40 }, (_, i) => credit(`y${i}`, 1))), OverloadedError);
    openGate();
    journal.gate = undefined;
    const results = await first;
    assert.deepEqual(results.map((result) => [result.id, result.balance]), results.map((_, i) => [`x${i}`, i + 1]));
    await shard.close();
  });

  test("a failed write of an applied record: the shard rebuilds from snapshot and journal; reads and snapshots see only durable state", async () => {
    const journal = new MemoryJournal();
    const snapshots = new MemorySnapshotStore();
    const lines: string[] = [];
    let now = 0;
    const shard = await Shard.open({ ...SIZES, journal, snapshots, clock: () => now, retryAfterMs: 100, snapshotEveryCommands: 1e9, log: (line) => lines.push(line) });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    await shard.submit([credit("c0", 3)]);
    await shard.takeSnapshot();
    await shard.submit([credit("c1", 4)]);
    const hash = await shard.stateHash();
    let openGate!: () => void;
    journal.gate = new Promise<void>((resolve) => (openGate = resolve));
    journal.failNext = 1;
    const failed = shard.submit([credit("c2", 5)]);
    await nextTurn();
    const read = shard.account("p", "a");
    const stored = shard.storedResult("p", "c2");
    const snapshot = shard.takeSnapshot();
    openGate();
    journal.gate = undefined;
    await assert.rejects(failed, ShardUnavailableError);
    assert.equal((await read)?.balance, 7, "not the failed credit");
    assert.equal(await stored, undefined, "the failed command is not in the window");
    await snapshot;
    assert.deepEqual(await snapshots.list(), [3, 2], "the snapshot asked for meanwhile is of the durable state");
    assert.equal(await shard.stateHash(), hash);
    assert.ok(lines.some((line) => /rebuilt .* at sequence 3/.test(line)), lines.join("\n"));
    now = 100;
    const [retried] = await shard.submit([credit("c2", 5)]);
    assert.deepEqual([retried.code, retried.seq, retried.balance], ["ok", 4, 12], "the failed sequence is given out again");
    await shard.close();
  });

  test("when the rebuild after a failed write fails too, reads are refused at once, and a later read rebuilds", async () => {
    class FlakySnapshots extends MemorySnapshotStore {
      failLists = 0;
      lists = 0;
      override async list(): Promise<number[]> {
        this.lists++;
        if (this.failLists > 0) {
          this.failLists--;
          throw new Error("snapshot directory unreadable");
        }
        return super.list();
      }
    }
    const journal = new MemoryJournal();
    const snapshots = new FlakySnapshots();
    let now = 0;
    const shard = await Shard.open({ ...SIZES, journal, snapshots, clock: () => now, retryAfterMs: 100, snapshotEveryCommands: 1e9, log: () => {} });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    await shard.submit([credit("c0", 3)]);
    snapshots.failLists = 2;
    journal.failNext = 1;
    await assert.rejects(shard.submit([credit("c1", 4)]), ShardUnavailableError);
    for (let i = 0; i < 5; i++) await nextTurn(); // the rebuild runs and fails
    await assert.rejects(shard.account("p", "a"), (error: Error) =>
      error instanceof ShardUnavailableError && error.retryAfterMs === 100 && /rebuilding/.test(error.message));
    now = 100;
    await assert.rejects(shard.storedResult("p", "c0"), ShardUnavailableError, "refused, and the rebuild starts again");
    for (let i = 0; i < 5; i++) await nextTurn(); // ... and fails again
    const attempts = snapshots.lists;
    for (let read = 0; read < 3; read++) {
      await assert.rejects(shard.account("p", "a"), (error: Error) => error instanceof ShardUnavailableError && error.retryAfterMs === 100,
        "a failed retry backs off for retryAfterMs again");
      for (let i = 0; i < 5; i++) await nextTurn();
    }
    assert.equal(snapshots.lists, attempts, "no rebuild before retryAfterMs has passed again");
    now = 200;
    await assert.rejects(shard.account("p", "a"), ShardUnavailableError, "refused, and the rebuild starts again");
    for (let i = 0; i < 5; i++) await nextTurn();
    assert.equal((await shard.account("p", "a"))?.balance, 3, "rebuilt: the durable state, without the failed credit");
    await shard.close();
  });

  test("a write that fails while close() runs: the shard stays closing (refuses submits), and closes its journal once", async () => {
    class CountingJournal extends MemoryJournal {
      closes = 0;
      override async close(): Promise<void> {
        this.closes++;
      }
    }
    const journal = new CountingJournal();
    const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => 0, retryAfterMs: 0, log: () => {} });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    let openGate!: () => void;
    journal.gate = new Promise<void>((resolve) => (openGate = resolve));
    journal.failNext = 1;
    const failed = shard.submit([credit("c1", 1)]);
    await nextTurn();
    const closing = shard.close();
    const closingAgain = shard.close();
    journal.gate = undefined;
    openGate();
    await assert.rejects(failed, ShardUnavailableError);
    for (let i = 0; i < 5; i++) await nextTurn(); // the rebuild after the failure
    assert.throws(() => shard.submit([credit("c2", 1)]), /shard closed/, "retryAfterMs has passed, but the shard is closing");
    await Promise.all([closing, closingAgain]);
    await shard.close();
    assert.equal(journal.closes, 1, "the journal is closed once, however many close() calls");
    assert.equal(journal.records.length, 1, "only the open was written");
  });

  test("commit time is measured on the clock even when the stamped time is ahead of it (a clock that stepped back)", async () => {
    const journal = new MemoryJournal();
    let now = 10_000;
    const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => now, snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12 });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    now = 4_000; // the next record is stamped 10,000 (time never goes back in the journal)
    let openGate!: () => void;
    journal.gate = new Promise<void>((resolve) => (openGate = resolve));
    const submitted = shard.submit([credit("c1", 1)]);
    await nextTurn();
    now += 3;
    journal.gate = undefined;
    openGate();
    await submitted;
    assert.equal(shard.metrics().commitMsSum, 3);
    await shard.close();
  });

  test("bad input throws before sequencing; a full ring is OverloadedError", async () => {
    const shard = await open(new MemoryJournal(), new MemorySnapshotStore());
    assert.throws(() => shard.submit([{ type: "credit", id: "", partnerId: "p", accountId: "a", amount: 1 }]), InvalidCommandError);
    for (const atomic of [false, true]) {
      assert.throws(() => shard.submit([null as unknown as Command], { atomic }), /commands\[0\]: must be an object/, `atomic ${atomic}`);
    }
    const many = Array.from({ length: 40 }, (_, i) => credit(`x${i}`, 1));
    const accepted = shard.submit(many);
    assert.throws(() => shard.submit(many), OverloadedError);
    await accepted;
    await shard.close();
  });

  test("a failed append applies nothing, fails its requests, and the shard retries after retryAfterMs", async () => {
    const journal = new MemoryJournal();
    let now = 0;
    const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => now, retryAfterMs: 100 });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    const hash = await shard.stateHash();
    journal.failNext = 1;
    await assert.rejects(shard.submit([credit("c1", 5)]), ShardUnavailableError);
    assert.equal(await shard.stateHash(), hash, "nothing of the failed record was applied");
    assert.equal(shard.lastSequence, 1);
    assert.throws(() => shard.submit([credit("c1", 5)]), ShardUnavailableError);
    now = 100;
    const [result] = await shard.submit([credit("c1", 5)]);
    assert.equal(result.code, "ok");
    assert.equal(result.seq, 2, "the failed sequence was given back");
    assert.equal((await shard.account("p", "a"))?.balance, 5);
    await shard.close();
  });

  test("recovery: journal only, snapshot + journal, damaged newest snapshot -> older one + longer replay", async () => {
    const journal = new MemoryJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await open(journal, snapshots);
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    for (let i = 0; i < 10; i++) await shard.submit([credit(`c${i}`, i + 1)]);
    const fromJournalOnly = await open(journal, new MemorySnapshotStore());
    assert.equal(await fromJournalOnly.stateHash(), await shard.stateHash(), "replay of the whole journal");
    await shard.takeSnapshot();
    for (let i = 10; i < 30; i++) {
      await shard.submit([credit(`c${i}`, i + 1)]);
      if (i === 19) await shard.takeSnapshot();
    }
    const hash = await shard.stateHash();
    const sequence = shard.lastSequence;
    // Crash: no close. Recover from the newest snapshot, then from an older one when the newest is damaged.
    await assert.rejects(open(journal, new MemorySnapshotStore()), /a snapshot or segment is missing/);
    const fromSnapshot = await open(journal, snapshots);
    assert.equal(await fromSnapshot.stateHash(), hash);
    assert.equal(fromSnapshot.lastSequence, sequence);
    const newest = Math.max(...snapshots.snapshots.keys());
    const damaged = snapshots.snapshots.get(newest)!;
    damaged[damaged.length - 3] ^= 0xff;
    const logs: string[] = [];
    const fromOlder = await open(journal, snapshots, { log: (line: string) => logs.push(line) });
    assert.equal(await fromOlder.stateHash(), hash);
    assert.ok(logs.some((line) => line.includes(`snapshot ${newest} is unusable`)));
    // A snapshot ahead of its journal (here: a journal that lost everything) is refused, not silently extended.
    await assert.rejects(open(new MemoryJournal(), snapshots), /the journal ends at sequence 0 but the snapshot is at/);
    const [retry] = await fromOlder.submit([credit("c5", 6)]);
    assert.equal(retry.duplicate, true, "the idempotency window survives recovery");
    assert.equal(retry.seq, 7);
  });

  test("no snapshot decodes and the journal no longer reaches back to the start: open is a SnapshotError naming the snapshot", async () => {
    const journal = new MemoryJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await open(journal, snapshots);
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    for (let i = 0; i < 5; i++) await shard.submit([credit(`c${i}`, i + 1)]);
    await shard.takeSnapshot();
    assert.ok(journal.records[0].firstSequence > 1, "the journal was compacted after the snapshot");
    const [only] = await snapshots.list();
    snapshots.snapshots.get(only)![20] ^= 0xff;
    // The journal is intact; what is missing is a usable snapshot. The error says so (and a journal error is its cause).
    await assert.rejects(open(journal, snapshots), (error: unknown) =>
      error instanceof SnapshotError && error.message.includes(`snapshot ${only}`) && error.cause instanceof JournalCorruptError);
  });

  test("compaction keeps the journal from the floor an output relay still needs", async () => {
    const journal = new MemoryJournal();
    let floor = 3;
    const shard = await open(journal, new MemorySnapshotStore(), { journalFloor: async () => floor });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    for (let i = 0; i < 10; i++) await shard.submit([credit(`c${i}`, i + 1)]);
    await shard.takeSnapshot();
    assert.equal(journal.records[0].firstSequence, floor + 1, "every record after the floor is kept");
    floor = Number.POSITIVE_INFINITY;
    await shard.submit([credit("c10", 1)]);
    await shard.takeSnapshot();
    assert.equal(journal.records[0].firstSequence, 12, "without a floor only the oldest snapshot (at 11) bounds it");
    await shard.close();
  });

  test("a floor that cannot be read skips the compaction, not the snapshot, and the log says which", async () => {
    const journal = new MemoryJournal();
    const snapshots = new MemorySnapshotStore();
    const logged: string[] = [];
    const shard = await open(journal, snapshots, { journalFloor: async () => Promise.reject(new Error("floor file unreadable")), log: (line: string) => logged.push(line) });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    await shard.takeSnapshot();
    assert.deepEqual(await snapshots.list(), [1]);
    assert.equal(journal.records.length, 1, "nothing compacted");
    assert.ok(logged.some((line) => /snapshot at 1 stored; compacting the journal after it failed: floor file unreadable/.test(line)), logged.join("\n"));
    await shard.close();
  });

  test("a failed snapshot save leaves the interval where it was: retried after retryAfterMs (doubling), not a whole interval later", async () => {
    class FailingSnapshots extends MemorySnapshotStore {
      failSaves = 0;
      saves = 0;
      override async save(sequence: number, bytes: Uint8Array): Promise<void> {
        this.saves++;
        if (this.failSaves > 0) {
          this.failSaves--;
          throw new Error("simulated ENOSPC");
        }
        return super.save(sequence, bytes);
      }
    }
    const journal = new MemoryJournal();
    const snapshots = new FailingSnapshots();
    const logged: string[] = [];
    let now = 0;
    const shard = await Shard.open({ ...SIZES, journal, snapshots, clock: () => now, snapshotEveryCommands: 10, snapshotEveryMs: 1e12, retryAfterMs: 100, log: (line) => logged.push(line) });
    /** Submit the commands up to `sequence`, one record each, and let a snapshot they start finish. */
    const submitUpTo = async (sequence: number) => {
      while (shard.lastSequence < sequence) await shard.submit([credit(`c${shard.lastSequence + 1}`, 1)]);
      for (let i = 0; i < 5; i++) await nextTurn();
    };
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    snapshots.failSaves = 2;
    await submitUpTo(10);
    assert.equal(snapshots.saves, 1, "due after 10 commands: tried");
    assert.ok(logged.some((line) => /^snapshot at 10 failed.*simulated ENOSPC/.test(line)), logged.join("\n"));
    await submitUpTo(11);
    assert.equal(snapshots.saves, 1, "not again before retryAfterMs: a failing disk is not asked at every record");
    now = 100;
    await submitUpTo(12);
    assert.equal(snapshots.saves, 2, "tried again 2 commands later, not 10");
    assert.ok(logged.some((line) => /^snapshot at 12 failed, the next in 200 ms at the earliest: simulated ENOSPC/.test(line)), logged.join("\n"));
    now = 299;
    await submitUpTo(13);
    assert.equal(snapshots.saves, 2, "a second failure doubles the wait");
    now = 300;
    await submitUpTo(14);
    assert.deepEqual(await snapshots.list(), [14], "stored at the third attempt");
    assert.equal(journal.records[0].firstSequence, 14, "and the journal compacted up to it");
    await submitUpTo(23);
    assert.equal(snapshots.saves, 3, "a stored snapshot restarts the interval");
    await submitUpTo(24);
    assert.deepEqual(await snapshots.list(), [24, 14]);
    await shard.close();
  });

  for (const seed of [1, 2, 3, 4, 5]) {
    test(`snapshots taken while records are written, applied and failed between their slices are of their durable point (seed ${seed})`, async () => {
      const next = seededRandom(seed * 31);
      const journal = new KeepingJournal();
      const snapshots = new MemorySnapshotStore();
      const batches = [...workloadOpenings(), ...randomWorkload(seed, 1500)];
      const sizes = { accountsMax: 80, partnersMax: 12, holdsMax: 24, idempotencyCommandsMax: 1000, idempotencyRetentionMs: 40, ringSlots: 256 };
      let taken = 0;
      let submitting = false;
      const settled: Promise<unknown>[] = [];
      /** Submit 0-3 batches now; now and then the next append fails (the shard rebuilds meanwhile). */
      const submitSome = () => {
        for (let k = submitting ? Math.floor(next() * 4) : 0; k > 0 && taken < batches.length; k--) {
          const batch = batches[taken];
          if (next() < 0.005) journal.failNext = 1;
          try {
            settled.push(shard.submit(batch.commands, { atomic: batch.atomic }).catch((error) => assert.ok(error instanceof ShardUnavailableError)));
            taken++;
          } catch (error) {
            assert.ok(error instanceof ShardUnavailableError || error instanceof OverloadedError, String(error));
            return;
          }
        }
      };
      let now = 1_000_000;
      const options = { ...sizes, journal, snapshots, clock: () => (now += Math.floor(next() * 3)), retryAfterMs: 0, snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12 };
      // Every yield, between records and between the snapshot's slices, submits more (driven here, no timers).
      const shard: Shard = await Shard.open({ ...options, yieldToEventLoop: async () => submitSome() });
      submitting = true;
      for (let round = 0; round < 6; round++) {
        for (let i = 0; i < 30; i++) submitSome();
        await shard.takeSnapshot();
        await Promise.all(settled.splice(0));
      }
      submitting = false;
      const live = await shard.stateHash();
      assert.ok(shard.lastSequence > 1000, `${shard.lastSequence} commands journaled`);
      const reopened = await Shard.open(options);
      assert.equal(await reopened.stateHash(), live, "newest snapshot + the journal after it");
      // Each snapshot is the state the journal's records up to its sequence give.
      for (const sequence of await snapshots.list()) {
        const upTo = new KeepingJournal();
        upTo.records.push(...journal.records.filter((record) => record.firstSequence + record.commandCount - 1 <= sequence));
        assert.equal(upTo.lastSequence(), sequence, "snapshots are at record boundaries");
        const replayed = await Shard.open({ ...options, journal: upTo, snapshots: new MemorySnapshotStore() });
        assert.equal(Engine.restore(await snapshots.load(sequence), sizes).stateHash(), await replayed.stateHash(), `snapshot ${sequence}`);
      }
    });
  }
});

describe("scanned submits (the NATS fast path)", () => {
  test("a random workload: the same results, bytes for bytes, and the same state as the same commands submitted as objects", async () => {
    const asObjects = await openWorkloadShard(new KeepingJournal());
    const scanned = await openWorkloadShard(new KeepingJournal());
    let compared = 0;
    for (const { commands, atomic } of [...workloadOpenings(), ...randomWorkload(7, 300)]) {
      const expected = encodeResultBatch(await asObjects.submit(commands, { atomic }));
      if (atomic) {
        await scanned.submit(commands, { atomic });
        continue;
      }
      const bytes = toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands: commands.map(commandToProto) }));
      assert.deepEqual(await scanned.submitScanned(scanCommandBatch(bytes, 1000)), expected);
      compared += commands.length;
    }
    assert.ok(compared > 1000, `commands compared: ${compared}`);
    assert.equal(await scanned.stateHash(), await asObjects.stateHash());
    await asObjects.close();
    await scanned.close();
  });

  test("a request larger than the ring (it could never fit) is refused with a typed error, as objects or scanned", async () => {
    const shard = await open(new MemoryJournal(), new MemorySnapshotStore());
    const credits = Array.from({ length: SIZES.ringSlots + 1 }, (_, i) => credit(`big${i}`, 1));
    assert.throws(() => shard.submit(credits), (error: Error) => error instanceof InvalidCommandError && /1-64 commands, got 65/.test(error.message));
    const bytes = toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands: credits.map(commandToProto) }));
    assert.throws(() => shard.submitScanned(scanCommandBatch(bytes, 1000)), InvalidCommandError);
    assert.throws(() => shard.submit([]), InvalidCommandError);
    assert.equal(shard.lastSequence, 0);
    await shard.close();
  });

  test("a command the translator refuses publishes none of the batch; a full ring is overloaded", async () => {
    const shard = await open(new MemoryJournal(), new MemorySnapshotStore());
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    const batch = (commands: Command[]) => scanCommandBatch(toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands: commands.map(commandToProto) })), 1000);
    assert.throws(() => shard.submitScanned(batch([credit("c1", 5), credit("bad id", 5)])), InvalidCommandError);
    assert.equal(shard.lastSequence, 1);
    // 40 + 40 commands in a 64-slot ring before the first 40 are applied.
    const first = shard.submitScanned(batch(Array.from({ length: 40 }, (_, i) => credit(`x${i}`, 1))));
    assert.throws(() => shard.submitScanned(batch(Array.from({ length: 40 }, (_, i) => credit(`y${i}`, 1)))), OverloadedError);
    assert.equal(fromBinary(ResultBatchSchema, await first).results.length, 40);
    const reply = fromBinary(ResultBatchSchema, await shard.submitScanned(batch([credit("c1", 5)])));
    assert.deepEqual(reply.results.map((r) => [r.id, r.balance]), [["c1", 45n]]);
    await shard.close();
  });
});
