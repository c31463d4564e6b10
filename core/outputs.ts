/**
 * Outputs: one event per processed command, derived from the journal, delivered to sinks (Kafka, NATS JetStream,
 * Postgres) at least once with a durable cursor per sink, in sequence order per shard.
 *
 * The journal is the outbox. The shard never builds events and never waits for a sink: a Relay tails the shard's
 * journal, re-applies the commands to its own follower Engine (restored from the shard's newest snapshot that is
 * not ahead of the slowest sink) and turns each command into an OutputEvent. Replaying the same journal always
 * gives the same events, so an event's id, `<shard>:<seq>`, is stable across relay restarts, shard restarts and
 * replays, and a consumer can dedupe by it. The follower is the same seam a hot standby will use.
 *
 * Pure ECMAScript over ports (JournalTail, SnapshotStore, OutputSink); waiting is injected (`sleep`).
 */
import { AssertionError, assert } from "./assert.ts";
import { ACCOUNT_STATUSES, Code, Type } from "./codes.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { decodeRecordInto, readCommand, readRecordHeader, type RecordHeader } from "./journal-codec.ts";
import { NO_ACCOUNT, type LedgerObserver } from "./ledger.ts";
import { OUTPUT_DELIVER_EVENTS_DEFAULT, SNAPSHOT_EVERY_COMMANDS_DEFAULT } from "./limits.ts";
import type { AsciiDecoder } from "./command-batch-reader.ts";
import { asciiString } from "./key-table.ts";
import { JournalCorruptError, type SnapshotStore, type StoredRecord } from "./ports.ts";
import { decodeSnapshot } from "./snapshot.ts";
import { SnapshotJob, SnapshotScratch, type YieldToEventLoop } from "./snapshot-job.ts";
import type { Account, Command, Result } from "./types.ts";

/**
 * One account's state right after a command (an Account without `seq`: the event's own), and how much the command
 * moved its balance and held amount.
 */
export interface AccountChange extends Omit<Account, "seq"> {
  /** Non-zero: a ledger entry (for a transfer, one per side: double entry). */
  balanceDelta: number;
  heldDelta: number;
}

/** What happened to one command: its result and the accounts it changed. */
export interface OutputEvent {
  /** `<shard>:<seq>`: unique, stable across replays. */
  eventId: string;
  shard: number;
  seq: number;
  /** The stamped time of the command's journal record. */
  timeMs: number;
  command: Command;
  result: Result;
  /**
   * The account the result's balance, held and available are of: the command's account (a transfer's source), or
   * for capture and release the hold's account (also for a duplicate, while the ledger remembers the hold). When
   * the command reached no account: the account it names (e.g. account_not_found), or "" for a capture or release
   * of an unknown hold. The natural partition key, with the partner.
   */
  accountId: string;
  /**
   * Every account the command changed, with its state after it. Empty for rejections, duplicates and checks, but
   * for holds (of any partner of the shard) that expired just before the command: they are reported on it.
   */
  accounts: AccountChange[];
}

