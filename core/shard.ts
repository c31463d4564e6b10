/**
 * The durable shard: input ring -> journaler -> business-logic processor -> results, LMAX style. A result is
 * released to its caller only after the journal record holding its command is durable. As in LMAX, the processor
 * applies a record while the journal writes it (its barrier is the last sequence handed to the journal), so the
 * CPU and the disk work at the same time; bench:durable measured ~25% more commands/s than applying after the
 * write. What is applied but not yet durable never leaves the shard: results wait for the write, and reads
 * (`account`, `storedResult`, `stateHash`) and snapshots are served only at a durable point, when everything
 * applied is journaled. When a write fails, the applied state is ahead of the journal: the shard rebuilds its
 * engine from its newest snapshot and the journal (as at start) before it takes commands again.
 *
 * Group commit: while one journal write is in flight, new commands accumulate in the ring; the next record takes
 * all of them. One record per write, one fsync per record (per the journal's policy).
 *
 * Pure ECMAScript over the Journal and SnapshotStore ports: no timers, no runtime globals. Time comes from the
 * injected clock, read once per journal record (the record's stamped time).
 */
import { assert } from "./assert.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { InvalidCommandError, SnapshotError } from "./errors.ts";
import type { ScannedBatch } from "./command-batch-reader.ts";
import { writeScannedResults } from "./output-event-writer.ts";
import { encodeRecord, readRecordHeader, RecordDecoder, recordBytesMax } from "./journal-codec.ts";
import { RESULT_CODES } from "./codes.ts";
import { COMMIT_MS_BUCKETS, GROUP_COMMANDS_MAX, REPLAY_PIECE_COMMANDS, SNAPSHOT_EVERY_COMMANDS_DEFAULT, SNAPSHOT_EVERY_MS_DEFAULT, SNAPSHOT_RETRY_MS_MAX } from "./limits.ts";
import { JournalCorruptError, type Journal, type SnapshotStore } from "./ports.ts";
import { Sequence } from "./ring-buffer.ts";
import { decodeSnapshot } from "./snapshot.ts";
import { SnapshotJob, SnapshotScratch, type YieldToEventLoop } from "./snapshot-job.ts";
import type { Account, Command, Result } from "./types.ts";

/** Options of a durable shard. */
export interface ShardOptions extends EngineOptions {
  journal: Journal;
  snapshots: SnapshotStore;
  /** Take a snapshot after this many commands since the last one. Default SNAPSHOT_EVERY_COMMANDS_DEFAULT (10M). */
  snapshotEveryCommands?: number;
  /**
   * ...or after this much stamped time since the last one. Default SNAPSHOT_EVERY_MS_DEFAULT (60,000 ms). Both count
   * from the last snapshot stored: after a failed one the next is tried retryAfterMs later, then twice as long
   * after each further failure, up to this interval (and SNAPSHOT_RETRY_MS_MAX).
   */
  snapshotEveryMs?: number;
  /**
   * How long `unavailable` lasts after a journal failure before the next submit tries the disk again; also the
   * first wait before an automatic snapshot is tried again after a failed one. Default 1000.
   */
  retryAfterMs?: number;
  /**
   * The oldest sequence someone else still needs from the journal (an output relay that has not delivered past
   * it; see core/outputs.ts). Compaction never deletes a segment holding it or anything after. Read before each
   * compaction; when it throws, nothing is compacted.
   */
  journalFloor?: () => Promise<number>;
  /** Where operational lines go (recovery, truncation, failures). Default: nowhere. */
  log?: (line: string) => void;
  /**
   * Lets the event loop run (e.g. `() => new Promise((r) => setImmediate(r))`): between the chunks of a snapshot,
   * so journal writes and the processor go on while it is taken (the core has no timers; without this the chunks
   * run back to back and a snapshot of 1M accounts stalls the shard for its whole duration), and between one
   * journal record and the next, so requests already received join the next record.
   */
  yieldToEventLoop?: YieldToEventLoop;
}

/** The ring is full: the caller should retry later. Nothing was sequenced. */
export class OverloadedError extends Error {
  override name = "OverloadedError";
}

