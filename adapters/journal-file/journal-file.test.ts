// Proves the file journal keeps exactly the acknowledged records, on real files in a temporary directory: round
// trips across segment rotations, replay from any sequence, recovery from a tail cut at every byte offset of the last
// frame, refusal of damage anywhere before the tail, and disk errors (injected by a file-system shim that fails the
// Nth write, fsync or truncate with ENOSPC) after which the journal holds exactly what it acknowledged.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AssertionError } from "../../core/assert.ts";
import { JournalCorruptError, JournalUnavailableError, type StoredRecord } from "../../core/ports.ts";
import { Shard, ShardUnavailableError, type Command } from "../../core/index.ts";
import { MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import {
  FileJournal,
  FRAME_HEADER_BYTES,
  nodeFileSystem,
  segmentName,
  type FileJournalOptions,
  type JournalFileHandle,
  type JournalFileSystem,
  type OpenFlags,
} from "./index.ts";
import { FileJournalTail } from "./tail.ts";

/** A record as the tests append it: a first sequence, a command count and deterministic bytes. */
interface TestRecord {
  firstSequence: number;
  commandCount: number;
  bytes: Uint8Array;
}

/** Records starting at sequence 1, with 1-4 commands and 1-`bytesMax` bytes each, the same for the same seed. */
function makeRecords(count: number, bytesMax: number, seed = 1): TestRecord[] {
  let state = seed;
  const random = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
  const records: TestRecord[] = [];
  let sequence = 1;
  for (let k = 0; k < count; k++) {
    const commandCount = 1 + random(4);
    const bytes = new Uint8Array(1 + random(bytesMax));
    for (let i = 0; i < bytes.length; i++) bytes[i] = random(256);
    records.push({ firstSequence: sequence, commandCount, bytes });
    sequence += commandCount;
  }
  return records;
}

async function appendAll(journal: FileJournal, records: TestRecord[]): Promise<void> {
  for (const record of records) await journal.append(record.bytes, record.firstSequence, record.commandCount);
}

/** Everything replay yields, with copies of the bytes. */
async function collect(journal: FileJournal, afterSequence = 0): Promise<TestRecord[]> {
  const records: TestRecord[] = [];
  for await (const record of journal.replay(afterSequence)) records.push(copyRecord(record));
  return records;
}

function copyRecord(record: StoredRecord): TestRecord {
  return { firstSequence: record.firstSequence, commandCount: record.commandCount, bytes: record.bytes.slice() };
}

function frameBytes(record: TestRecord): number {
  return FRAME_HEADER_BYTES + record.bytes.length;
}

/** A log that keeps its lines. */
function captureLog(): { lines: string[]; log: (line: string) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

let scratch = "";
let directoryCount = 0;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "hotledger-journal-test-"));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A fresh directory under the test's temporary directory. */
async function freshDirectory(): Promise<string> {
  // Never fall back to the working directory when `before` failed (Deno runs the tests anyway).
  assert.ok(scratch !== "", "no temporary directory");
  directoryCount += 1;
  const directory = join(scratch, `journal-${directoryCount}`);
  await mkdir(directory);
  return directory;
}

async function copyDirectory(source: string): Promise<string> {
  const target = await freshDirectory();
  for (const name of await readdir(source)) await copyFile(join(source, name), join(target, name));
  return target;
}

async function segmentFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).filter((name) => name.endsWith(".journal")).sort();
}

async function open(directory: string, options: Partial<FileJournalOptions> = {}): Promise<FileJournal> {
  return FileJournal.open({ directory, fsync: "batch", log: () => {}, ...options });
}

/** Writes `records` to a new journal in a fresh directory and closes it. */
async function journalWith(records: TestRecord[], options: Partial<FileJournalOptions> = {}): Promise<string> {
  const directory = await freshDirectory();
  const journal = await open(directory, options);
  await appendAll(journal, records);
  await journal.close();
  return directory;
}

/** File operations a FaultyFileSystem counts and can fail. */
type Operation = "write" | "datasync" | "sync" | "truncate" | "syncDirectory";

/**
 * The real file system with counters and injected failures: `fail(operation, from, count)` makes calls number
 * `from` .. `from + count - 1` of that operation (counted from 1) throw ENOSPC. A failing write first writes half
 * its bytes, so a partial frame reaches the file as it would on a full disk.
 */
class FaultyFileSystem implements JournalFileSystem {
  readonly calls: Record<Operation, number> = { write: 0, datasync: 0, sync: 0, truncate: 0, syncDirectory: 0 };
  /** While set, a read waits for it (a slow disk). */
  readGate: Promise<void> | undefined;
  /** While set, runs before each open (to make something happen between a caller's listing and its open). */
  beforeOpen: ((path: string) => Promise<void>) | undefined;
  /** Reads and closes of handles, in the order they ended. */
  readonly ended: string[] = [];
  private readonly failures: Array<{ operation: Operation; from: number; to: number }> = [];

