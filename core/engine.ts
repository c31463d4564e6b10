/**
 * The Engine: one shard in one thread. It joins the ring buffer, the sequencer, the BatchEventProcessor and the
 * ledger behind a plain API: `execute(commands)` translates the commands into ring slots, stamps the batch time,
 * publishes, drains, and reads the results back. The durable shard (journal before release) wraps the same pieces.
 */
import { ACCOUNT_STATUSES, RESULT_CODES } from "./codes.ts";
import { BatchEventProcessor } from "./batch-event-processor.ts";
import { InvalidCommandError } from "./errors.ts";
import { checkCommands, translateCommand, translateScanned } from "./event-translator.ts";
import type { ScannedBatch } from "./command-batch-reader.ts";
import { Ledger } from "./ledger.ts";
import { AMOUNT_MAX, GROUP_COMMANDS_MAX, RING_SLOTS_DEFAULT } from "./limits.ts";
import { RingBuffer, Sequence, Sequencer } from "./ring-buffer.ts";
import { decodeSnapshot, encodeSnapshot, stateHash } from "./snapshot.ts";
import type { Account, Command, LedgerOptions, Result } from "./types.ts";

/** Engine options: table sizes, ring size, and the clock that stamps batches. */
export interface EngineOptions extends LedgerOptions {
  /** Ring slots, a power of two. Default RING_SLOTS_DEFAULT (8192). */
  ringSlots?: number;
  /** Milliseconds since the epoch; read once per batch by the sequencer, never by the processor. Default Date.now. */
  clock?: () => number;
}

/** Options of one `execute` call. */
export interface ExecuteOptions {
  /** Apply all commands or none. They must share one partner and have distinct ids; checks are not allowed. */
  atomic?: boolean;
  /** Stamp this time on the batch instead of reading the clock (replays, tests). Never moves time backwards. */
  timeMs?: number;
}

/** One shard's engine, single-threaded. */
export class Engine {
  readonly ring: RingBuffer;
  readonly sequencer: Sequencer;
  readonly processor: BatchEventProcessor;
  readonly ledger: Ledger;
  private readonly clock: () => number;

  constructor(options: EngineOptions = {}, ledger: Ledger = new Ledger(options)) {
    this.ledger = ledger;
    this.ring = new RingBuffer(options.ringSlots ?? RING_SLOTS_DEFAULT);
    const consumed = new Sequence(0);
    this.sequencer = new Sequencer(this.ring.size, consumed);
    this.sequencer.reset(ledger.lastSequence);
    this.processor = new BatchEventProcessor(this.ring, this.sequencer.cursor, ledger, consumed);
    this.clock = options.clock ?? Date.now;
  }

  /** An engine holding the state of `snapshot` (see encodeSnapshot). Throws SnapshotError for bad bytes. */
  static restore(snapshot: Uint8Array, options: EngineOptions = {}): Engine {
    return new Engine(options, decodeSnapshot(snapshot, options));
  }

  /** The sequence of the last processed command. */
  get lastSequence(): number {
    return this.ledger.lastSequence;
  }

  /** The stamped time of the last processed batch. */
  get timeMs(): number {
    return this.ledger.timeMs;
  }

  /**
   * Sequence and apply `commands`; one result per command, in order. Throws InvalidCommandError before anything is
   * sequenced when a command cannot be represented.
   */
  execute(commands: readonly Command[], options: ExecuteOptions = {}): Result[] {
    if (!Array.isArray(commands)) throw new InvalidCommandError("commands", "must be an array");
    const atomic = options.atomic === true;
    if (atomic) this.checkGroup(commands);
    // More than the ring holds goes in pieces: check the commands of the later pieces first, so a bad one throws
    // before the first piece is applied.
    const firstPiece = atomic ? commands.length : this.sequencer.remainingCapacity();
    if (commands.length > firstPiece) checkCommands(commands, firstPiece);
    const timeMs = this.stamp(options.timeMs);
    const results = new Array<Result>(commands.length);
    for (let start = 0; start < commands.length; ) {
      const count = atomic ? commands.length : Math.min(commands.length - start, this.sequencer.remainingCapacity());
      // Not tryPublish: a group was checked above, before anything was stamped.
      const published = this.publish(commands, undefined, start, count, atomic, timeMs);
      if (!published) throw new Error("ring full while the engine drains synchronously: a bug");
      this.drain();
      const first = this.sequencer.cursor.value - count + 1;
      for (let k = 0; k < count; k++) results[start + k] = this.resultAt((first + k) & this.ring.mask, commands[start + k].id ?? "");
      start += count;
    }
    return results;
  }