/** Where events go. Each sink keeps its own durable cursor: the last sequence it has delivered, per shard. */
export interface OutputSink {
  /** Names the sink in status and logs ("postgres", "jetstream", "kafka"...). */
  readonly name: string;
  /** The last sequence of `shard` this sink has durably delivered (0 for none), read from the sink's own storage. */
  cursor(shard: number): Promise<number>;
  /**
   * Deliver `events`: consecutive sequences of `shard`, the first right after the cursor. Resolves once they are
   * delivered and the cursor moved past them durably; rejects when that is not certain. The relay then waits,
   * reads `cursor` again and resends from there, so a sink must tolerate a resend of events it already has
   * (exactly-once effect where it can, e.g. in the same transaction as the cursor; else dedupe by event id).
   * With `deliverTimeoutMs` the relay also gives up on a delivery that does not settle and delivers again from the
   * cursor, so a sink may see a delivery of a shard while an earlier one of it is still running: it must keep the
   * shard's order then (the Kafka sink runs them one after the other).
   */
  deliver(shard: number, events: readonly OutputEvent[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Asserts the relay's promise to a sink: `events` are of `shard`, consecutive, at least one. Sinks call it first
 * in `deliver`. (The message is built only on failure: this runs per event.)
 */
export function assertConsecutive(shard: number, events: readonly OutputEvent[]): void {
  assert(events.length > 0, "deliver needs at least one event");
  const first = events[0].seq;
  let count = 0;
  while (count < events.length && events[count].shard === shard && events[count].seq === first + count) count++;
  assert(count === events.length, `event ${events[count]?.eventId} is not ${shard}:${first + count} in a delivery of shard ${shard}`);
}

/** A journal being read as it grows: records in sequence order, each call returning what is there now. */
export interface JournalTail {
  /**
   * The next records (at least one), waiting until there are some; null once closed. The first call starts at
   * the record holding `afterSequence + 1`.
   */
  next(): Promise<StoredRecord[] | null>;
  /**
   * The journal's last sequence as far as the tail knows (for lag): at least the last one it handed out, and
   * possibly more (a file tail that is behind sees whole segments ahead of it before it reads them).
   */
  lastSequence(): number;
  close(): Promise<void>;
}

/**
 * Turns journal records into events: applies them to `engine` one unit (command or atomic group) at a time and
 * watches, as the engine's only ledger observer, every account change to attribute it to its command.
 */
export class EventDeriver implements LedgerObserver {
  /**
   * Change log of the record being applied, in application order: account, attributed sequence (minus the unit's
   * first sequence for a hold that expired before the unit), and the account's mutable columns before the change.
   */
  private logAccount: number[] = [];
  private logSequence: number[] = [];
  private logBalance: number[] = [];
  private logHeld: number[] = [];
  private logStatus: number[] = [];
  private logLimit: number[] = [];
  /** For each log entry, the next entry of the same account (-1: none; its state after is the current one). */
  private logNext: number[] = [];
  /** Scratch for logNext: per account, the entry seen last (valid when its stamp is the current pass's). */
  private seenEntry = new Int32Array(0);
  private seenStamp = new Uint32Array(0);
  private stamp = 0;
  /** Names by ledger index, decoded once: identifiers never change for an index. */
  private readonly accountNames: string[] = [];
  private readonly partnerNames: string[] = [];
  private readonly currencyNames: string[] = [];

  constructor(
    readonly engine: Engine,
    readonly shard: number,
    /** Makes the events' strings of the journal's bytes (core's TextDecoder by default). */
    private readonly ascii: AsciiDecoder = asciiString,
  ) {
    assert(engine.ledger.observer === undefined, "the engine already has a ledger observer");
    engine.ledger.observer = this;
  }

  beforeAccountChange(account: number): void {
    const ledger = this.engine.ledger;
    this.logAccount.push(account);
    this.logSequence.push(ledger.applying);
    this.logBalance.push(ledger.balance[account]);
    this.logHeld.push(ledger.held[account]);
    this.logStatus.push(ledger.status[account]);
    this.logLimit.push(ledger.overdraftLimit[account]);
  }

  beforeWindowEvict(): void {}

  /**
   * Apply the commands of `record` after the engine's last sequence, all in one batch (the ledger tells which
   * command made each change), and push one event per command onto `out`.
   */
  apply(record: StoredRecord, out: OutputEvent[]): void {
    const engine = this.engine;
    const header = readRecordHeader(record.bytes);
    const low = this.publish(record, header);
    if (low < 0) return;
    const high = header.firstSequence + header.commandCount - 1;
    const ring = engine.ring;
    this.logAccount.length = this.logSequence.length = this.logBalance.length = this.logHeld.length = 0;
    this.logStatus.length = this.logLimit.length = 0;
    engine.drain();
    this.linkLog();
    let entry = 0;
    let unitFirst = low;
    let failedGroup = false;
    for (let sequence = low; sequence <= high; sequence++) {
      const index = sequence & ring.mask;
      const size = ring.groupSize[index];
      if (size !== 0) {
        unitFirst = sequence;
        // A failed group was rolled back: its own changes vanish; holds that expired before it stay.
        // (In a failed group every command has a code other than ok: its own, or linked_failed.)
        failedGroup = size > 1 && ring.code[index] !== Code.ok;
      }
      const accounts: AccountChange[] = [];
      // The log is in sequence order: first the unit's expiries (-unitFirst), then each command's changes.
      for (; entry < this.logAccount.length; entry++) {
        const attributed = this.logSequence[entry];
        if (attributed === -unitFirst && sequence === unitFirst) this.addChange(accounts, entry);
        else if (attributed === sequence) {
          if (!failedGroup) this.addChange(accounts, entry);
        } else break;
      }
      const command = readCommand(ring, index, this.ascii);
      const result = engine.resultAt(index, command.id ?? "");
      if (result.code === "ok" && result.duplicate !== true && ring.type[index] === Type.openAccount) {
        this.addOpened(accounts, command);
      }
      const account = ring.account[index];
      const accountId = account !== NO_ACCOUNT ? this.accountName(account) : this.namedAccount(command);
      out.push({ eventId: `${this.shard}:${sequence}`, shard: this.shard, seq: sequence, timeMs: header.timeMs, command, result, accountId, accounts });
    }
    assert(entry === this.logAccount.length, "an account change the events do not account for");
  }

  /**
   * Apply `record` without events, for a record every sink already has (a relay catching up to its sinks'
   * cursors after a restart): the engine alone, with no change log, at replay speed.
   */
  replay(record: StoredRecord): void {
    if (this.publish(record, readRecordHeader(record.bytes)) < 0) return;
    const ledger = this.engine.ledger;
    ledger.observer = undefined;
    try {
      this.engine.drain();
    } finally {
      ledger.observer = this;
    }
  }

  /**
   * Put the commands of `record` after the engine's last sequence on the ring, published, not yet drained. Returns
   * the first one's sequence, or -1 when the engine already has the whole record.
   */
  private publish(record: StoredRecord, header: RecordHeader): number {
    const engine = this.engine;
    const skip = engine.lastSequence + 1 - header.firstSequence;
    if (skip >= header.commandCount) return -1;
    if (skip < 0) {
      throw new JournalCorruptError("journal", header.firstSequence,
        `records resume at sequence ${header.firstSequence} but the outputs are at ${engine.lastSequence}`);
    }
    const count = header.commandCount - skip;
    const high = engine.sequencer.tryNext(count);
    assert(high >= 0, "a journal record larger than the relay's ring (ringSlots must match the shard's)");
    const low = high - count + 1;
    decodeRecordInto(record.bytes, header, engine.ring, low, skip);
    assert(engine.ring.groupSize[low & engine.ring.mask] >= 1, "a record resumes inside an atomic group");
    engine.sequencer.publish(high);
    return low;
  }

  /** Fill logNext with one backward pass. */
  private linkLog(): void {
    const count = this.logAccount.length;
    const accounts = this.engine.ledger.accountCount;
    if (this.seenEntry.length < accounts) {
      this.seenEntry = new Int32Array(Math.max(accounts, 2 * this.seenEntry.length));
      this.seenStamp = new Uint32Array(this.seenEntry.length);
      this.stamp = 0;
    }
    const stamp = ++this.stamp;
    this.logNext.length = count;
    for (let i = count - 1; i >= 0; i--) {
      const account = this.logAccount[i];
      this.logNext[i] = this.seenStamp[account] === stamp ? this.seenEntry[account] : -1;
      this.seenStamp[account] = stamp;
      this.seenEntry[account] = i;
    }
  }

  /**
   * The account of a command answered without reaching an account (a duplicate from the window, a rejection): the
   * one it names (a transfer's source), or for capture and release the hold's account while the ledger remembers
   * the hold, else "".
   */
  private namedAccount(command: Command): string {
    if (command.type === "transfer") return command.fromAccountId;
    if (command.type === "capture" || command.type === "release") {
      const account = this.engine.ledger.holdAccountOf(command.partnerId, command.holdId);
      return account < 0 ? "" : this.accountName(account);
    }
    return command.accountId;
  }

  private accountName(account: number): string {
    return (this.accountNames[account] ??= this.engine.ledger.accounts.keyString(account));
  }

  /** The change logged at `i`, merged into `accounts`: its state after is the next logged state or the current. */
  private addChange(accounts: AccountChange[], i: number): void {
    const ledger = this.engine.ledger;
    const account = this.logAccount[i];
    const next = this.logNext[i];
    const balance = next < 0 ? ledger.balance[account] : this.logBalance[next];
    const held = next < 0 ? ledger.held[account] : this.logHeld[next];
    const overdraftLimit = next < 0 ? ledger.overdraftLimit[account] : this.logLimit[next];
    const status = ACCOUNT_STATUSES[next < 0 ? ledger.status[account] : this.logStatus[next]];
    const balanceDelta = balance - this.logBalance[i];
    const heldDelta = held - this.logHeld[i];
    const owner = ledger.accounts.owner[account];
    const partnerId = (this.partnerNames[owner] ??= ledger.partners.keyString(owner));
    const accountId = this.accountName(account);
    for (const existing of accounts) {
      if (existing.accountId !== accountId || existing.partnerId !== partnerId) continue;
      existing.balance = balance;
      existing.held = held;
      existing.overdraftLimit = overdraftLimit;
      existing.status = status;
      existing.available = balance - held + overdraftLimit;
      existing.balanceDelta += balanceDelta;
      existing.heldDelta += heldDelta;
      return;
    }
    const currency = ledger.currency[account];
    accounts.push({
      partnerId,
      accountId,
      currency: (this.currencyNames[currency] ??= ledger.currencies.keyString(currency)),
      balance,
      held,
      available: balance - held + overdraftLimit,
      overdraftLimit,
      status,
      balanceDelta,
      heldDelta,
    });
  }

  /**
   * A new account is not a change of an existing row, so the observer never sees it: report its opening state,
   * which the command alone gives (later commands of the same record may have moved it since).
   */
  private addOpened(accounts: AccountChange[], command: Command): void {
    if (command.type !== "openAccount") return;
    const overdraftLimit = command.overdraftLimit ?? 0;
    accounts.push({
      partnerId: command.partnerId,
      accountId: command.accountId,
      currency: command.currency,
      balance: 0,
      held: 0,
      available: overdraftLimit,
      overdraftLimit,
      status: "active",
      balanceDelta: 0,
      heldDelta: 0,
    });
  }
}

/** Options of a Relay: the shard's engine options (they must match the shard's, as a replay's must). */
export interface RelayOptions extends EngineOptions {
  shard: number;
  sinks: readonly OutputSink[];
  /** The shard's snapshots, read only: where a new follower starts. */
  snapshots: SnapshotStore;
  /**
   * The relay's own snapshots of its follower, taken when every sink has caught up with it, so a restart does
   * not depend on the shard still keeping an old enough snapshot. Optional: without, only the shard's are used.
   */
  ownSnapshots?: SnapshotStore;
  /**
   * Makes the events' strings of the journal's bytes: default core's (a Web TextDecoder); a runtime's faster one
   * (transports/ascii.ts `runtimeAscii`: Buffer's latin1Slice on Bun and Node) took deriving an event from 2.0-2.5
   * to 1.3-1.9 us in a probe (TextDecoder over a subarray was ~20% of the relay's samples).
   */
  ascii?: AsciiDecoder;
  /** Take an own snapshot after this many events since the last. Default SNAPSHOT_EVERY_COMMANDS_DEFAULT (10M). */
  snapshotEveryEvents?: number;
  /**
   * Tells the shard's side the oldest sequence the relay may still need from the journal (the sequence of the
   * snapshot it would restart from); the shard must not compact the journal past it. Called at start, at each
   * rewind and after each own snapshot.
   */
  saveJournalFloor?: (sequence: number) => Promise<void>;
  /**
   * Lets the event loop run between the chunks of an own snapshot, and between journal records while the next
   * events are derived, so a sink's acknowledgements are handled meanwhile (a JetStream sink publishes its next
   * envelope when the previous one's ack arrives). Default: no yield.
   */
  yieldToEventLoop?: YieldToEventLoop;
  /**
   * Called between journal records while the relay derives (after `yieldToEventLoop`); the relay goes on when it
   * returns or its promise resolves. Where the relay shares CPUs with the shard, a CPU budget goes here
   * (examples/gateway/cpu-budget.ts): it holds the relay to a share of a CPU while the journals grow fast, so under
   * a peak the outputs lag instead of slowing the ledger. Default: none.
   */
  pace?: () => Promise<void> | undefined;
  /** Opens the shard's journal for tailing after `afterSequence`. */
  openTail(afterSequence: number): Promise<JournalTail>;
  /** Waits `ms` (the core has no timers). */
  sleep(ms: number): Promise<void>;
  /** Wait after a failed delivery before asking the sink for its cursor again. Default 1000 ms. */
  retryMs?: number;
  /** Most events per `deliver` call. Default OUTPUT_DELIVER_EVENTS_DEFAULT (50,000). */
  deliverEventsMax?: number;
  /**
   * A delivery not settled after this long counts as failed and is retried from the sink's cursor (a driver can
   * leave a query on a connection that died unsettled for good). Default: no limit. Each delivery then holds a
   * `sleep(deliverTimeoutMs)` until it ends, so give a sleep whose timer does not keep the process alive.
   */
  deliverTimeoutMs?: number;
  log?: (line: string) => void;
}

/** One sink's progress, for /metrics and GET /v1/outputs. */
export interface SinkStatus {
  name: string;
  shard: number;
  /** The last sequence delivered. */
  cursor: number;
  /** The journal's last sequence minus the cursor. */
  lagEvents: number;
  delivered: number;
  failures: number;
  lastError: string | null;
}

/**
 * Tails one shard's journal and feeds every sink, each from its own cursor. Sinks of one relay move on together
 * (a batch is released when every sink has it); give a sink its own relay to keep an outage of one from holding
 * back the others.
 */
export class Relay {
  private readonly cursors: number[];
  private readonly statuses: SinkStatus[];
  private stopping = false;
  /** stop() was called: what ends the relay then is not a failure. */
  private stopRequested = false;
  private readonly done: Promise<Error | null>;
  private snapshotSequence: number;
  /**
   * The journal's last sequence as far as the relay has known it, across tails: a rewind's new tail starts knowing
   * only where it starts, and lag must not drop to 0 while it reads back up to where the journal was.
   */
  private journalLastSequence = 0;
  /** Memory reused by the follower's own snapshots (taken one at a time). */
  private readonly snapshotScratch = new SnapshotScratch();

  private constructor(
    private readonly options: RelayOptions,
    private deriver: EventDeriver,
    private tail: JournalTail,
    cursors: number[],
  ) {
    this.cursors = cursors;
    this.snapshotSequence = deriver.engine.lastSequence;
    this.statuses = options.sinks.map((sink, i) => ({
      name: sink.name, shard: options.shard, cursor: cursors[i], lagEvents: 0, delivered: 0, failures: 0, lastError: null,
    }));
    this.done = this.run();
  }

  /**
   * Reads every sink's cursor, restores the follower from the newest shard snapshot at or before the slowest
   * cursor (or from empty), and starts tailing. Throws when the journal no longer reaches back that far.
   */
  static async start(options: RelayOptions): Promise<Relay> {
    assert(options.sinks.length > 0, "a relay needs at least one sink");
    const cursors = await Promise.all(options.sinks.map((sink) => sink.cursor(options.shard)));
    const from = Math.min(...cursors);
    const engine = await restoreAtOrBefore(options, from);
    await options.saveJournalFloor?.(engine.lastSequence);
    const tail = await options.openTail(engine.lastSequence);
    options.log?.(`relay shard ${options.shard}: follower at ${engine.lastSequence}, sinks at ${cursors.join(", ")}`);
    return new Relay(options, new EventDeriver(engine, options.shard, options.ascii), tail, cursors);
  }

  /** Every sink's progress (copies). */
  status(): SinkStatus[] {
    const last = this.knownJournalLastSequence();
    return this.statuses.map((status, i) => ({ ...status, cursor: this.cursors[i], lagEvents: Math.max(0, last - this.cursors[i]) }));
  }

  /** The journal's last sequence as far as any tail or the follower has shown it so far (it never shrinks). */
  private knownJournalLastSequence(): number {
    this.journalLastSequence = Math.max(this.journalLastSequence, this.tail.lastSequence(), this.deriver.engine.lastSequence);
    return this.journalLastSequence;
  }

  /** The follower's last applied sequence. */
  get appliedSequence(): number {
    return this.deriver.engine.lastSequence;
  }

  /** Resolves when every sink has delivered up to `sequence` (tests, graceful shutdown). */
  async caughtUp(sequence: number, pollMs = 5): Promise<void> {
    while (Math.min(...this.cursors) < sequence) {
      if (this.stopping) throw new Error("relay stopped");
      await this.options.sleep(pollMs);
    }
  }

  /**
   * Resolves once the relay no longer delivers: with the error that stopped it for good (a journal that no longer
   * reaches back to a sink's cursor, a record the journal cut back, a rewind that found no snapshot and no journal
   * to restart from), or null when stop() ended it. It never rejects. A relay that stopped for good only reports
   * lag from then on, so a process that runs relays should end on it, for its supervisor to see and restart; the
   * sinks stay open until stop().
   */
  get ended(): Promise<Error | null> {
    return this.done;
  }

  /** Stop after the delivery in progress; closes the tail and the sinks. */
  async stop(): Promise<void> {
    this.stopRequested = true;
    this.stopping = true;
    await this.tail.close();
    await this.done;
    await Promise.all(this.options.sinks.map((sink) => sink.close()));
  }

  /**
   * Tail, derive, deliver, pipelined: the next records are read and derived while the sinks take the previous
   * batch (the sinks wait on other processes, the follower on this CPU). An own snapshot waits for the sinks to
   * catch up with the follower first.
   */
  private async run(): Promise<Error | null> {
    for (;;) {
      try {
        await this.pump();
        return null;
      } catch (error) {
        if (error instanceof SinkBehindError && !this.stopping) {
          try {
            await this.rewind(error.message);
            // stop() closed the old tail while the rewind opened a new one: close that one too, and end.
            if (this.stopping) {
              await this.tail.close();
              return null;
            }
            continue;
          } catch (rewindError) {
            error = rewindError;
          }
        }
        this.options.log?.(`relay shard ${this.options.shard} stopped: ${(error as Error).message}`);
        this.stopping = true;
        if (this.stopRequested) return null;
        return error instanceof Error ? error : new Error(String(error));
      }
    }
  }

  private async pump(): Promise<void> {
    let delivering: Promise<unknown> = Promise.resolve();
    try {
      for (;;) {
        // A delivery that fails for good (a sink behind the follower) is noticed at once, not at the next records.
        const next = this.tail.next();
        await Promise.race([next, delivering]);
        const records = await next;
        if (records === null || this.stopping) break;
        if (this.snapshotDue()) {
          await delivering;
          if (this.stopping) break;
          await this.takeOwnSnapshot();
        }
        const events: OutputEvent[] = [];
        // Records every sink already has (a restart resumes at the follower's snapshot) need no events.
        const delivered = Math.min(...this.cursors);
        for (let i = 0; i < records.length; i++) {
          if (i > 0) await this.options.yieldToEventLoop?.();
          await this.options.pace?.();
          if (records[i].firstSequence + records[i].commandCount - 1 <= delivered) this.deriver.replay(records[i]);
          else this.deriver.apply(records[i], events);
        }
        await delivering;
        if (this.stopping) break;
        delivering = this.deliverAll(events);
        // Awaited on the next turn of this loop; until then its failure must not count as unhandled.
        delivering.catch(() => undefined);
      }
    } finally {
      // Let every delivery in flight end (its sink's cursor is what counts), whatever stopped the loop.
      await delivering.catch(() => undefined);
    }
    await delivering;
  }

  /** `delivery`, or a rejection after `timeoutMs` (the delivery itself is left to settle or not). */
  private async settleWithin(delivery: Promise<void>, timeoutMs: number, name: string): Promise<void> {
    let settled = false;
    const timeout = this.options.sleep(timeoutMs).then(() => {
      if (!settled) throw new Error(`${name} delivery did not settle within ${timeoutMs} ms`);
    });
    try {
      await Promise.race([delivery, timeout]);
    } finally {
      settled = true;
      delivery.catch(() => undefined);
    }
  }

  /**
   * Every sink's delivery of `events`, settled: one failing for good (a sink behind the follower) rejects only
   * once the others have ended too, so a rewind never runs beside a delivery still in progress.
   */
  private async deliverAll(events: readonly OutputEvent[]): Promise<void> {
    const settled = await Promise.allSettled(this.options.sinks.map((sink, i) => this.deliverTo(sink, i, events)));
    for (const outcome of settled) if (outcome.status === "rejected") throw outcome.reason;
  }

  /**
   * A sink is behind the events the follower has (it lost acknowledged writes: a broker or database crash that
   * dropped its last commits): start again from the newest snapshot at or before the slowest cursor, as at start.
   */
  private async rewind(reason: string): Promise<void> {
    this.knownJournalLastSequence();
    await this.tail.close();
    const from = Math.min(...this.cursors);
    const engine = await restoreAtOrBefore(this.options, from);
    this.deriver = new EventDeriver(engine, this.options.shard, this.options.ascii);
    this.snapshotSequence = engine.lastSequence;
    // As at start: the journal after this snapshot is what the catch-up reads, so the shard must not compact it
    // (own snapshots may have moved the floor past it).
    await this.options.saveJournalFloor?.(engine.lastSequence);
    this.tail = await this.options.openTail(engine.lastSequence);
    this.options.log?.(`relay shard ${this.options.shard}: ${reason}; follower back at ${engine.lastSequence} for sinks at ${this.cursors.join(", ")}`);
  }

  private snapshotDue(): boolean {
    if (this.options.ownSnapshots === undefined) return false;
    return this.deriver.engine.lastSequence - this.snapshotSequence >= (this.options.snapshotEveryEvents ?? SNAPSHOT_EVERY_COMMANDS_DEFAULT);
  }

  /** Every sink has every event applied so far: snapshot the follower into the own store, move the floor. */
  private async takeOwnSnapshot(): Promise<void> {
    const store = this.options.ownSnapshots!;
    const engine = this.deriver.engine;
    const ledger = engine.ledger;
    // Nothing is applied while the job runs (this loop is waiting for it), so the deriver can step aside.
    ledger.observer = undefined;
    try {
      const bytes = await new SnapshotJob(ledger, this.snapshotScratch).run(this.options.yieldToEventLoop ?? (() => Promise.resolve()));
      await store.save(engine.lastSequence, bytes);
      this.snapshotSequence = engine.lastSequence;
      await this.options.saveJournalFloor?.(Math.min(...(await store.list())));
    } catch (error) {
      this.options.log?.(`relay shard ${this.options.shard}: own snapshot failed: ${(error as Error).message}`);
    } finally {
      ledger.observer = this.deriver;
    }
  }

  /** Deliver what sink `i` has not got of `events`, in chunks, retrying (after `retryMs`) until it succeeds or the relay stops. */
  private async deliverTo(sink: OutputSink, i: number, events: readonly OutputEvent[]): Promise<void> {
    const max = this.options.deliverEventsMax ?? OUTPUT_DELIVER_EVENTS_DEFAULT;
    const status = this.statuses[i];
    const shard = this.options.shard;
    while (!this.stopping && events.length > 0) {
      // Events are consecutive sequences, so the sink's next one is found by subtraction.
      const start = Math.max(0, this.cursors[i] + 1 - events[0].seq);
      if (start >= events.length) return;
      if (events[start].seq !== this.cursors[i] + 1) {
        throw new SinkBehindError(`sink ${sink.name} is at ${this.cursors[i]} but the next event is ${events[start].seq}`);
      }
      const chunk = events.slice(start, start + max);
      try {
        const delivery = sink.deliver(shard, chunk);
        const timeoutMs = this.options.deliverTimeoutMs;
        await (timeoutMs === undefined ? delivery : this.settleWithin(delivery, timeoutMs, sink.name));
        this.cursors[i] = chunk[chunk.length - 1].seq;
        status.delivered += chunk.length;
      } catch (error) {
        status.failures++;
        status.lastError = (error as Error).message;
        // A broken invariant (a bug, or a setting the sink cannot honour) fails the same way on every retry: the
        // relay stops for good (Relay.ended) instead of retrying forever with only lag to show for it.
        if (error instanceof AssertionError) throw error;
        this.options.log?.(`relay shard ${shard}: ${sink.name} delivery failed, retrying: ${status.lastError}`);
        await this.options.sleep(this.options.retryMs ?? 1000);
        try {
          this.cursors[i] = await sink.cursor(shard);
        } catch (cursorError) {
          status.lastError = (cursorError as Error).message;
        }
      }
    }
  }
}

/** A sink's cursor is behind the events the relay holds: the relay rewinds its follower. */
class SinkBehindError extends Error {
  override name = "SinkBehindError";
}

/**
 * A follower engine at the newest snapshot not after `sequence`, own or the shard's (falling back past damaged or
 * vanished ones: the shard prunes its snapshots while we read), else empty.
 */
async function restoreAtOrBefore(options: RelayOptions, sequence: number): Promise<Engine> {
  const candidates: { store: SnapshotStore; sequence: number }[] = [];
  for (const store of [options.ownSnapshots, options.snapshots]) {
    if (store === undefined) continue;
    for (const snapshotSequence of await store.list()) {
      if (snapshotSequence <= sequence) candidates.push({ store, sequence: snapshotSequence });
    }
  }
  candidates.sort((a, b) => b.sequence - a.sequence);
  for (const candidate of candidates) {
    let engine: Engine;
    let bytes: Uint8Array;
    try {
      bytes = await candidate.store.load(candidate.sequence);
      engine = new Engine(options, decodeSnapshot(bytes, options));
    } catch (error) {
      options.log?.(`relay: snapshot ${candidate.sequence} is unusable, trying an older one: ${(error as Error).message}`);
      continue;
    }
    // The relay's journal floor moves to this sequence; the shard prunes its own snapshots without asking, so keep
    // a copy of one taken from the shard, or a later start would find neither a snapshot nor the journal before it.
    if (candidate.store !== options.ownSnapshots && options.ownSnapshots !== undefined) {
      try {
        await options.ownSnapshots.save(candidate.sequence, bytes);
      } catch (error) {
        options.log?.(`relay: keeping a copy of shard snapshot ${candidate.sequence} failed: ${(error as Error).message}`);
      }
    }
    return engine;
  }
  return new Engine(options);
}