  fail(operation: Operation, from: number, count = 1): void {
    this.failures.push({ operation, from, to: from + count - 1 });
  }

  /** Counts a call of `operation`; true when it must fail. */
  enter(operation: Operation): boolean {
    const call = ++this.calls[operation];
    return this.failures.some((failure) => failure.operation === operation && failure.from <= call && call <= failure.to);
  }

  async open(path: string, flags: OpenFlags, options?: { dsync?: boolean }): Promise<JournalFileHandle> {
    await this.beforeOpen?.(path);
    return new FaultyHandle(await nodeFileSystem.open(path, flags, options), this, options?.dsync === true);
  }

  readdir(path: string): Promise<string[]> {
    return nodeFileSystem.readdir(path);
  }

  mkdir(path: string): Promise<void> {
    return nodeFileSystem.mkdir(path);
  }

  unlink(path: string): Promise<void> {
    return nodeFileSystem.unlink(path);
  }

  async syncDirectory(path: string): Promise<void> {
    if (this.enter("syncDirectory")) throw noSpace("fsync");
    await nodeFileSystem.syncDirectory(path);
  }
}

/**
 * A handle of the FaultyFileSystem. One opened O_DSYNC counts each write as a write and a datasync too (the
 * kernel does both in one call), and a datasync failure injected for it fails the write after its bytes landed.
 */
class FaultyHandle implements JournalFileHandle {
  constructor(
    private readonly inner: JournalFileHandle,
    private readonly fileSystem: FaultyFileSystem,
    private readonly dsync: boolean,
  ) {}

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    await this.fileSystem.readGate;
    const result = await this.inner.read(buffer, offset, length, position);
    this.fileSystem.ended.push("read");
    return result;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    if (this.fileSystem.enter("write")) {
      await this.inner.write(buffer, offset, length >>> 1, position);
      throw noSpace("write");
    }
    const written = await this.inner.write(buffer, offset, length, position);
    if (this.dsync && this.fileSystem.enter("datasync")) throw noSpace("write (O_DSYNC)");
    return written;
  }

  async datasync(): Promise<void> {
    if (this.fileSystem.enter("datasync")) throw noSpace("fdatasync");
    await this.inner.datasync();
  }

  async sync(): Promise<void> {
    if (this.fileSystem.enter("sync")) throw noSpace("fsync");
    await this.inner.sync();
  }

  async truncate(length: number): Promise<void> {
    if (this.fileSystem.enter("truncate")) throw noSpace("ftruncate");
    await this.inner.truncate(length);
  }

  stat(): Promise<{ size: number }> {
    return this.inner.stat();
  }

  async close(): Promise<void> {
    await this.inner.close();
    this.fileSystem.ended.push("close");
  }
}

function noSpace(call: string): Error {
  return Object.assign(new Error(`ENOSPC: no space left on device, ${call}`), { code: "ENOSPC" });
}

/** Asserts the journal in `directory` holds exactly `records`: replay, last sequence, and byte for byte on disk. */
async function assertHoldsExactly(directory: string, records: TestRecord[]): Promise<void> {
  const { lines, log } = captureLog();
  const journal = await open(directory, { log });
  assert.deepEqual(lines, [], "no torn tail to truncate");
  assert.deepEqual(await collect(journal), records);
  const last = records.at(-1);
  assert.equal(journal.lastSequence(), last === undefined ? 0 : last.firstSequence + last.commandCount - 1);
  await journal.close();
  let bytesOnDisk = 0;
  for (const name of await segmentFiles(directory)) bytesOnDisk += (await stat(join(directory, name))).size;
  assert.equal(bytesOnDisk, records.reduce((sum, record) => sum + frameBytes(record), 0));
}