/** The shard cannot make commands durable now (disk error) or is closed. Nothing of the request was applied. */
export class ShardUnavailableError extends Error {
  override name = "ShardUnavailableError";
  /** Milliseconds after which a retry may succeed. */
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/** Counters since the shard opened, for /metrics. */
export interface ShardMetrics {
  /** Results released, by numeric result code (index = code, see RESULT_CODES). */
  resultsByCode: Float64Array;
  /** Journal records written (group commits) and the commands they held: their ratio is the mean batch size. */
  records: number;
  recordCommands: number;
  /** Sum of the time from starting a record's write to its being durable, in clock milliseconds. */
  commitMsSum: number;
  /**
   * Records by that time: entry i counts the commits of at most COMMIT_MS_BUCKETS[i] ms and more than the bound
   * before (not cumulative); commits slower than the last bound are in `records` only.
   */
  commitMsBuckets: Float64Array;
  /** Commands sequenced but not yet released, now. */
  ringOccupancy: number;
  /** The last sequence given to a command (journaled, or being journaled). */
  lastSequenced: number;
  /** The last sequence the processor applied: ahead of the durable one while a record is written (as in LMAX). */
  lastApplied: number;
  ringSlots: number;
}

/** Most commands one submit may carry (keeps one request well inside the ring). */
export const SUBMIT_COMMANDS_MAX = GROUP_COMMANDS_MAX;

interface Pending {
  first: number;
  count: number;
  /** Resolve the request: with its results once applied, or (async mode) with none once durable. */
  deliver: () => void;
  reject: (error: Error) => void;
  /** Resolved (with no results) as soon as its record is durable, without waiting for its results: async mode. */
  durableOnly: boolean;
  settled: boolean;
}

/** A recovered, running shard. Create with `Shard.open`. */
export class Shard {
  private engine: Engine;
  private readonly journal: Journal;
  private readonly snapshots: SnapshotStore;
  private readonly options: ShardOptions;
  private readonly clock: () => number;
  /** The last sequence the journal acknowledged as durable: results up to it are released, and producers gate on it. */
  private readonly journaled: Sequence;
  /** The last sequence handed to the journal: the processor's barrier. Ahead of `journaled` while a write runs. */
  private readonly handed: Sequence;
  /** Reads (and snapshot starts) waiting for a durable point: answer, or reject when the shard cannot get there. */
  private readonly waiting: { answer: () => void; reject: (error: Error) => void }[] = [];
  /** A failed write left the engine ahead of the journal: it is rebuilt before the shard takes commands again. */
  private stale = false;
  private rebuilding: Promise<void> | undefined;
  private readonly pending: Pending[] = [];
  private pendingHead = 0;
  private readonly recordBuffer: Uint8Array;
  private writing = false;
  private state: "open" | "unavailable" | "closing" | "closed" = "open";
  private unavailableUntilMs = 0;
  private failure: unknown = undefined;
  private lastTimeMs: number;
  /** The sequence and stamped time of the last stored snapshot: the interval counts from them. */
  private snapshotSequence: number;
  private snapshotTimeMs: number;
  private snapshotting: Promise<void> | undefined;
  /** After a failed snapshot, the wait before the next automatic one (0: the last one was stored). */
  private snapshotRetryAfterMs = 0;
  /** No automatic snapshot before this clock time (set by a failed one). */
  private snapshotRetryAtMs = 0;
  /** Memory reused by every snapshot of this shard (one at a time: `snapshotting`). */
  private readonly snapshotScratch = new SnapshotScratch();
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | undefined;
  private readonly resultsByCode = new Float64Array(RESULT_CODES.length);
  private records = 0;
  private recordCommands = 0;
  private commitMsSum = 0;
  private readonly commitMsBuckets = new Float64Array(COMMIT_MS_BUCKETS.length);