  /**
   * Translate `count` commands from `start` into the ring and publish them as one batch stamped `timeMs`, as an
   * atomic group when `atomic`. Returns false, having written nothing, when the ring has no room (back-pressure).
   * The allocation-free producer path: no results are built; read them from the ring's result columns.
   * Throws InvalidCommandError, having claimed nothing, for a command that cannot be represented, a group `execute`
   * refuses (the ledger applies a group under its first command's partner, and stores no check), or a `timeMs` it
   * refuses.
   */
  tryPublish(commands: readonly Command[], start: number, count: number, atomic: boolean, timeMs: number): boolean {
    if (atomic) this.checkGroup(commands, start, count);
    return this.publish(commands, undefined, start, count, atomic, timeMs);
  }

  /**
   * `tryPublish` for a scanned CommandBatch (all its commands, one by one, not as a group): the translator copies
   * each command's bytes into its slot, with no strings or objects on the way.
   */
  tryPublishScanned(scan: ScannedBatch, timeMs: number): boolean {
    return this.publish(undefined, scan, 0, scan.count, false, timeMs);
  }

  /** Claim `count` slots, translate commands `start..` of `commands` or of `scan` into them, publish. */
  private publish(commands: readonly Command[] | undefined, scan: ScannedBatch | undefined, start: number, count: number, atomic: boolean, timeMs: number): boolean {
    // The first unit applied with a later stamp makes it the ledger's time, for good: it must be one a snapshot holds.
    checkTime(timeMs);
    const high = this.sequencer.tryNext(count);
    if (high < 0) return false;
    const ring = this.ring;
    const low = high - count + 1;
    try {
      for (let k = 0; k < count; k++) {
        const index = (low + k) & ring.mask;
        if (scan === undefined) translateCommand(ring, index, (commands as readonly Command[])[start + k], start + k);
        else translateScanned(ring, index, scan, start + k, start + k);
        ring.timeMs[index] = timeMs;
        ring.groupSize[index] = atomic ? (k === 0 ? count : 0) : 1;
      }
    } catch (error) {
      this.sequencer.cancel(high, count);
      throw error;
    }
    this.sequencer.publish(high);
    return true;
  }

  /** Process everything published; returns the number of slots processed. */
  drain(): number {
    return this.processor.processAvailable();
  }

  /** The account, or undefined. */
  account(partnerId: string, accountId: string): Account | undefined {
    const ledger = this.ledger;
    const account = ledger.accountIndex(partnerId, accountId);
    if (account < 0) return undefined;
    return {
      partnerId,
      accountId,
      currency: ledger.currencies.keyString(ledger.currency[account]),
      balance: ledger.balance[account],
      held: ledger.held[account],
      available: ledger.availableOf(account),
      overdraftLimit: ledger.overdraftLimit[account],
      status: ACCOUNT_STATUSES[ledger.status[account]],
      seq: ledger.accountSeq[account],
    };
  }