describe("append and replay", () => {
  test("an empty journal has last sequence 0, replays nothing and reopens", async () => {
    const directory = await freshDirectory();
    const journal = await open(directory);
    assert.equal(journal.lastSequence(), 0);
    assert.deepEqual(await collect(journal), []);
    await journal.close();
    assert.deepEqual(await segmentFiles(directory), []);
    await assertHoldsExactly(directory, []);
  });

  test("records round-trip across many segment rotations, before and after reopening", async () => {
    const records = makeRecords(300, 700);
    const directory = await freshDirectory();
    const journal = await open(directory, { segmentBytesMax: 4096 });
    await appendAll(journal, records);
    const last = records.at(-1)!;
    assert.equal(journal.lastSequence(), last.firstSequence + last.commandCount - 1);
    assert.deepEqual(await collect(journal), records);
    await journal.close();

    const names = await segmentFiles(directory);
    assert.ok(names.length >= 20, `expected many segments, got ${names.length}`);
    assert.equal(names[0], "00000000000000000001.journal");
    const firstSequences = new Set(records.map((record) => record.firstSequence));
    for (const name of names) {
      assert.match(name, /^\d{20}\.journal$/);
      assert.ok(firstSequences.has(Number(name.slice(0, 20))), `${name} starts at a record's first sequence`);
      const size = (await stat(join(directory, name))).size;
      assert.ok(size <= 4096, `${name} holds ${size} bytes`);
    }
    await assertHoldsExactly(directory, records);
  });

  test("a record larger than segmentBytesMax gets a segment of its own", async () => {
    const records = makeRecords(10, 3000, 7);
    const directory = await journalWith(records, { segmentBytesMax: 100 });
    assert.equal((await segmentFiles(directory)).length, records.length);
    await assertHoldsExactly(directory, records);
  });

  test("frames across read-chunk edges and a frame larger than a read chunk are read back whole", async () => {
    const sizes = [3 << 20, 3 << 20, 9 << 20, 5, 3 << 20];
    const records: TestRecord[] = sizes.map((size, index) => {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) bytes[i] = (index + i) & 0xff;
      bytes[size - 1] = index;
      return { firstSequence: 1 + 10 * index, commandCount: 10, bytes };
    });
    const directory = await journalWith(records);
    assert.equal((await segmentFiles(directory)).length, 1);
    await assertHoldsExactly(directory, records);
  });

  test("replay(after) yields exactly the records whose last sequence is after it", async () => {
    const records = makeRecords(120, 300, 3);
    const directory = await journalWith(records, { segmentBytesMax: 2048 });
    const journal = await open(directory);
    const last = journal.lastSequence();
    for (let afterSequence = 0; afterSequence <= last + 2; afterSequence++) {
      const expected = records.filter((record) => record.firstSequence + record.commandCount - 1 > afterSequence);
      assert.deepEqual(await collect(journal, afterSequence), expected, `replay(${afterSequence})`);
    }
    await journal.close();
  });

  test("replay sees records appended after open, and a replay stopped early can be restarted", async () => {
    const records = makeRecords(40, 500, 5);
    const directory = await journalWith(records.slice(0, 20), { segmentBytesMax: 3000 });
    const journal = await open(directory, { segmentBytesMax: 3000 });
    await appendAll(journal, records.slice(20));
    for await (const record of journal.replay(0)) {
      assert.equal(record.firstSequence, 1);
      break;
    }
    assert.deepEqual(await collect(journal), records);
    await journal.close();
  });

  test("the record buffer may be reused as soon as append resolves", async () => {
    const directory = await freshDirectory();
    const journal = await open(directory);
    const buffer = new Uint8Array(64);
    for (let sequence = 1; sequence <= 5; sequence++) {
      buffer.fill(sequence);
      await journal.append(buffer, sequence, 1);
    }
    buffer.fill(0);
    const replayed = await collect(journal);
    assert.deepEqual(replayed.map((record) => record.bytes[0]), [1, 2, 3, 4, 5]);
    await journal.close();
  });

  test("a gap, an overlap or a second append in flight is a programmer error", async () => {
    const directory = await freshDirectory();
    const journal = await open(directory);
    await journal.append(new Uint8Array(10), 1, 3);
    await assert.rejects(journal.append(new Uint8Array(10), 5, 1), AssertionError);
    await assert.rejects(journal.append(new Uint8Array(10), 3, 1), AssertionError);
    await assert.rejects(journal.append(new Uint8Array(10), 4, 0), AssertionError);
    const first = journal.append(new Uint8Array(10), 4, 1);
    await assert.rejects(journal.append(new Uint8Array(10), 5, 1), AssertionError);
    await first;
    assert.equal(journal.lastSequence(), 4);
    await journal.close();
  });
});

