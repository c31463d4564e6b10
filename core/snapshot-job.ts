/**
 * An incremental snapshot: the same bytes as encodeSnapshot() at the moment the job starts, produced in chunks
 * while the processor keeps running, so taking a snapshot of 1M accounts never stalls the shard for long.
 *
 * Start (synchronous, small): the header, partners, currencies and holds are taken at once; the account and window
 * columns are only counted. Then `run` copies them SNAPSHOT_CHUNK_ROWS rows at a time, yielding to the event loop
 * between chunks. Rows the processor changes before they are copied are saved first (copy-on-write, through the
 * ledger's observer hooks): an existing account's mutable columns (its key, partner and currency never change),
 * and a window entry about to be evicted (entries never change while they are in the window). The pre-images are
 * written over the copied rows at the end. Finally the body is encoded and checksummed, also in chunks.
 */
import { assert } from "./assert.ts";
import type { Ledger, LedgerObserver } from "./ledger.ts";
import { KEY_BYTES_MAX } from "./limits.ts";
import { type SnapshotParts, snapshotHeader, writeSnapshot } from "./snapshot.ts";

/**
 * Rows per chunk between yields: 16k. Measured at 1M accounts on the development VM, 64k-row chunks of window
 * copying or account-key packing held the event loop 11-24 ms; 16k rows keep each step to a few milliseconds.
 */
export const SNAPSHOT_CHUNK_ROWS = 1 << 14;

/**
 * Longest a step of copying runs before it yields, in milliseconds, whatever SNAPSHOT_CHUNK_ROWS allows: the first
 * snapshot after a start runs code the JIT has not optimized yet, and its 16k-row steps took 14-19 ms on the
 * development VM (later snapshots' ~2 ms). Read every STEP_CLOCK_ROWS rows.
 */
export const SNAPSHOT_STEP_MS_MAX = 4;
const STEP_CLOCK_ROWS = 1024;
/** A monotonic clock where the runtime has the Web's `performance` (Bun, Deno, Node all do), else Date.now. */
const stepClock: () => number =
  typeof performance === "object" && typeof performance.now === "function" ? () => performance.now() : Date.now;
/** Whether a step that began at `started` (stepClock) has used its time. */
const stepSpent = (started: number): boolean => stepClock() - started >= SNAPSHOT_STEP_MS_MAX;

/** Lets the event loop run (the runtime's setImmediate or similar); `() => Promise.resolve()` does not yield. */
export type YieldToEventLoop = () => Promise<void>;

/**
 * Memory one owner (a shard, a relay) reuses from one snapshot to the next. A snapshot of 1M accounts with a full
 * window copies ~130 MB of columns and writes ~125 MB of output; allocated afresh each time, that garbage made the
 * collector's pauses the longest stalls (45-50 ms on every fifth snapshot in bench:durable, against 8-15 ms steps).
 * Buffers grow as needed and are never shrunk. Only one snapshot may use a scratch at a time, and its output must
 * be done with (stored) before the next starts.
 */
export class SnapshotScratch {
  private readonly buffers = new Map<string, ArrayBuffer>();
  /** Buffers allocated so far (a test sees that a reserved scratch allocates nothing more). */
  allocations = 0;

  /** At least `bytes` bytes for `name`, its previous contents unspecified. */
  take(name: string, bytes: number): ArrayBuffer {
    const buffer = this.buffers.get(name);
    if (buffer !== undefined && buffer.byteLength >= bytes) return buffer;
    // A quarter more than asked: a shard's tables grow between snapshots.
    const grown = new ArrayBuffer(Math.max(bytes, Math.ceil(bytes * 1.25), 8));
    this.buffers.set(name, grown);
    this.allocations++;
    return grown;
  }

  float64(name: string, count: number): Float64Array {
    return new Float64Array(this.take(name, count * 8), 0, count);
  }

  uint32(name: string, count: number): Uint32Array {
    return new Uint32Array(this.take(name, count * 4), 0, count);
  }

  int32(name: string, count: number): Int32Array {
    return new Int32Array(this.take(name, count * 4), 0, count);
  }

  uint16(name: string, count: number): Uint16Array {
    return new Uint16Array(this.take(name, count * 2), 0, count);
  }

  uint8(name: string, count: number): Uint8Array {
    return new Uint8Array(this.take(name, count), 0, count);
  }
}