  /**
   * The stored result of command `id` of `partnerId` while it is in the idempotency window, else undefined: what a
   * retry stamped `timeMs` would be answered, so an entry past `idempotencyRetentionMs` then is undefined even before
   * a command arrives to forget it. Without `timeMs`, as of the last stamped time: the answer then depends on the
   * state alone (a standby fed a journal, a replay); a server answering clients passes the time its clock says.
   * Throws InvalidCommandError for a `timeMs` that `execute` would refuse.
   */
  storedResult(partnerId: string, id: string, options: { timeMs?: number } = {}): Result | undefined {
    const ledger = this.ledger;
    const timeMs = options.timeMs === undefined ? ledger.timeMs : this.stamp(options.timeMs);
    const entry = ledger.windowEntry(partnerId, id, timeMs);
    if (entry < 0) return undefined;
    return buildResult(
      id,
      ledger.windowCode[entry],
      ledger.windowSeq[entry],
      ledger.windowBalance[entry],
      ledger.windowHeld[entry],
      ledger.windowAvailable[entry],
      true,
    );
  }

  /** The full state as versioned, checksummed, deterministic bytes. */
  snapshot(): Uint8Array {
    return encodeSnapshot(this.ledger);
  }

  /** A hex hash of the full state; equal states have equal hashes. */
  stateHash(): string {
    return stateHash(this.ledger);
  }

  /** Throw InvalidCommandError unless `count` commands from `start` (default: all) can be one atomic group. */
  checkGroup(commands: readonly Command[], start = 0, count = commands.length - start): void {
    checkGroup(commands, start, count, this.ring.size, this.groupIds);
  }

  /** The ids `checkGroup` has seen in the group it is checking; empty between checks. */
  private readonly groupIds = new Set<unknown>();

  private stamp(timeMs: number | undefined): number {
    const time = timeMs ?? this.clock();
    checkTime(time);
    return Math.max(time, this.ledger.timeMs);
  }

  /** The result in ring slot `index`, for command `id`. */
  resultAt(index: number, id: string): Result {
    const ring = this.ring;
    return buildResult(
      id,
      ring.code[index],
      ring.resultSeq[index],
      ring.balance[index],
      ring.held[index],
      ring.available[index],
      ring.duplicate[index] === 1,
    );
  }
}

/** Throw InvalidCommandError unless `time` is a stamp the ledger can take: a safe integer of milliseconds >= 0. */
function checkTime(time: unknown): asserts time is number {
  if (typeof time !== "number" || !Number.isSafeInteger(time) || time < 0 || time > AMOUNT_MAX) {
    throw new InvalidCommandError("timeMs", "must be a non-negative safe integer of milliseconds");
  }
}

function buildResult(
  id: string,
  code: number,
  seq: number,
  balance: number,
  held: number,
  available: number,
  duplicate: boolean,
): Result {
  const result: Result = { id, status: code === 0 ? "ok" : "rejected", code: RESULT_CODES[code], seq };
  if (!Number.isNaN(balance)) {
    result.balance = balance;
    result.held = held;
    result.available = available;
  }
  if (duplicate) result.duplicate = true;
  return result;
}

/**
 * An atomic group: commands `start..start + count - 1`, 1..GROUP_COMMANDS_MAX of them, of one partner, with distinct
 * ids and no checks. `ids` is a set to reuse; it is left empty.
 */
function checkGroup(
  commands: readonly Command[], start: number, count: number, ringSize: number, ids: Set<unknown>,
): void {
  const max = Math.min(GROUP_COMMANDS_MAX, ringSize);
  if (count < 1 || count > max) {
    throw new InvalidCommandError("commands", `an atomic group has 1-${max} commands, got ${count}`);
  }
  const partnerId = commands[start]?.partnerId;
  try {
    for (let i = start; i < start + count; i++) {
      const command = commands[i];
      if (typeof command !== "object" || command === null) {
        throw new InvalidCommandError(`commands[${i}]`, "must be an object");
      }
      if (command.partnerId !== partnerId) {
        throw new InvalidCommandError(`commands[${i}].partnerId`, "an atomic group must belong to one partner");
      }
      if (command.type === "check") {
        throw new InvalidCommandError(`commands[${i}].type`, "a check cannot be part of an atomic group");
      }
      if (ids.has(command.id)) throw new InvalidCommandError(`commands[${i}].id`, "repeated id in an atomic group");
      ids.add(command.id);
    }
  } finally {
    ids.clear();
  }
}