describe("recovery", () => {
  test("a tail cut at every byte offset of the last frame recovers the records before it, then appends", async () => {
    const records = makeRecords(6, 120, 11);
    const directory = await journalWith(records, { segmentBytesMax: 500 });
    const names = await segmentFiles(directory);
    const lastName = names.at(-1)!;
    const fileBytes = (await stat(join(directory, lastName))).size;
    const lastRecord = records.at(-1)!;
    const frameStart = fileBytes - frameBytes(lastRecord);
    assert.ok(frameStart > 0, "the last segment holds more than the last frame");
    for (let cut = frameStart; cut <= fileBytes; cut++) {
      const copy = await copyDirectory(directory);
      await truncate(join(copy, lastName), cut);
      const { lines, log } = captureLog();
      const journal = await open(copy, { log });
      const kept = cut === fileBytes ? records : records.slice(0, -1);
      const torn = cut !== frameStart && cut !== fileBytes;
      assert.deepEqual(lines, torn
        ? [`truncated torn tail of ${join(copy, lastName)} at offset ${frameStart} (${cut - frameStart} bytes)`]
        : [], `cut at ${cut}`);
      assert.deepEqual(await collect(journal), kept, `cut at ${cut}`);
      const appended: TestRecord = {
        firstSequence: journal.lastSequence() + 1,
        commandCount: 2,
        bytes: new Uint8Array([cut & 0xff, 7, 7]),
      };
      await appendAll(journal, [appended]);
      await journal.close();
      await assertHoldsExactly(copy, [...kept, appended]);
      await rm(copy, { recursive: true });
    }
  });

  test("a checksum mismatch in the final frame, or zeros after it, is a torn tail", async () => {
    const records = makeRecords(5, 200, 13);
    const directory = await journalWith(records);
    const path = join(directory, (await segmentFiles(directory))[0]);
    const bytes = await readFile(path);

    const flipped = await copyDirectory(directory);
    const damaged = Uint8Array.from(bytes);
    damaged[damaged.length - 1] ^= 0x01;
    await writeFile(join(flipped, segmentName(1)), damaged);
    await assertRecovers(flipped, records.slice(0, -1), bytes.length - frameBytes(records.at(-1)!));

    const zeros = await copyDirectory(directory);
    await writeFile(join(zeros, segmentName(1)), Buffer.concat([bytes, new Uint8Array(4096)]));
    await assertRecovers(zeros, records, bytes.length);
  });

  test("an empty last segment (a crash right after creating it) is valid and is appended to", async () => {
    const records = makeRecords(8, 100, 17);
    const directory = await journalWith(records.slice(0, 7));
    const next = records[7].firstSequence;
    await writeFile(join(directory, segmentName(next)), new Uint8Array(0));
    const journal = await open(directory);
    assert.equal(journal.lastSequence(), next - 1);
    await appendAll(journal, [records[7]]);
    await journal.close();
    assert.deepEqual(await segmentFiles(directory), [segmentName(1), segmentName(next)]);
    await assertHoldsExactly(directory, records);
  });

  test("a flipped byte anywhere in the 2nd of 5 frames throws JournalCorruptError naming the file and offset", async () => {
    const records = makeRecords(5, 60, 19);
    const directory = await journalWith(records);
    const name = segmentName(1);
    const original = await readFile(join(directory, name));
    const frameStart = frameBytes(records[0]);
    for (let offset = frameStart; offset < frameStart + frameBytes(records[1]); offset++) {
      const copy = await copyDirectory(directory);
      const damaged = Uint8Array.from(original);
      damaged[offset] ^= 0x40;
      await writeFile(join(copy, name), damaged);
      const error = await openError(copy);
      assert.equal(error.file, join(copy, name));
      assert.equal(error.offset, frameStart, `flip at ${offset}`);
      assert.ok(error.message.includes(name) && error.message.includes(`offset ${frameStart}`), error.message);
      await rm(copy, { recursive: true });
    }
  });

  test("damage in a segment that is not the last throws, even in its final frame", async () => {
    const records = makeRecords(30, 200, 23);
    const directory = await journalWith(records, { segmentBytesMax: 1000 });
    const names = await segmentFiles(directory);
    assert.ok(names.length >= 3);
    const path = join(directory, names[0]);
    const bytes = Uint8Array.from(await readFile(path));
    bytes[bytes.length - 1] ^= 0x01;
    await writeFile(path, bytes);
    const error = await openError(directory);
    assert.equal(error.file, path);
    assert.match(error.message, /not the last/);
  });

  test("a missing middle segment (a sequence gap) throws, naming the segment after the gap", async () => {
    const records = makeRecords(30, 200, 29);
    const directory = await journalWith(records, { segmentBytesMax: 1000 });
    const names = await segmentFiles(directory);
    await unlink(join(directory, names[1]));
    const error = await openError(directory);
    assert.equal(error.file, join(directory, names[2]));
    assert.equal(error.offset, 0);
    assert.match(error.message, /previous one ends at/);
  });

  test("a segment whose name does not match its first frame (an overlap) throws", async () => {
    const records = makeRecords(30, 200, 31);
    const directory = await journalWith(records, { segmentBytesMax: 1000 });
    const names = await segmentFiles(directory);
    const first = Number(names[1].slice(0, 20));
    await copyFile(join(directory, names[1]), join(directory, segmentName(first - 1)));
    await unlink(join(directory, names[1]));
    const error = await openError(directory);
    assert.equal(error.file, join(directory, segmentName(first - 1)));
    assert.equal(error.offset, 0);
  });

  test("a .journal file that is not named by a sequence throws", async () => {
    const directory = await journalWith(makeRecords(3, 50));
    await writeFile(join(directory, "7.journal"), new Uint8Array(0));
    const error = await openError(directory);
    assert.equal(error.file, join(directory, "7.journal"));
  });
});

async function assertRecovers(directory: string, records: TestRecord[], offset: number): Promise<void> {
  const { lines, log } = captureLog();
  const journal = await open(directory, { log });
  assert.equal(lines.length, 1);
  assert.match(lines[0], new RegExp(`truncated torn tail of .* at offset ${offset} \\(\\d+ bytes\\)`));
  await journal.close();
  await assertHoldsExactly(directory, records);
}

async function openError(directory: string): Promise<JournalCorruptError> {
  try {
    const journal = await open(directory);
    await journal.close();
  } catch (error) {
    assert.ok(error instanceof JournalCorruptError, `expected JournalCorruptError, got ${error}`);
    return error;
  }
  assert.fail("open did not throw");
}