  private constructor(engine: Engine, options: ShardOptions, journaled: Sequence, snapshotSequence: number) {
    this.engine = engine;
    this.journal = options.journal;
    this.snapshots = options.snapshots;
    this.options = options;
    this.clock = options.clock ?? Date.now;
    this.journaled = journaled;
    this.handed = new Sequence(journaled.value);
    this.recordBuffer = new Uint8Array(recordBytesMax(engine.ring.size));
    this.lastTimeMs = engine.timeMs;
    this.snapshotSequence = snapshotSequence;
    this.snapshotTimeMs = engine.timeMs;
  }

  /**
   * Recover and start: the newest snapshot that decodes (falling back to older ones), then a replay of every
   * journal record after it. Throws JournalCorruptError (from the journal) when the journal is damaged before its
   * tail, and SnapshotError only when a snapshot exists but none decodes and the journal no longer reaches back
   * to the beginning.
   */
  static async open(options: ShardOptions): Promise<Shard> {
    const log = options.log ?? (() => {});
    const { engine, snapshotSequence, snapshotBytes, unusable } = await Shard.restoreNewest(options, log);
    const journaled = new Sequence(engine.lastSequence);
    let replayed: number;
    try {
      replayed = await Shard.replay(engine, options.journal, journaled);
    } catch (error) {
      // Snapshots exist but none decodes, and the journal does not start at the beginning: the snapshot is missing.
      if (unusable === undefined || engine.lastSequence !== 0 || !(error instanceof JournalCorruptError)) throw error;
      throw new SnapshotError(
        `no snapshot decodes (snapshot ${unusable.sequence}: ${unusable.message}) and the journal no longer reaches back to the start: ${error.message}`,
        { cause: error },
      );
    }
    if (options.journal.lastSequence() < engine.lastSequence) {
      // The snapshot is ahead of the journal (segments deleted, or an fsync "interval" journal lost its tail):
      // appending would leave a gap. Refuse to start; an operator decides.
      throw new JournalCorruptError(
        "journal",
        options.journal.lastSequence(),
        `the journal ends at sequence ${options.journal.lastSequence()} but the snapshot is at ${engine.lastSequence}`,
      );
    }
    log(`shard recovered: snapshot at ${snapshotSequence}, replayed ${replayed} commands, last sequence ${engine.lastSequence}`);
    const shard = new Shard(engine, options, journaled, snapshotSequence);
    // The memory the next snapshot takes, allocated now (a collector pause here delays no command).
    if (snapshotBytes > 0) SnapshotJob.reserve(engine.ledger, shard.snapshotScratch, snapshotBytes);
    shard.attach(shard.engine);
    return shard;
  }

  /** The engine of the newest snapshot that decodes, else an empty one and (when some exist) why the newest did not. */
  private static async restoreNewest(options: ShardOptions, log: (line: string) => void) {
    const sequences = await options.snapshots.list();
    let unusable: { sequence: number; message: string } | undefined;
    for (const sequence of sequences) {
      try {
        const bytes = await options.snapshots.load(sequence);
        const ledger = decodeSnapshot(bytes, options);
        return { engine: new Engine(options, ledger), snapshotSequence: sequence, snapshotBytes: bytes.length, unusable: undefined };
      } catch (error) {
        log(`snapshot ${sequence} is unusable, trying an older one: ${(error as Error).message}`);
        unusable ??= { sequence, message: (error as Error).message };
      }
    }
    return { engine: new Engine(options), snapshotSequence: 0, snapshotBytes: 0, unusable };
  }

