// Proves the seam a hot standby will use (README, "Built for what comes next"): an engine restored from a shard's
// snapshot and fed the shard's journal through FileJournalTail, while the shard goes on writing it, reaches the
// shard's state: the same state hash at the same sequence, and the same answers for accounts and stored results.
// The workload has every command type, failing atomic groups, expiring holds, duplicates and reused ids; the
// journal rotates across small segments while it is followed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine, EventDeriver } from "../../core/index.ts";
import { MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { openWorkloadShard, randomWorkload, submitWorkload, WORKLOAD_ACCOUNTS, WORKLOAD_PARTNERS, WORKLOAD_SIZES, workloadOpenings } from "../../core/testing/workload.ts";
import { FileJournal } from "./index.ts";
import { FileJournalTail } from "./tail.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Bounds the standby's catch-up loop. */
const CATCH_UP_MS_MAX = 20_000;

test("an engine restored from a snapshot and fed the growing journal reaches the shard's state hash", async () => {
  const directory = await mkdtemp(join(tmpdir(), "hotledger-standby-"));
  try {
    const snapshots = new MemorySnapshotStore();
    const journal = await FileJournal.open({ directory, fsync: "batch", segmentBytesMax: 16 << 10, log: () => {} });
    const shard = await openWorkloadShard(journal, { snapshots });
    const batches = randomWorkload(7, 1_500, "s");
    await submitWorkload(shard, [...workloadOpenings("s"), ...batches.slice(0, 500)]);
    await shard.takeSnapshot();
    const [snapshotSequence] = await snapshots.list();
    assert.ok(snapshotSequence > 0, "a snapshot after the first part of the workload");

    // The standby starts from the snapshot and follows the journal while the shard writes the rest.
    const standby = Engine.restore(await snapshots.load(snapshotSequence), WORKLOAD_SIZES);
    assert.equal(standby.lastSequence, snapshotSequence);
    const deriver = new EventDeriver(standby, 0);
    const tail = await FileJournalTail.open({ directory, afterSequence: snapshotSequence, sleep, pollMsMax: 2, readBytesMax: 8192 });
    const writing = submitWorkload(shard, batches.slice(500), 3);
    let applied = 0;
    let hashBehind: string | undefined;
    const follow = async (through: () => number) => {
      const deadline = Date.now() + CATCH_UP_MS_MAX;
      while (standby.lastSequence < through()) {
        assert.ok(Date.now() < deadline, `the standby reached ${standby.lastSequence} of ${through()}`);
        const records = await tail.next();
        assert.ok(records !== null);
        for (const record of records) {
          deriver.replay(record);
          applied++;
        }
        hashBehind ??= standby.stateHash();
      }
    };
    await Promise.all([writing, follow(() => snapshotSequence + 1)]);
    const last = journal.lastSequence();
    await follow(() => last);
    await tail.close();

    assert.equal(standby.lastSequence, last);
    assert.ok(applied > 50, `the standby applied ${applied} records, across segments`);
    const hash = await shard.stateHash();
    assert.equal(standby.stateHash(), hash);
    assert.notEqual(hashBehind, hash, "the state hash tells a standby that is behind from one that has caught up");
    for (const partnerId of WORKLOAD_PARTNERS) {
      for (const accountId of WORKLOAD_ACCOUNTS) {
        assert.deepEqual(standby.account(partnerId, accountId), await shard.account(partnerId, accountId), `${partnerId}/${accountId}`);
      }
    }
    const lastIds = batches.slice(-20).flatMap((batch) => batch.commands).filter((command) => command.id !== undefined);
    assert.ok(lastIds.length > 0);
    for (const command of lastIds) {
      assert.deepEqual(standby.storedResult(command.partnerId, command.id!), await shard.storedResult(command.partnerId, command.id!), command.id);
    }
    await shard.close();
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