describe("disk errors", () => {
  test("a failed write (a partial frame on a full disk) is rejected and cut away before the next append", async () => {
    const records = makeRecords(20, 300, 37);
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    const { lines, log } = captureLog();
    const journal = await open(directory, { fileSystem, log });
    await appendAll(journal, records.slice(0, 10));
    fileSystem.fail("write", fileSystem.calls.write + 1);
    const error = await appendError(journal, records[10]);
    assert.equal((error.cause as { code?: string }).code, "ENOSPC");
    assert.equal(journal.lastSequence(), records[9].firstSequence + records[9].commandCount - 1);
    await appendAll(journal, records.slice(10));
    assert.ok(lines.some((line) => line.includes("back to")), "the truncation is logged");
    assert.deepEqual(await collect(journal), records);
    await journal.close();
    await assertHoldsExactly(directory, records);
  });

  test("a failed fsync in batch mode is rejected; the frame, landed whole, is cut back before the append rejects (a crash then keeps only what was acknowledged); the record is not kept until appended again", async () => {
    const records = makeRecords(10, 300, 41);
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    const journal = await open(directory, { fileSystem });
    await appendAll(journal, records.slice(0, 5));
    // The frame's bytes land, then the write reports an error (O_DSYNC: its sync part; elsewhere the fdatasync).
    fileSystem.fail("datasync", fileSystem.calls.datasync + 1);
    await appendError(journal, records[5]);
    // Were the process to die now (no further append, no close to cut the frame), a restart must not find the record
    // whose callers were told it failed (a shard answers ShardUnavailableError, "nothing was applied").
    await assertHoldsExactly(directory, records.slice(0, 5));
    assert.equal(journal.lastSequence(), records[4].firstSequence + records[4].commandCount - 1);
    assert.deepEqual(await collect(journal), records.slice(0, 5));
    await appendAll(journal, records.slice(5));
    await journal.close();
    await assertHoldsExactly(directory, records);
  });

  test("while truncation fails every append retries it and is refused; once the disk is back it appends", async () => {
    const records = makeRecords(10, 300, 43);
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    const journal = await open(directory, { fileSystem });
    await appendAll(journal, records.slice(0, 5));
    fileSystem.fail("write", fileSystem.calls.write + 1);
    // The first truncation is the failed append's own, before it rejects; then each append retries it.
    fileSystem.fail("truncate", fileSystem.calls.truncate + 1, 4);
    await appendError(journal, records[5]);
    for (let attempt = 0; attempt < 3; attempt++) {
      const error = await appendError(journal, records[5]);
      assert.match(error.message, /cannot truncate/);
    }
    assert.equal(fileSystem.calls.truncate, 4);
    await appendAll(journal, records.slice(5));
    await journal.close();
    await assertHoldsExactly(directory, records);
  });

  test("a failed rotation is retried by the next append, even for a record that would fit the old segment", async () => {
    const records = makeRecords(30, 400, 47);
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    const journal = await open(directory, { fileSystem, segmentBytesMax: 1500 });
    await journal.append(records[0].bytes, records[0].firstSequence, records[0].commandCount);
    fileSystem.fail("syncDirectory", fileSystem.calls.syncDirectory + 1, 2);
    let index = 1;
    // Append until a rotation is needed: it fails twice (the directory fsync), then succeeds.
    while (fileSystem.calls.syncDirectory === 1) {
      const record = records[index];
      try {
        await journal.append(record.bytes, record.firstSequence, record.commandCount);
        index += 1;
      } catch (error) {
        assert.ok(error instanceof JournalUnavailableError);
      }
    }
    const small: TestRecord = { firstSequence: records[index].firstSequence, commandCount: 1, bytes: new Uint8Array(1) };
    await assert.rejects(journal.append(small.bytes, small.firstSequence, 1), JournalUnavailableError);
    await appendAll(journal, [small]);
    await journal.close();
    await assertHoldsExactly(directory, [...records.slice(0, index), small]);
  });

  test("a failed write on the journal's first segment leaves a journal that starts over cleanly", async () => {
    const records = makeRecords(3, 100, 53);
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    fileSystem.fail("write", 1);
    const journal = await open(directory, { fileSystem });
    await appendError(journal, records[0]);
    assert.equal(journal.lastSequence(), 0);
    await appendAll(journal, records);
    await journal.close();
    await assertHoldsExactly(directory, records);
  });
});

async function appendError(journal: FileJournal, record: TestRecord): Promise<JournalUnavailableError> {
  try {
    await journal.append(record.bytes, record.firstSequence, record.commandCount);
  } catch (error) {
    assert.ok(error instanceof JournalUnavailableError, `expected JournalUnavailableError, got ${error}`);
    assert.ok(error.cause !== undefined, "the disk error is the cause");
    return error;
  }
  assert.fail("append did not reject");
}