  /** Apply every journal record after the engine's last sequence. Returns the number of commands replayed. */
  private static async replay(engine: Engine, journal: Journal, journaled: Sequence): Promise<number> {
    let replayed = 0;
    const decoder = new RecordDecoder();
    for await (const record of journal.replay(engine.lastSequence)) {
      const header = readRecordHeader(record.bytes);
      assert(header.firstSequence === record.firstSequence, "journal record header disagrees with its frame");
      // A record may start before the snapshot's sequence: skip the commands the snapshot already holds.
      const skip = engine.lastSequence + 1 - header.firstSequence;
      if (skip < 0 || skip >= header.commandCount) {
        throw new JournalCorruptError(
          "journal",
          header.firstSequence,
          `records resume at sequence ${header.firstSequence} but the state is at ${engine.lastSequence}: a snapshot or segment is missing`,
        );
      }
      const count = header.commandCount - skip;
      decoder.start(record.bytes, header, skip);
      // In pieces, each drained while its slots are in cache; a claim has room for the rest of a group.
      for (let left = count; left > 0; ) {
        const claim = Math.min(left, REPLAY_PIECE_COMMANDS + GROUP_COMMANDS_MAX);
        const high = engine.sequencer.tryNext(claim);
        assert(high >= 0, "a journal record larger than the ring");
        const written = decoder.decode(engine.ring, high - claim + 1, Math.min(left, REPLAY_PIECE_COMMANDS));
        assert(written >= 1 && written <= claim, "a replay piece decodes at least one command and fits its claim");
        if (written < claim) engine.sequencer.cancel(high, claim - written);
        engine.sequencer.publish(high - claim + written);
        engine.drain();
        left -= written;
      }
      replayed += count;
    }
    journaled.value = engine.lastSequence;
    return replayed;
  }

  /**
   * Puts a recovered engine between the journaler and the releases: its processor applies only what was handed to
   * the journal, and its producers reuse a slot only once its results were released (a record is applied while
   * it is written, so its slots hold results until the write is durable).
   */
  private attach(engine: Engine): void {
    engine.processor.waitFor(this.handed);
    engine.sequencer.gateOn(this.journaled);
  }

  /** Sequence of the last durable command (applied too, unless a failed write left the shard rebuilding). */
  get lastSequence(): number {
    return this.journaled.value;
  }

  /** The hash of the full state (see Engine.stateHash) at the next durable point. */
  stateHash(): Promise<string> {
    return this.whenDurable(() => this.engine.stateHash());
  }

  /** An account as of the last durable command. */
  account(partnerId: string, accountId: string): Promise<Account | undefined> {
    return this.whenDurable(() => this.engine.account(partnerId, accountId));
  }

  /**
   * The stored result of a command within the idempotency window, as of the last durable command and as a retry
   * would be answered now: an entry past retention on the clock (which stamps the next record) is undefined.
   */
  storedResult(partnerId: string, id: string): Promise<Result | undefined> {
    return this.whenDurable(() => this.engine.storedResult(partnerId, id, { timeMs: this.clock() }));
  }