/** One snapshot in progress. At most one per ledger at a time. */
export class SnapshotJob implements LedgerObserver {
  readonly lastSequence: number;
  private readonly ledger: Ledger;
  private readonly header: Omit<SnapshotParts, "accounts" | "window">;
  // Accounts: rows [0, accountCount) as of the start; rows < accountsCopied are in the copy columns.
  private readonly accountCount: number;
  private accountsCopied = 0;
  // Copies, allocated when copying starts (not in the synchronous start).
  private balance: Float64Array = new Float64Array(0);
  private held: Float64Array = new Float64Array(0);
  private overdraftLimit: Float64Array = new Float64Array(0);
  private accountSeq: Float64Array = new Float64Array(0);
  private status: Uint8Array = new Uint8Array(0);
  /** 1 for rows whose pre-image is saved. */
  private readonly accountSaved: Uint8Array;
  /** Pre-images: row, balance, held, overdraftLimit, seq, status. */
  private readonly accountPreimages: number[] = [];
  // Window: entries [0, windowCount) from windowHead, oldest first; those < windowCopied are copied.
  private readonly windowHead: number;
  private readonly windowCount: number;
  private windowCopied = 0;
  private windowCopy: WindowCopy | undefined;
  private running = false;
  private readonly chunkRows: number;

  /**
   * Start a snapshot of `ledger` as it is now. Call `run` to finish it. `scratch`: memory to reuse (the bytes `run`
   * returns live in it until the next snapshot with the same scratch). `chunkRows` is for tests.
   */
  constructor(ledger: Ledger, private readonly scratch = new SnapshotScratch(), chunkRows = SNAPSHOT_CHUNK_ROWS) {
    assert(Number.isInteger(chunkRows) && chunkRows >= 1, "chunk rows must be a positive integer");
    this.chunkRows = chunkRows;
    assert(ledger.observer === undefined, "a snapshot is already being taken");
    this.ledger = ledger;
    this.lastSequence = ledger.lastSequence;
    this.header = snapshotHeader(ledger);
    this.accountCount = ledger.accountCount;
    this.accountSaved = scratch.uint8("accountSaved", this.accountCount).fill(0);
    this.windowHead = ledger.windowHead;
    this.windowCount = ledger.windowCount;
    ledger.observer = this;
  }

  beforeAccountChange(account: number): void {
    if (account < this.accountsCopied || account >= this.accountCount || this.accountSaved[account] === 1) return;
    const ledger = this.ledger;
    this.accountSaved[account] = 1;
    this.accountPreimages.push(
      account,
      ledger.balance[account],
      ledger.held[account],
      ledger.overdraftLimit[account],
      ledger.accountSeq[account],
      ledger.status[account],
    );
  }

  beforeWindowEvict(entry: number): void {
    const capacity = this.ledger.sizes.idempotencyCommandsMax;
    const row = entry >= this.windowHead ? entry - this.windowHead : entry + capacity - this.windowHead;
    if (row < this.windowCopied || row >= this.windowCount) return;
    // Evictions go oldest first, as copying does: copy this row now, ahead of its chunk.
    assert(row === this.windowCopied, "window evictions and snapshot copying both go oldest first");
    this.window().copyRow(this.ledger, row, entry);
    this.windowCopied++;
  }

  private window(): WindowCopy {
    if (this.windowCopy === undefined) {
      // Before the first copy or eviction every captured entry still has its key: size the packed keys exactly.
      this.windowCopy = new WindowCopy(this.windowCount, windowKeyBytes(this.ledger, this.windowHead, this.windowCount), this.scratch);
    }
    return this.windowCopy;
  }

  /**
   * Allocate in `scratch` now what a snapshot of `ledger` as it is would take, with `outputBytes` for the output
   * (e.g. the size of the snapshot just restored): at a shard's start, where a collector pause costs nothing, so
   * its first snapshot meets none. Every name and size here is the job's own (a test holds them to it).
   */
  static reserve(ledger: Ledger, scratch: SnapshotScratch, outputBytes: number): void {
    const accounts = ledger.accountCount;
    scratch.uint8("accountSaved", accounts);
    scratch.float64("balance", accounts);
    scratch.float64("held", accounts);
    scratch.float64("overdraftLimit", accounts);
    scratch.float64("accountSeq", accounts);
    scratch.uint8("status", accounts);
    scratch.uint8("accountKeys", accountKeyBytes(ledger, accounts));
    scratch.uint32("accountPartner", accounts);
    scratch.uint8("accountKeyLength", accounts);
    scratch.uint16("accountCurrency", accounts);
    new WindowCopy(ledger.windowCount, windowKeyBytes(ledger, ledger.windowHead, ledger.windowCount), scratch);
    scratch.uint8("output", outputBytes);
  }

