// Proves the file snapshot store saves, lists (newest first) and loads snapshots byte for byte, keeps only the newest
// `keep`, never lists a half-written `.tmp` and deletes stale ones on open, on real files in a temporary directory;
// and that a shard recovering from it falls back past a newest snapshot that is checksummed but malformed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AssertionError } from "../../core/assert.ts";
import { Engine, Shard, SnapshotError, type Command } from "../../core/index.ts";
import { MemoryJournal } from "../../core/testing/memory-ports.ts";
import { reframed } from "../../core/testing/reframed.ts";
import { FileSnapshotStore, snapshotName, SNAPSHOTS_KEEP_MAX } from "./index.ts";

let scratch = "";
let directoryCount = 0;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "hotledger-snapshot-test-"));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function freshDirectory(): string {
  // Never fall back to the working directory when `before` failed (Deno runs the tests anyway).
  assert.ok(scratch !== "", "no temporary directory");
  directoryCount += 1;
  return join(scratch, `snapshots-${directoryCount}`);
}

/** Deterministic bytes for the snapshot taken after `sequence`. */
function snapshotBytes(sequence: number, length = 1000): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (sequence * 31 + i * 7) & 0xff;
  return bytes;
}

describe("FileSnapshotStore", () => {
  test("an empty store lists nothing", async () => {
    const store = await FileSnapshotStore.open({ directory: freshDirectory() });
    assert.deepEqual(await store.list(), []);
  });

  test("save, list newest first, load byte for byte, and reopen", async () => {
    const directory = freshDirectory();
    const store = await FileSnapshotStore.open({ directory, keep: 5 });
    for (const sequence of [0, 1000, 20, 999_999_999_999]) await store.save(sequence, snapshotBytes(sequence));
    assert.deepEqual(await store.list(), [999_999_999_999, 1000, 20, 0]);
    for (const sequence of [0, 20, 1000, 999_999_999_999]) {
      assert.deepEqual(await store.load(sequence), snapshotBytes(sequence));
    }
    assert.deepEqual((await readdir(directory)).sort(),
      [snapshotName(0), snapshotName(20), snapshotName(1000), snapshotName(999_999_999_999)]);
    const reopened = await FileSnapshotStore.open({ directory, keep: 5 });
    assert.deepEqual(await reopened.list(), [999_999_999_999, 1000, 20, 0]);
    assert.deepEqual(await reopened.load(1000), snapshotBytes(1000));
  });

  test("saving the same sequence again replaces it", async () => {
    const store = await FileSnapshotStore.open({ directory: freshDirectory() });
    await store.save(7, snapshotBytes(1));
    await store.save(7, snapshotBytes(2, 10));
    assert.deepEqual(await store.list(), [7]);
    assert.deepEqual(await store.load(7), snapshotBytes(2, 10));
  });

  test("keeps only the newest `keep` snapshots (default 3)", async () => {
    const directory = freshDirectory();
    const store = await FileSnapshotStore.open({ directory });
    for (let sequence = 100; sequence <= 800; sequence += 100) {
      await store.save(sequence, snapshotBytes(sequence));
      assert.ok((await store.list()).length <= 3);
    }
    assert.deepEqual(await store.list(), [800, 700, 600]);
    assert.equal((await readdir(directory)).length, 3);

    const one = await FileSnapshotStore.open({ directory: freshDirectory(), keep: 1 });
    await one.save(1, snapshotBytes(1));
    await one.save(2, snapshotBytes(2));
    assert.deepEqual(await one.list(), [2]);
  });

  test("a .tmp left by an interrupted save is never listed, and open deletes it with a log line", async () => {
    const directory = freshDirectory();
    const store = await FileSnapshotStore.open({ directory });
    await store.save(10, snapshotBytes(10));
    const stale = join(directory, `${snapshotName(20)}.tmp`);
    await writeFile(stale, snapshotBytes(20).subarray(0, 100));
    assert.deepEqual(await store.list(), [10]);

    const lines: string[] = [];
    const reopened = await FileSnapshotStore.open({ directory, log: (line) => lines.push(line) });
    assert.deepEqual(lines, [`deleted stale ${stale} (an interrupted snapshot save)`]);
    assert.deepEqual(await readdir(directory), [snapshotName(10)]);
    assert.deepEqual(await reopened.list(), [10]);
  });

  test("read only: another component's store is read without touching its .tmp, and save is refused", async () => {
    const directory = freshDirectory();
    const owner = await FileSnapshotStore.open({ directory });
    await owner.save(10, snapshotBytes(10));
    const inProgress = join(directory, `${snapshotName(20)}.tmp`);
    await writeFile(inProgress, snapshotBytes(20).subarray(0, 100));
    const reader = await FileSnapshotStore.open({ directory, readOnly: true });
    assert.deepEqual(await readdir(directory), [snapshotName(10), `${snapshotName(20)}.tmp`]);
    assert.deepEqual(await reader.load(10), snapshotBytes(10));
    await assert.rejects(reader.save(30, snapshotBytes(30)), AssertionError);
  });

  test("files that are not snapshots are ignored", async () => {
    const directory = freshDirectory();
    const store = await FileSnapshotStore.open({ directory });
    await writeFile(join(directory, "notes.txt"), "x");
    await writeFile(join(directory, "12.snapshot"), "x");
    await store.save(5, snapshotBytes(5));
    assert.deepEqual(await store.list(), [5]);
  });

  test("loading a missing snapshot rejects", async () => {
    const store = await FileSnapshotStore.open({ directory: freshDirectory() });
    await assert.rejects(store.load(42), { code: "ENOENT" });
  });

  test("bad arguments are programmer errors", async () => {
    await assert.rejects(FileSnapshotStore.open({ directory: freshDirectory(), keep: 0 }), AssertionError);
    await assert.rejects(FileSnapshotStore.open({ directory: freshDirectory(), keep: SNAPSHOTS_KEEP_MAX + 1 }),
      AssertionError);
    const store = await FileSnapshotStore.open({ directory: freshDirectory() });
    await assert.rejects(store.save(-1, snapshotBytes(1)), AssertionError);
    await assert.rejects(store.save(1.5, snapshotBytes(1)), AssertionError);
    const first = store.save(1, snapshotBytes(1));
    await assert.rejects(store.save(2, snapshotBytes(2)), AssertionError);
    await first;
    assert.deepEqual(await store.list(), [1]);
  });
});