  /**
   * `read()` at a durable point (everything applied is journaled): now when no write is in flight, else right
   * after the write in flight is durable and its results are released, before the next record is applied. While
   * the shard rebuilds after a failed write, after the rebuild. When that rebuild failed, refused at once
   * (ShardUnavailableError), and once the unavailability has run out a read, like a submit, starts it again.
   */
  private whenDurable<T>(read: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const answer = () => {
        try {
          resolve(read());
        } catch (error) {
          reject(error);
        }
      };
      if (this.stale && this.rebuilding === undefined) {
        // The rebuild failed: nothing would answer a waiting read until one succeeds.
        this.retryRebuildIfDue();
        const retryAfterMs = Math.max(0, this.unavailableUntilMs - this.clock());
        reject(new ShardUnavailableError("shard unavailable: rebuilding after a failed journal write", retryAfterMs, { cause: this.failure }));
      } else if (this.handed.value === this.journaled.value) answer();
      else this.waiting.push({ answer, reject });
    });
  }

  /** At a durable point: answer what waited for one. */
  private answerWaiting(): void {
    assert(this.handed.value === this.journaled.value, "answered at a durable point");
    for (const { answer } of this.waiting.splice(0)) answer();
  }

  /** Whether the shard takes commands now (not closed, not waiting out a journal failure). */
  get accepting(): boolean {
    return this.state === "open";
  }

  /** Counters since the shard opened (a copy). */
  metrics(): ShardMetrics {
    return {
      resultsByCode: this.resultsByCode.slice(),
      records: this.records,
      recordCommands: this.recordCommands,
      commitMsSum: this.commitMsSum,
      commitMsBuckets: this.commitMsBuckets.slice(),
      ringOccupancy: this.ringOccupancy,
      lastSequenced: this.engine.sequencer.cursor.value,
      lastApplied: this.engine.processor.sequence.value,
      ringSlots: this.engine.ring.size,
    };
  }

  /** Commands sequenced but not yet released (their slots are taken: a full ring refuses submits), for metrics. */
  get ringOccupancy(): number {
    return this.engine.ring.size - this.engine.sequencer.remainingCapacity();
  }

  /**
   * Sequence `commands` (all-or-nothing when `atomic`) and resolve with their results once they are durable and
   * applied; with `mode: "async"`, resolve with no results as soon as they are durable (read results later with
   * `storedResult`).
   * Throws InvalidCommandError for malformed input and OverloadedError when the ring is full, synchronously and
   * before anything is sequenced; rejects with ShardUnavailableError when the journal fails.
   */
  submit(commands: readonly Command[], options: { atomic?: boolean; mode?: "sync" | "async" } = {}): Promise<Result[]> {
    if (this.state !== "open") this.checkAvailable();
    if (!Array.isArray(commands)) throw new InvalidCommandError("commands", "must be an array");
    this.checkCount(commands.length);
    const engine = this.engine;
    const atomic = options?.atomic === true;
    // tryPublish checks an atomic group before it claims a slot. Time is stamped by the journaler, per record; 0 here
    // is overwritten before anything reads it.
    if (!engine.tryPublish(commands, 0, commands.length, atomic, 0)) {
      throw new OverloadedError(`shard ring full (${engine.ring.size} slots): retry later`);
    }
    const ring = engine.ring;
    const durableOnly = options?.mode === "async";
    return new Promise<Result[]>((resolve, reject) => {
      const first = this.enqueue(commands.length, durableOnly, reject, () => {
        if (durableOnly) return resolve([]);
        const results = new Array<Result>(commands.length);
        for (let k = 0; k < commands.length; k++) results[k] = engine.resultAt((first + k) & ring.mask, commands[k].id ?? "");
        resolve(results);
      });
    });
  }

  /**
   * `submit` for a scanned CommandBatch (core/command-batch-reader.ts), its commands one by one (no atomic groups):
   * their bytes go straight into ring slots, and the reply is a protobuf ResultBatch written from the ring's result
   * columns and the request's id bytes (no strings, no Result objects). `scan.bytes` must not change until the promise
   * settles (the ids are read from it then; NATS message payloads are never reused). Throws as `submit` does.
   */
  submitScanned(scan: ScannedBatch): Promise<Uint8Array> {
    if (this.state !== "open") this.checkAvailable();
    this.checkCount(scan.count);
    const engine = this.engine;
    if (!engine.tryPublishScanned(scan, 0)) throw new OverloadedError(`shard ring full (${engine.ring.size} slots): retry later`);
    return new Promise<Uint8Array>((resolve, reject) => {
      const first = this.enqueue(scan.count, false, reject, () => resolve(writeScannedResults(engine.ring, first, scan)));
    });
  }

  /** A request holds 1..SUBMIT_COMMANDS_MAX commands, and no more than the ring has slots (it could never fit). */
  private checkCount(count: number): void {
    const max = Math.min(SUBMIT_COMMANDS_MAX, this.engine.ring.size);
    if (count < 1 || count > max) throw new InvalidCommandError("commands", `must be an array of 1-${max} commands, got ${count}`);
  }

  /** Queue the `count` commands just published; returns the sequence of the first. */
  private enqueue(count: number, durableOnly: boolean, reject: (error: Error) => void, deliver: () => void): number {
    const first = this.engine.sequencer.cursor.value - count + 1;
    this.pending.push({ first, count, deliver, reject, durableOnly, settled: false });
    if (!this.writing) this.startWriting();
    return first;
  }

  private checkAvailable(): void {
    if (this.state === "unavailable" && this.clock() >= this.unavailableUntilMs) {
      if (!this.stale) {
        this.state = "open";
        this.options.log?.("shard retrying the journal after a failure");
        return;
      }
      this.retryRebuildIfDue();
    }
    if (this.state === "unavailable") {
      const retryAfterMs = Math.max(0, this.unavailableUntilMs - this.clock());
      throw new ShardUnavailableError("shard unavailable: the journal cannot be written", retryAfterMs, { cause: this.failure });
    }
    throw new ShardUnavailableError("shard closed", 0);
  }

  /** The rebuild after a failed write failed too (it reads the disk): once retryAfterMs has passed, try it again. */
  private retryRebuildIfDue(): void {
    if (this.stale && this.rebuilding === undefined && this.clock() >= this.unavailableUntilMs) this.rebuilding = this.rebuild();
  }

  private startWriting(): void {
    this.writing = true;
    this.idle = new Promise((resolve) => {
      this.idleResolve = resolve;
    });
    // Let the current turn's other submits join the first record.
    Promise.resolve().then(() => this.writeLoop());
  }

  /**
   * The journaler: one record per write holding everything published since the last one. Pipelined: as soon as a
   * write is durable the next one starts, and the processor applies the durable batch while it is in flight, so
   * the CPU and the disk work at the same time.
   */
  private async writeLoop(): Promise<void> {
    const engine = this.engine;
    try {
      let writing = this.startRecord();
      while (writing !== undefined) {
        // Apply the record while the journal writes it; its results wait for the write.
        engine.drain();
        try {
          await writing.done;
        } catch (error) {
          this.fail(error);
          return;
        }
        this.records++;
        this.recordCommands += writing.last - this.journaled.value;
        // From the clock as read when the write started (the stamped time may be ahead of it), never negative.
        this.countCommit(Math.max(0, this.clock() - writing.startedMs));
        this.journaled.value = writing.last;
        // A durable point: everything applied is journaled.
        this.settleDurable(writing.last);
        this.release(writing.last);
        this.answerWaiting();
        this.maybeSnapshot();
        // Let the event loop run once before the next record: the requests a transport has already received join
        // it, instead of each busy turn writing a record of a few commands (on 2 vCPUs a record costs ~110 us of
        // CPU, mostly the kernel's; this cut the HTTP gateway's CPU per request by 10-13%, bench/README.md).
        if (this.options.yieldToEventLoop !== undefined) await this.options.yieldToEventLoop();
        writing = this.startRecord();
      }
    } finally {
      this.writing = false;
      this.idleResolve?.();
    }
  }

  /** Add a commit that took `ms` to the sum and to its histogram bucket. */
  private countCommit(ms: number): void {
    this.commitMsSum += ms;
    for (let bucket = 0; bucket < COMMIT_MS_BUCKETS.length; bucket++) {
      if (ms <= COMMIT_MS_BUCKETS[bucket]) {
        this.commitMsBuckets[bucket]++;
        return;
      }
    }
  }

  /** Stamp, encode and start appending everything published after the journaled sequence; undefined if nothing. */
  private startRecord(): { last: number; startedMs: number; done: Promise<void> } | undefined {
    const engine = this.engine;
    const ring = engine.ring;
    const first = this.journaled.value + 1;
    const last = engine.sequencer.cursor.value;
    if (last < first || (this.state !== "open" && this.state !== "closing")) return undefined;
    const startedMs = this.clock();
    const timeMs = Math.max(this.lastTimeMs, startedMs);
    this.lastTimeMs = timeMs;
    for (let sequence = first; sequence <= last; sequence++) ring.timeMs[sequence & ring.mask] = timeMs;
    const length = encodeRecord(ring, first, last, timeMs, this.recordBuffer);
    this.handed.value = last;
    return { last, startedMs, done: this.journal.append(this.recordBuffer.subarray(0, length), first, last - first + 1) };
  }

  /** Async mode: resolve (with no results) the durable-only requests whose commands are all journaled. */
  private settleDurable(last: number): void {
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const request = this.pending[i];
      if (request.first > last) break;
      if (request.durableOnly && !request.settled && request.first + request.count - 1 <= last) {
        request.settled = true;
        request.deliver();
      }
    }
  }

  /** Resolve every pending request whose commands are all applied (<= `last`). */
  private release(last: number): void {
    const ring = this.engine.ring;
    while (this.pendingHead < this.pending.length) {
      const request = this.pending[this.pendingHead];
      const count = request.count;
      if (request.first + count - 1 > last) break;
      for (let k = 0; k < count; k++) this.resultsByCode[ring.code[(request.first + k) & ring.mask]]++;
      this.pendingHead++;
      // A durable-only request was answered when its record was durable.
      if (!request.settled) request.deliver();
    }
    this.compactPending();
  }

  private compactPending(): void {
    if (this.pendingHead === this.pending.length) {
      this.pending.length = 0;
      this.pendingHead = 0;
    } else if (this.pendingHead > 1024) {
      this.pending.splice(0, this.pendingHead);
      this.pendingHead = 0;
    }
  }

  /**
   * The journal refused a record, which was applied while it was written: fail the requests of everything after
   * `journaled` (as never applied), rebuild the engine without them, and refuse new requests for `retryAfterMs`;
   * then the next submit tries the disk again.
   */
  private fail(error: unknown): void {
    const retryAfterMs = this.options.retryAfterMs ?? 1000;
    this.failure = error;
    // A failure while close() runs must not reopen the shard to submits: it stays closing.
    if (this.state !== "closing") this.state = "unavailable";
    this.unavailableUntilMs = this.clock() + retryAfterMs;
    this.options.log?.(`journal append failed, shard unavailable for ${retryAfterMs} ms: ${(error as Error)?.message}`);
    const failed = this.pending.splice(this.pendingHead);
    this.pending.length = 0;
    this.pendingHead = 0;
    for (const request of failed) {
      request.reject(new ShardUnavailableError("the journal could not be written; nothing was applied", retryAfterMs, { cause: error }));
    }
    // The failed record was applied while it was written: the engine is ahead of the journal.
    this.stale = true;
    this.rebuilding = this.rebuild();
  }

  /**
   * Replaces the engine, left ahead of the journal by a failed write, with one recovered as at start: the newest
   * snapshot (always of a durable point) plus the journal after it. Reads wait for it. When it fails too (it
   * reads the disk), those reads are refused, and the next submit after retryAfterMs tries again.
   */
  private async rebuild(): Promise<void> {
    const log = this.options.log ?? (() => {});
    try {
      const { engine } = await Shard.restoreNewest(this.options, log);
      const replayed = new Sequence(engine.lastSequence);
      await Shard.replay(engine, this.journal, replayed);
      assert(engine.lastSequence === this.journaled.value, `rebuilt to ${engine.lastSequence}, journaled ${this.journaled.value}`);
      this.attach(engine);
      this.engine = engine;
      this.handed.value = this.journaled.value;
      this.stale = false;
      log(`shard rebuilt from its snapshot and journal after the failed write, at sequence ${engine.lastSequence}`);
      this.answerWaiting();
    } catch (error) {
      log(`rebuilding the shard after a failed write failed, retrying later: ${(error as Error)?.message}`);
      const retryAfterMs = this.options.retryAfterMs ?? 1000;
      // Not again before retryAfterMs: a rebuild reads the newest snapshot and the journal, and the disk is failing.
      this.unavailableUntilMs = this.clock() + retryAfterMs;
      for (const { reject } of this.waiting.splice(0)) {
        reject(new ShardUnavailableError("shard unavailable: rebuilding after a failed journal write", retryAfterMs, { cause: error }));
      }
    } finally {
      this.rebuilding = undefined;
    }
  }

  private maybeSnapshot(): void {
    if (this.snapshotting !== undefined) return;
    const everyCommands = this.options.snapshotEveryCommands ?? SNAPSHOT_EVERY_COMMANDS_DEFAULT;
    const everyMs = this.options.snapshotEveryMs ?? SNAPSHOT_EVERY_MS_DEFAULT;
    const sequence = this.engine.lastSequence;
    if (sequence - this.snapshotSequence < everyCommands && this.lastTimeMs - this.snapshotTimeMs < everyMs) return;
    // A failed snapshot left the interval where it was, so one is due at every record: wait out its backoff.
    if (this.snapshotRetryAfterMs > 0 && this.clock() < this.snapshotRetryAtMs) return;
    void this.takeSnapshot();
  }

  /**
   * Snapshot now (also used by close): the state as of the last durable command, taken incrementally while the
   * shard keeps running. Resolves when it is stored and older journal segments are compacted.
   */
  async takeSnapshot(): Promise<void> {
    while (this.snapshotting !== undefined) await this.snapshotting;
    let done!: () => void;
    this.snapshotting = new Promise<void>((resolve) => {
      done = resolve;
    });
    let sequence = this.journaled.value;
    try {
      // Started (an O(1) step) at a durable point only: a snapshot never holds a command the journal may lose.
      const job = await this.whenDurable(() => new SnapshotJob(this.engine.ledger, this.snapshotScratch));
      sequence = job.lastSequence;
      const timeMs = this.lastTimeMs;
      const bytes = await job.run(this.options.yieldToEventLoop ?? (() => Promise.resolve()));
      await this.snapshots.save(sequence, bytes);
      // Only a stored snapshot restarts the interval: after a failed one the journal is still uncompacted.
      this.snapshotSequence = sequence;
      this.snapshotTimeMs = timeMs;
      this.snapshotRetryAfterMs = 0;
      await this.compactAfterSnapshot(sequence);
    } catch (error) {
      this.snapshotFailed(sequence, error);
    } finally {
      this.snapshotting = undefined;
      done();
    }
  }

  /**
   * Backs the next automatic snapshot off: retryAfterMs (at least 1 ms) after the first failure, twice as long after
   * each further one, never longer than snapshotEveryMs or SNAPSHOT_RETRY_MS_MAX, so a disk that keeps failing is not
   * asked for a whole snapshot at every record, and one that is back gets it within the interval.
   */
  private snapshotFailed(sequence: number, error: unknown): void {
    const everyMs = this.options.snapshotEveryMs ?? SNAPSHOT_EVERY_MS_DEFAULT;
    const first = Math.max(1, this.options.retryAfterMs ?? 1000);
    this.snapshotRetryAfterMs = Math.max(1, Math.min(everyMs, SNAPSHOT_RETRY_MS_MAX, this.snapshotRetryAfterMs === 0 ? first : this.snapshotRetryAfterMs * 2));
    this.snapshotRetryAtMs = this.clock() + this.snapshotRetryAfterMs;
    this.options.log?.(`snapshot at ${sequence} failed, the next in ${this.snapshotRetryAfterMs} ms at the earliest: ${(error as Error).message}`);
  }

  /** After a snapshot is stored: compact the journal; a failure is logged (the snapshot itself stands). */
  private async compactAfterSnapshot(sequence: number): Promise<void> {
    try {
      // Keep the journal from the oldest retained snapshot on, so a damaged newest snapshot can fall back.
      const retained = await this.snapshots.list();
      const oldest = retained[retained.length - 1] ?? 0;
      const floor = this.options.journalFloor === undefined ? oldest : await this.options.journalFloor();
      await this.journal.compact(Math.min(oldest, floor));
    } catch (error) {
      this.options.log?.(`snapshot at ${sequence} stored; compacting the journal after it failed: ${(error as Error).message}`);
    }
  }

  /**
   * Stop accepting, wait for every sequenced command to be journaled and released, snapshot, close the journal.
   * Calls after the first (also while it runs) wait for the same close.
   */
  close(): Promise<void> {
    this.closed ??= this.closeOnce();
    return this.closed;
  }

  private closed: Promise<void> | undefined;

  private async closeOnce(): Promise<void> {
    this.state = "closing";
    while (this.writing) await this.idle;
    await this.rebuilding;
    // (A stale engine's sequenced commands were refused when its write failed: nothing of it is written.)
    if (!this.stale && this.engine.sequencer.cursor.value > this.journaled.value) {
      this.startWriting();
      await this.idle;
    }
    await this.snapshotting;
    if (!this.stale) await this.takeSnapshot();
    this.state = "closed";
    await this.journal.close();
  }
}