  /** Copy, encode and checksum, yielding between chunks. Resolves with the framed snapshot bytes. */
  async run(yieldToEventLoop: YieldToEventLoop): Promise<Uint8Array> {
    assert(!this.running, "a snapshot job runs once");
    this.running = true;
    const count = this.accountCount;
    const scratch = this.scratch;
    this.balance = scratch.float64("balance", count);
    this.held = scratch.float64("held", count);
    this.overdraftLimit = scratch.float64("overdraftLimit", count);
    this.accountSeq = scratch.float64("accountSeq", count);
    this.status = scratch.uint8("status", count);
    try {
      while (this.accountsCopied < this.accountCount) {
        this.copyAccounts();
        await yieldToEventLoop();
      }
      while (this.windowCopied < this.windowCount) {
        this.copyWindow();
        await yieldToEventLoop();
      }
    } finally {
      this.ledger.observer = undefined;
    }
    this.applyAccountPreimages();
    const accounts = await this.accountColumns(yieldToEventLoop);
    const window = this.window().columns();
    const steps = writeSnapshot({ ...this.header, accounts, window }, (bytes) => this.scratch.uint8("output", bytes));
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
      await yieldToEventLoop();
    }
  }

  private copyAccounts(): void {
    const ledger = this.ledger;
    const from = this.accountsCopied;
    const to = Math.min(this.accountCount, from + this.chunkRows);
    this.balance.set(ledger.balance.subarray(from, to), from);
    this.held.set(ledger.held.subarray(from, to), from);
    this.overdraftLimit.set(ledger.overdraftLimit.subarray(from, to), from);
    this.accountSeq.set(ledger.accountSeq.subarray(from, to), from);
    this.status.set(ledger.status.subarray(from, to), from);
    this.accountsCopied = to;
  }

  private copyWindow(): void {
    const capacity = this.ledger.sizes.idempotencyCommandsMax;
    const end = Math.min(this.windowCount, this.windowCopied + this.chunkRows);
    const started = stepClock();
    while (this.windowCopied < end) {
      const to = Math.min(end, this.windowCopied + STEP_CLOCK_ROWS);
      for (let row = this.windowCopied; row < to; row++) {
        const entry = this.windowHead + row < capacity ? this.windowHead + row : this.windowHead + row - capacity;
        this.window().copyRow(this.ledger, row, entry);
      }
      this.windowCopied = to;
      if (stepSpent(started)) return;
    }
  }

  /** Rows changed before they were copied get their value from the start of the snapshot back. */
  private applyAccountPreimages(): void {
    const saved = this.accountPreimages;
    for (let i = 0; i < saved.length; i += 6) {
      const row = saved[i];
      this.balance[row] = saved[i + 1];
      this.held[row] = saved[i + 2];
      this.overdraftLimit[row] = saved[i + 3];
      this.accountSeq[row] = saved[i + 4];
      this.status[row] = saved[i + 5];
    }
  }

  /**
   * The account columns; keys, partners and currencies of existing rows never change, so they are read now, row by
   * row with a yield every chunk (the first snapshot after a start writes scratch pages for the first time: copied
   * in one go, the three 1M-row columns held the event loop ~29 ms in page faults).
   */
  private async accountColumns(yieldToEventLoop: YieldToEventLoop) {
    const ledger = this.ledger;
    const count = this.accountCount;
    const table = ledger.accounts;
    const keyBytes = this.scratch.uint8("accountKeys", accountKeyBytes(ledger, count));
    const partner = this.scratch.uint32("accountPartner", count);
    const keyLength = this.scratch.uint8("accountKeyLength", count);
    const currency = this.scratch.uint16("accountCurrency", count);
    let offset = 0;
    let stepStarted = stepClock();
    for (let row = 0; row < count; row++) {
      const length = table.keyLength[row];
      partner[row] = table.owner[row];
      keyLength[row] = length;
      currency[row] = ledger.currency[row];
      const base = row * KEY_BYTES_MAX;
      for (let b = 0; b < length; b++) keyBytes[offset + b] = table.keyBytes[base + b];
      offset += length;
      const chunkDone = row % this.chunkRows === this.chunkRows - 1;
      if (chunkDone || (row % STEP_CLOCK_ROWS === STEP_CLOCK_ROWS - 1 && stepSpent(stepStarted))) {
        await yieldToEventLoop();
        stepStarted = stepClock();
      }
    }
    const bytes = (array: Float64Array | Uint32Array | Uint16Array | Uint8Array) =>
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    return {
      count,
      partnerIndex: bytes(partner),
      keyLength: bytes(keyLength),
      keyBytes,
      currencyIndex: bytes(currency),
      status: bytes(this.status),
      balance: bytes(this.balance),
      held: bytes(this.held),
      overdraftLimit: bytes(this.overdraftLimit),
      seq: bytes(this.accountSeq),
    };
  }
}