describe("a shard over the file journal", () => {
  test("a write the disk refuses fails its request; the shard rebuilds from snapshot and journal, resumes, and a reopen agrees", async () => {
    const directory = await freshDirectory();
    const fileSystem = new FaultyFileSystem();
    const snapshots = new MemorySnapshotStore();
    let now = 1_000;
    const openShard = async () => Shard.open({
      accountsMax: 64, partnersMax: 4, holdsMax: 16, idempotencyCommandsMax: 1024, ringSlots: 64,
      journal: await open(directory, { fileSystem }), snapshots, clock: () => now, retryAfterMs: 10, snapshotEveryCommands: 1e9,
    });
    const credit = (id: string, amount: number): Command => ({ type: "credit", id, partnerId: "p", accountId: "a", amount });
    const shard = await openShard();
    await shard.submit([{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }]);
    await shard.submit([credit("c0", 3)]);
    await shard.takeSnapshot();
    await shard.submit([credit("c1", 4)]);
    const hash = await shard.stateHash();
    // The write lands half its frame, then fails (a full disk).
    fileSystem.fail("write", fileSystem.calls.write + 1);
    await assert.rejects(shard.submit([credit("c2", 5)]), ShardUnavailableError);
    assert.equal(await shard.stateHash(), hash, "rebuilt without the failed record");
    assert.equal((await shard.account("p", "a"))?.balance, 7);
    now += 10;
    const [result] = await shard.submit([credit("c2", 5)]);
    assert.deepEqual([result.code, result.seq, result.balance], ["ok", 4, 12]);
    const final = await shard.stateHash();
    await shard.close();
    const reopened = await openShard();
    assert.equal(await reopened.stateHash(), final, "the journal holds exactly what was acknowledged");
    await reopened.close();
  });
});

describe("compaction", () => {
  test("deletes whole segments at or below the sequence, never the last one, and replays the rest", async () => {
    const records = makeRecords(60, 300, 59);
    const directory = await journalWith(records, { segmentBytesMax: 2000 });
    const names = await segmentFiles(directory);
    const starts = names.map((name) => Number(name.slice(0, 20)));
    const journal = await open(directory);

    await journal.compact(starts[2] - 2);
    assert.deepEqual(await segmentFiles(directory), names.slice(1), "the 2nd segment holds sequence starts[2] - 1");
    await journal.compact(starts[2] - 1);
    assert.deepEqual(await segmentFiles(directory), names.slice(2));

    const afterSequence = starts[2] - 1;
    const expected = records.filter((record) => record.firstSequence + record.commandCount - 1 > afterSequence);
    assert.deepEqual(await collect(journal, afterSequence), expected);
    await assert.rejects(collect(journal, afterSequence - 1), /compacted away/);

    await journal.compact(journal.lastSequence());
    assert.deepEqual(await segmentFiles(directory), names.slice(-1));
    await journal.close();

    const reopened = await open(directory);
    assert.equal(reopened.lastSequence(), journal.lastSequence());
    const lastSegmentStart = starts.at(-1)!;
    assert.deepEqual(await collect(reopened, lastSegmentStart - 1),
      records.filter((record) => record.firstSequence >= lastSegmentStart));
    await reopened.close();
  });
});

test("compaction: a directory fsync that fails after a delete does not wedge later compactions", async () => {
  const records = makeRecords(60, 300, 61);
  const directory = await journalWith(records, { segmentBytesMax: 2000 });
  const names = await segmentFiles(directory);
  const starts = names.map((name) => Number(name.slice(0, 20)));
  const fileSystem = new FaultyFileSystem();
  const journal = await open(directory, { fileSystem });
  try {
    fileSystem.fail("syncDirectory", fileSystem.calls.syncDirectory + 1);
    await assert.rejects(journal.compact(starts[1] - 1), JournalUnavailableError);
    assert.deepEqual(await segmentFiles(directory), names.slice(1), "the segment was deleted before the fsync failed");
    await journal.compact(starts[2] - 1);
    assert.deepEqual(await segmentFiles(directory), names.slice(2), "the next compaction goes on from there");
    await assert.rejects(collect(journal, starts[1] - 1), /compacted away/);
    assert.deepEqual(await collect(journal, starts[2] - 1), records.filter((record) => record.firstSequence >= starts[2]));
  } finally {
    await journal.close();
  }
});