describe("a shard recovering from a FileSnapshotStore", () => {
  const SIZES = { accountsMax: 64, partnersMax: 8, holdsMax: 32, idempotencyCommandsMax: 1024, ringSlots: 64 };
  const credit = (id: string): Command => ({ type: "credit", id, partnerId: "p", accountId: "a", amount: 1 });

  test("a newest snapshot with a valid checksum but a size out of range is a SnapshotError: the older one + the journal restore", async () => {
    const directory = freshDirectory();
    const journal = new MemoryJournal();
    let now = 1_000;
    const options = { ...SIZES, journal, clock: () => now++, snapshotEveryCommands: 1e9 };
    const shard = await Shard.open({ ...options, snapshots: await FileSnapshotStore.open({ directory }) });
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    for (let i = 0; i < 25; i++) {
      await shard.submit([credit(`c${i}`)]);
      if (i === 9 || i === 19) await shard.takeSnapshot();
    }
    const hash = await shard.stateHash();
    // Crash: no close. The newest snapshot is rewritten with a retention of 0 ms and a checksum that matches it.
    const store = await FileSnapshotStore.open({ directory });
    assert.deepEqual(await store.list(), [21, 11]);
    await writeFile(join(directory, snapshotName(21)), reframed(await store.load(21), (message) => (message.idempotencyRetentionMs = 0n)));
    const altered = await store.load(21);
    assert.throws(() => Engine.restore(altered, SIZES), (error: unknown) => error instanceof SnapshotError && /idempotencyRetentionMs/.test(error.message));

    const lines: string[] = [];
    const recovered = await Shard.open({ ...options, snapshots: store, log: (line) => lines.push(line) });
    assert.equal(await recovered.stateHash(), hash);
    assert.equal(recovered.lastSequence, 26);
    assert.ok(lines.some((line) => line.startsWith("snapshot 21 is unusable, trying an older one: snapshot records a table size out of range")), lines.join("\n"));
    assert.ok(lines.some((line) => line.startsWith("shard recovered: snapshot at 11, replayed 15 commands")), lines.join("\n"));
    await recovered.close();
  });
});