/** Bytes of the keys of accounts [0, count). */
function accountKeyBytes(ledger: Ledger, count: number): number {
  let total = 0;
  for (let row = 0; row < count; row++) total += ledger.accounts.keyLength[row];
  return total;
}

/** Bytes of the keys of the `count` window entries from `head`, oldest first (before any is evicted). */
function windowKeyBytes(ledger: Ledger, head: number, count: number): number {
  const capacity = ledger.sizes.idempotencyCommandsMax;
  let total = 0;
  for (let row = 0; row < count; row++) {
    const entry = head + row < capacity ? head + row : head + row - capacity;
    total += ledger.window.keyLength[entry];
  }
  return total;
}

/** The window's rows, copied one at a time and strictly oldest first (in chunks, or just before an eviction). */
class WindowCopy {
  private readonly partner: Uint32Array;
  private readonly keyLength: Uint8Array;
  /** The keys, packed in row order (rows are copied in order). */
  private readonly keys: Uint8Array;
  private keysEnd = 0;
  private rowsCopied = 0;
  private readonly fingerprint: Int32Array;
  private readonly time: Float64Array;
  private readonly code: Uint8Array;
  private readonly seq: Float64Array;
  private readonly balance: Float64Array;
  private readonly held: Float64Array;
  private readonly available: Float64Array;

  constructor(
    private readonly count: number,
    keyBytes: number,
    scratch: SnapshotScratch,
  ) {
    this.partner = scratch.uint32("windowPartner", count);
    this.keyLength = scratch.uint8("windowKeyLength", count);
    this.keys = scratch.uint8("windowKeys", keyBytes);
    this.fingerprint = scratch.int32("windowFingerprint", count * 2);
    this.time = scratch.float64("windowTime", count);
    this.code = scratch.uint8("windowCode", count);
    this.seq = scratch.float64("windowSeq", count);
    this.balance = scratch.float64("windowBalance", count);
    this.held = scratch.float64("windowHeld", count);
    this.available = scratch.float64("windowAvailable", count);
  }

  copyRow(ledger: Ledger, row: number, entry: number): void {
    assert(row === this.rowsCopied, "window rows are copied in order");
    this.rowsCopied++;
    const table = ledger.window;
    this.partner[row] = table.owner[entry];
    const length = table.keyLength[entry];
    this.keyLength[row] = length;
    const from = entry * KEY_BYTES_MAX;
    const to = this.keysEnd;
    for (let b = 0; b < length; b++) this.keys[to + b] = table.keyBytes[from + b];
    this.keysEnd = to + length;
    this.fingerprint[row * 2] = ledger.windowFingerprint[entry * 2];
    this.fingerprint[row * 2 + 1] = ledger.windowFingerprint[entry * 2 + 1];
    this.time[row] = ledger.windowTime[entry];
    this.code[row] = ledger.windowCode[entry];
    this.seq[row] = ledger.windowSeq[entry];
    this.balance[row] = ledger.windowBalance[entry];
    this.held[row] = ledger.windowHeld[entry];
    this.available[row] = ledger.windowAvailable[entry];
  }

  columns() {
    assert(this.rowsCopied === this.count && this.keysEnd === this.keys.length, "every window row is copied");
    const keyBytes = this.keys;
    const bytes = (array: Float64Array | Int32Array | Uint32Array | Uint8Array) =>
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    return {
      count: this.count,
      partnerIndex: bytes(this.partner),
      keyLength: bytes(this.keyLength),
      keyBytes,
      fingerprint: bytes(this.fingerprint),
      timeMs: bytes(this.time),
      code: bytes(this.code),
      seq: bytes(this.seq),
      balance: bytes(this.balance),
      held: bytes(this.held),
      available: bytes(this.available),
    };
  }
}