describe("fsync policy", () => {
  test('"batch" fsyncs once per append', async () => {
    const fileSystem = new FaultyFileSystem();
    const journal = await open(await freshDirectory(), { fileSystem, fsync: "batch" });
    await appendAll(journal, makeRecords(25, 100));
    assert.equal(fileSystem.calls.datasync, 25);
    await journal.close();
  });

  test('"never" logs a warning on open and never fsyncs', async () => {
    const fileSystem = new FaultyFileSystem();
    const { lines, log } = captureLog();
    const directory = await freshDirectory();
    const journal = await open(directory, { fileSystem, fsync: "never", log, segmentBytesMax: 1000 });
    assert.equal(lines.length, 1);
    assert.match(lines[0], /fsync is off.*benchmarks only/i);
    const records = makeRecords(25, 200);
    await appendAll(journal, records);
    await journal.close();
    assert.equal(fileSystem.calls.datasync + fileSystem.calls.sync, 0);
    await assertHoldsExactly(directory, records);
  });

  test('"interval" fsyncs at most once per interval, in the background', async () => {
    const fileSystem = new FaultyFileSystem();
    const directory = await freshDirectory();
    const journal = await open(directory, { fileSystem, fsync: "interval", fsyncIntervalMs: 200 });
    const records = makeRecords(50, 100);
    await appendAll(journal, records);
    assert.ok(fileSystem.calls.datasync <= 1, `${fileSystem.calls.datasync} fsyncs`);
    await new Promise((resolve) => setTimeout(resolve, 450));
    assert.ok(fileSystem.calls.datasync >= 1 && fileSystem.calls.datasync <= 3, `${fileSystem.calls.datasync} fsyncs`);
    await journal.close();
    await assertHoldsExactly(directory, records);
  });

  test('"interval": a failed background fsync refuses appends until an fsync succeeds', async () => {
    const fileSystem = new FaultyFileSystem();
    const directory = await freshDirectory();
    const journal = await open(directory, { fileSystem, fsync: "interval", fsyncIntervalMs: 10, log: () => {} });
    const records = makeRecords(6, 100);
    await appendAll(journal, records.slice(0, 3));
    fileSystem.fail("datasync", fileSystem.calls.datasync + 1, 2);
    await new Promise((resolve) => setTimeout(resolve, 60));
    const error = await appendError(journal, records[3]);
    assert.match(error.message, /retrying a failed background fsync/);
    await appendAll(journal, records.slice(3));
    await journal.close();
    await assertHoldsExactly(directory, records);
  });
});

describe("FileJournalTail", () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const tailOf = (directory: string, afterSequence: number) =>
    FileJournalTail.open({ directory, afterSequence, sleep, pollMsMax: 2, readBytesMax: 4096 });

  /** Reads until the tail has handed out every sequence up to `last` (bounded by `deadlineMs`). */
  async function readThrough(tail: FileJournalTail, last: number, deadlineMs = 10_000): Promise<TestRecord[]> {
    const records: TestRecord[] = [];
    const deadline = Date.now() + deadlineMs;
    let read = 0;
    while (read < last) {
      assert.ok(Date.now() < deadline, `the tail reached only ${read} of ${last}`);
      const batch = await tail.next();
      assert.ok(batch !== null);
      records.push(...batch.map(copyRecord));
      const end = batch.at(-1)!;
      read = end.firstSequence + end.commandCount - 1;
      assert.ok(tail.lastSequence() >= read, "lastSequence is at least what was read");
    }
    return records;
  }

  test("lastSequence counts the segments ahead of a tail that is behind", async () => {
    const records = makeRecords(200, 700, 33);
    const directory = await journalWith(records, { segmentBytesMax: 8 << 10 });
    const segments = await segmentFiles(directory);
    assert.ok(segments.length > 5, "several segments");
    const newestFirst = Number(segments.at(-1)!.slice(0, 20));
    const tail = await tailOf(directory, 0);
    const batch = await tail.next();
    assert.ok(batch !== null && batch.at(-1)!.firstSequence < newestFirst / 2, "one small read, far behind");
    assert.equal(tail.lastSequence(), newestFirst - 1);
    await tail.close();
  });

  test("a record it handed out that the journal then cut back (a failed append) is a JournalCorruptError, not a silent fork", async () => {
    for (const rewrite of ["cut back only", "rewritten with other commands of the same sizes"]) {
      const fileSystem = new FaultyFileSystem();
      const directory = await freshDirectory();
      const journal = await open(directory, { fileSystem, fsync: "batch" });
      await journal.append(new Uint8Array(10).fill(1), 1, 1);
      const tail = await tailOf(directory, 0);
      assert.deepEqual((await tail.next())!.map((record) => record.firstSequence), [1]);
      // The write of sequences 2-3 lands whole, then reports an error (as an O_DSYNC write can), and the journal's
      // own cut fails too (or the tail read it before the cut): the tail sees it.
      fileSystem.fail("datasync", fileSystem.calls.datasync + 1);
      fileSystem.fail("truncate", fileSystem.calls.truncate + 1);
      await assert.rejects(journal.append(new Uint8Array(100).fill(0xee), 2, 2), JournalUnavailableError);
      assert.deepEqual((await tail.next())!.map((record) => [record.firstSequence, record.commandCount]), [[2, 2]]);
      if (rewrite === "cut back only") {
        const handle = await nodeFileSystem.open(join(directory, segmentName(1)), "r+");
        await handle.truncate(FRAME_HEADER_BYTES + 10);
        await handle.close();
      } else {
        // What the shard writes after rebuilding: other commands at sequences 2.., the first frame as long as the cut one.
        await journal.append(new Uint8Array(100).fill(2), 2, 1);
        await journal.append(new Uint8Array(30).fill(3), 3, 1);
      }
      await assert.rejects(tail.next(), (error: Error) =>
        error instanceof JournalCorruptError && /sequences 2\.\.3 this tail handed out was cut back/.test(error.message), rewrite);
      await tail.close();
      await journal.close();
    }
  });

  test("a segment compacted away between the tail's listing and its open is looked for again", async () => {
    const directory = await freshDirectory();
    const journal = await open(directory, { segmentBytesMax: 300 });
    const records = makeRecords(3, 60, 4);
    for (const record of records) await journal.append(record.bytes, record.firstSequence, record.commandCount);
    const afterSequence = journal.lastSequence();
    const fileSystem = new FaultyFileSystem();
    fileSystem.beforeOpen = async () => {
      fileSystem.beforeOpen = undefined;
      // The shard rotates to a new segment and compacts the one the tail picked (nothing the tail needs is in it).
      await journal.append(new Uint8Array(280), afterSequence + 1, 1);
      await journal.compact(afterSequence);
    };
    const tail = await FileJournalTail.open({ directory, afterSequence, sleep, pollMsMax: 2, fileSystem });
    try {
      assert.deepEqual((await tail.next())!.map((record) => record.firstSequence), [afterSequence + 1]);
    } finally {
      await tail.close();
      await journal.close();
    }
  });

  test("follows appends across segment rotations, from the start or from any sequence", async () => {
    const records = makeRecords(200, 700, 31);
    const directory = await freshDirectory();
    const journal = await open(directory, { segmentBytesMax: 8 << 10 });
    const fromStart = await tailOf(directory, 0);
    const reading = readThrough(fromStart, records[records.length - 1].firstSequence + records[records.length - 1].commandCount - 1);
    for (const record of records) {
      await journal.append(record.bytes, record.firstSequence, record.commandCount);
      if (record.firstSequence % 7 === 0) await sleep(1);
    }
    assert.deepEqual(await reading, records);
    assert.ok((await segmentFiles(directory)).length > 5, "several segments");
    // After a sequence inside a record of several commands: the tail starts at that record.
    const inside = records.findIndex((record, index) => index > 90 && record.commandCount > 1);
    const fromMiddle = await tailOf(directory, records[inside].firstSequence);
    const rest = await readThrough(fromMiddle, journal.lastSequence());
    assert.deepEqual(rest, records.slice(inside), "starts at the record holding the next sequence");
    await Promise.all([fromStart.close(), fromMiddle.close(), journal.close()]);
  });

  test("a frame that is not whole yet is not handed out; it is once complete", async () => {
    const records = makeRecords(3, 300, 37);
    const directory = await journalWith(records.slice(0, 2));
    const [segment] = await segmentFiles(directory);
    const path = join(directory, segment);
    const whole = await readFile(path);
    // The third frame, written by a journal elsewhere, then copied here in two halves.
    const other = await journalWith(records);
    const full = await readFile(join(other, segment));
    const third = full.subarray(whole.length);
    const tail = await tailOf(directory, 0);
    assert.deepEqual(await readThrough(tail, records[1].firstSequence + records[1].commandCount - 1), records.slice(0, 2));
    // Appended, as the journal writes (rewriting the file would cut back the frames the tail handed out).
    await appendFile(path, third.subarray(0, third.length - 5));
    const waiting = tail.next();
    const late = await Promise.race([waiting, sleep(50).then(() => "still waiting" as const)]);
    assert.equal(late, "still waiting");
    await appendFile(path, third.subarray(third.length - 5));
    const [record] = (await waiting)!;
    assert.deepEqual(copyRecord(record), records[2]);
    await tail.close();
  });

  test("a sequence no longer in the journal is refused; close ends next() with null", async () => {
    const records = makeRecords(60, 400, 41);
    const directory = await journalWith(records, { segmentBytesMax: 2 << 10 });
    const journal = await open(directory, { segmentBytesMax: 2 << 10 });
    await journal.compact(records[30].firstSequence);
    await journal.close();
    const early = await tailOf(directory, 0);
    await assert.rejects(early.next(), (error: unknown) => error instanceof JournalCorruptError && /segments were deleted/.test(error.message));
    const idle = await tailOf(directory, records[59].firstSequence + records[59].commandCount - 1);
    const pending = idle.next();
    await idle.close();
    assert.equal(await pending, null);
  });

  test("close during a read waits for it: the read ends normally, then the file is closed", async () => {
    const records = makeRecords(5, 300, 43);
    const directory = await journalWith(records);
    const fileSystem = new FaultyFileSystem();
    let release = () => {};
    fileSystem.readGate = new Promise<void>((resolve) => (release = resolve));
    const tail = await FileJournalTail.open({ directory, afterSequence: 0, sleep, fileSystem });
    const reading = tail.next();
    await sleep(5);
    const closing = tail.close();
    release();
    const [batch] = await Promise.all([reading, closing]);
    assert.deepEqual(batch?.map(copyRecord), records, "the read under way hands out what it read");
    assert.deepEqual(fileSystem.ended, ["read", "close"]);
    assert.equal(await tail.next(), null);
  });
});
