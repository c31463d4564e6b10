/**
 * PostgresSink: keeps a Postgres projection of one or more shards' output events (schema.ts), whichever driver
 * opened the database (index.ts: postgres.js or PGlite).
 *
 * Exactly-once effect. A deliver is one transaction: it locks the sink's cursor row for the shard, skips the events
 * at or before the cursor, writes the rest and moves the cursor. A resend after a lost acknowledgement finds the
 * cursor already past it and writes nothing; a deliver that fails anywhere rolls back whole, cursor included; two
 * relays delivering the same shard at once take turns on the lock, and the second writes only what the first did
 * not. So every row a deliver writes is new by construction, and the writes need no conflict handling.
 *
 * Throughput. Each table gets one `COPY ... FROM STDIN (FORMAT binary)` per deliver (rows.ts), so a 5,000-event
 * batch is six round trips (begin, cursor, results, account batches, cursor, commit), Postgres parses nothing, and
 * the cost is Postgres storing rows and index keys (schema.ts says how the tables keep their number low).
 *
 * Durability. The commit waits for the WAL flush (synchronous_commit stays on). `SET LOCAL synchronous_commit =
 * off` was measured to save ~2.5-3 ms per deliver (commit 3.5 ms -> 0.6-1 ms, ~4% at 10,000 accounts, ~10% at 128)
 * and left out, because the projection would stay consistent but the relay would not recover by itself. An
 * unflushed commit lost in a crash takes its rows and its cursor with it (never half a deliver, never a duplicate),
 * but deliver() had already resolved, which OutputSink promises only once the cursor moved durably. The Relay then
 * holds a cursor ahead of the sink's: its next deliver meets a ProjectionGapError, re-reads the cursor, finds it
 * behind the events it holds and stops ("sink ... is at ..."), and only a restart resends. Worse, it may already
 * have taken an own snapshot on the lost cursor and moved the journal floor past it, and a shard that compacted to
 * that floor no longer has the lost events to resend.
 */
import { and, desc, eq, getTableName, sql } from "drizzle-orm";
import type { PgColumn, PgDatabase, PgQueryResultHKT, PgTable } from "drizzle-orm/pg-core";
import { DrizzleQueryError } from "drizzle-orm/errors";
import { AssertionError, assert } from "../../core/assert.ts";
import type { AccountStatus, CommandType } from "../../core/codes.ts";
import { assertConsecutive, type OutputEvent, type OutputSink } from "../../core/outputs.ts";
import type { Account } from "../../core/types.ts";
import type { DeliverDriver, DeliverTransaction } from "./drivers.ts";
import { ACCOUNT_BATCH_COLUMNS, accountBatchesPayload, RESULT_COLUMNS, resultsPayload } from "./rows.ts";
import { accountBatches, cursors, results } from "./schema.ts";

/**
 * Most events in one deliver. The COPY payloads hold ~100-150 bytes per event, so a deliver at the limit builds
 * ~10 MB of them (plus ~200 bytes per event of per-account arrays while grouping) and is one transaction of that
 * size in Postgres. A relay that lags sends 50,000 a call by default (core/limits.ts OUTPUT_DELIVER_EVENTS_DEFAULT).
 */
export const DELIVER_EVENTS_MAX = 65_536;

/** Most entries on one page of `entries()`: ~200 bytes each, so a page is at most ~200 KB of JSON. */
export const ENTRIES_PAGE_LIMIT_MAX = 1000;

/** Any Drizzle Postgres database or transaction; the sink uses only what postgres.js and PGlite both offer. */
export type SinkDatabase = PgDatabase<PgQueryResultHKT>;

/** One ledger entry: a change of one account's balance by one event. */
export interface LedgerEntry {
  partnerId: string;
  accountId: string;
  shard: number;
  seq: number;
  eventId: string;
  /** Null only for commands without an id (checks, which never move money). */
  commandId: string | null;
  type: CommandType;
  /** Signed: negative for money out. */
  amount: number;
  balanceAfter: number;
  timeMs: number;
}

/** A page of an account's entries, in sequence order. */
export interface EntriesPage {
  entries: LedgerEntry[];
  /** Pass as `after` for the next page; null when this page is the last. */
  next: number | null;
}

/** Where a page of `entries()` starts and how long it is. */
export interface EntriesPageOptions {
  /** The last sequence already seen (0 or absent: from the start). */
  after?: number;
  /** 1..ENTRIES_PAGE_LIMIT_MAX. */
  limit: number;
}

/** An account as projected: the engine's Account plus where it lives and when it last changed. */
export interface ProjectedAccount extends Account {
  shard: number;
  updatedMs: number;
}

/** An account whose entries do not add up to its projected balance. */
export interface ProjectionMismatch {
  partnerId: string;
  accountId: string;
  balance: number;
  entriesTotal: number;
}

/** The database failed or could not be reached: nothing of the failed call was written. */
export class PostgresSinkError extends Error {
  override name = "PostgresSinkError";

  constructor(message: string, options: { cause: unknown }) {
    super(`${message}: ${rootMessage(options.cause)}`, options);
  }
}

/**
 * The events do not start right after the stored cursor: something other than this relay moved the cursor (or the
 * relay lost track). Writing them would leave a hole in the projection, so nothing is written.
 */
export class ProjectionGapError extends Error {
  override name = "ProjectionGapError";

  constructor(
    readonly shard: number,
    readonly cursor: number,
    readonly firstSeq: number,
  ) {
    super(`shard ${shard}: the projection is at sequence ${cursor} but the events start at ${firstSeq}`);
  }
}

/**
 * The message of the error that started it all. Drizzle wraps driver errors in a DrizzleQueryError whose message
 * holds every parameter, megabytes for a deliver, so the driver's own message is what a log should show.
 */
function rootMessage(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 8 && current instanceof DrizzleQueryError && current.cause !== undefined; depth++) {
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

/** `"name"`: names in schema.ts are plain lower-case words, so quoting is all they need. */
const quoted = (name: string): string => `"${name}"`;

/** `"table" ("a", "b", ...)`: a COPY's target. */
function copyTarget(table: PgTable, columns: readonly PgColumn[]): string {
  return `${quoted(getTableName(table))} (${columns.map((column) => quoted(column.name)).join(", ")})`;
}

const RESULTS_COPY_TARGET = copyTarget(results, RESULT_COLUMNS);
const ACCOUNT_BATCHES_COPY_TARGET = copyTarget(accountBatches, ACCOUNT_BATCH_COLUMNS);

const CURSORS_TABLE = quoted(getTableName(cursors));
const [CURSOR_SINK, CURSOR_SHARD, CURSOR_SEQ] = [cursors.sink, cursors.shard, cursors.seq].map((column) => quoted(column.name));

/**
 * The stored cursor, its row locked until the transaction ends. An upsert rather than SELECT ... FOR UPDATE so that
 * the first deliver of a shard, when there is no row to lock yet, is serialised too. $1 sink, $2 shard.
 */
const LOCK_CURSOR = `insert into ${CURSORS_TABLE} (${CURSOR_SINK}, ${CURSOR_SHARD}, ${CURSOR_SEQ}) values ($1, $2, 0)
  on conflict (${CURSOR_SINK}, ${CURSOR_SHARD}) do update set ${CURSOR_SEQ} = ${CURSORS_TABLE}.${CURSOR_SEQ}
  returning ${CURSOR_SEQ}`;
/** $1 the new cursor, $2 sink, $3 shard. */
const MOVE_CURSOR = `update ${CURSORS_TABLE} set ${CURSOR_SEQ} = $1 where ${CURSOR_SINK} = $2 and ${CURSOR_SHARD} = $3`;

/** The Postgres projection as an OutputSink, plus the reads the HTTP transport serves from it. */
export class PostgresSink implements OutputSink {
  private closed = false;

  /**
   * Use openPostgresSink or openPgliteSink (index.ts): they migrate the database first. `db` is public for queries
   * of the projection beyond the ones below (schema.ts names the tables); writing to it breaks the projection.
   * `driver` runs the delivers, on the same database.
   */
  constructor(
    readonly db: SinkDatabase,
    private readonly driver: DeliverDriver,
    private readonly closeClient: () => Promise<void>,
    readonly name = "postgres",
  ) {}

  async cursor(shard: number): Promise<number> {
    assert(Number.isInteger(shard) && shard >= 0, "shard must be a non-negative integer");
    try {
      const rows = await this.db
        .select({ seq: cursors.seq })
        .from(cursors)
        .where(and(eq(cursors.sink, this.name), eq(cursors.shard, shard)));
      return rows.length === 0 ? 0 : rows[0].seq;
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: reading the cursor of shard ${shard} failed`, { cause: error });
    }
  }

  async deliver(shard: number, events: readonly OutputEvent[]): Promise<void> {
    assert(Number.isInteger(shard) && shard >= 0, "shard must be a non-negative integer");
    assert(events.length <= DELIVER_EVENTS_MAX, `at most ${DELIVER_EVENTS_MAX} events per deliver`);
    if (events.length === 0) return;
    assertConsecutive(shard, events);
    try {
      await this.driver.transaction((transaction) => this.deliverTransaction(transaction, shard, events));
    } catch (error) {
      // A gap is already its own typed error; a failed assertion is a bug and is never dressed up as an outage.
      if (error instanceof ProjectionGapError || error instanceof AssertionError) throw error;
      const range = `${events[0].seq}..${events[events.length - 1].seq}`;
      throw new PostgresSinkError(`${this.name}: delivering shard ${shard} events ${range} failed`, { cause: error });
    }
  }

  private async deliverTransaction(transaction: DeliverTransaction, shard: number, events: readonly OutputEvent[]): Promise<void> {
    const rows = await transaction.query(LOCK_CURSOR, [this.name, shard]);
    assert(rows.length === 1, "the cursor upsert returns its row");
    const cursor = safeInteger(rows[0].seq);
    const start = cursor + 1 - events[0].seq;
    if (start >= events.length) return; // a resend of events already here
    if (start < 0) throw new ProjectionGapError(shard, cursor, events[0].seq);
    const fresh = start === 0 ? events : events.slice(start);
    // One statement after another, never two queued at once: a connection lost with writes still queued has been
    // seen to leave postgres.js's promises unsettled. The account batches are built while Postgres stores the
    // results (two CPUs at work instead of one after the other).
    // Built before the COPY starts: a payload that throws (an event the writer refuses) must not leave the
    // connection inside a COPY, where the rollback cannot reach it and the cursor row would stay locked.
    const resultsBytes = resultsPayload(shard, fresh);
    const resultsCopy = await transaction.copy(RESULTS_COPY_TARGET);
    const resultsStored = resultsCopy.end(resultsBytes);
    let accountBatchesPayloadBytes: Uint8Array<ArrayBuffer>;
    try {
      accountBatchesPayloadBytes = accountBatchesPayload(shard, fresh);
    } finally {
      await resultsStored;
    }
    const accountBatchesCopy = await transaction.copy(ACCOUNT_BATCHES_COPY_TARGET);
    await accountBatchesCopy.end(accountBatchesPayloadBytes);
    await transaction.query(MOVE_CURSOR, [fresh[fresh.length - 1].seq, this.name, shard]);
  }

  /** A page of the account's entries after sequence `after`, oldest first. Throws RangeError on a bad page. */
  async entries(partnerId: string, accountId: string, options: EntriesPageOptions): Promise<EntriesPage> {
    const after = options.after ?? 0;
    const limit = options.limit;
    if (!Number.isSafeInteger(after) || after < 0) {
      throw new RangeError(`after must be a non-negative integer, got ${after}`);
    }
    if (!Number.isInteger(limit) || limit < 1 || limit > ENTRIES_PAGE_LIMIT_MAX) {
      throw new RangeError(`limit must be an integer from 1 to ${ENTRIES_PAGE_LIMIT_MAX}, got ${limit}`);
    }
    const b = accountBatches;
    const r = results;
    let rows: Record<string, unknown>[];
    try {
      // The account's rows after `after` in key order, each row's entries in array order (together: sequence
      // order, so the page needs no sort beyond each row's few entries), each joined to its event's results row.
      // One entry more than asked tells whether another page follows, so the last page says so (next: null).
      // The time as exact milliseconds (extract gives numeric): both drivers read a timestamptz as text here.
      rows = rowsOf(await this.db.execute(sql`
        select ${b.shard} as shard, entry.seq, entry.amount, entry.balance_after, ${r.commandId} as command_id,
          ${r.type} as type, (extract(epoch from ${r.time}) * 1000)::bigint as time_ms
        from ${b}
        cross join lateral unnest(${b.entrySeqs}, ${b.entryAmounts}, ${b.entryBalances})
          with ordinality as entry(seq, amount, balance_after, position)
        join ${r} on ${r.shard} = ${b.shard} and ${r.seq} = entry.seq
        where ${b.partnerId} = ${partnerId} and ${b.accountId} = ${accountId} and ${b.seq} > ${after} and entry.seq > ${after}
        order by ${b.seq}, entry.position
        limit ${limit + 1}`));
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: reading entries of ${partnerId}/${accountId} failed`, { cause: error });
    }
    const page: LedgerEntry[] = [];
    for (let i = 0; i < rows.length && i < limit; i++) {
      const row = rows[i];
      const shard = safeInteger(row.shard);
      const seq = safeInteger(row.seq);
      page.push({
        partnerId, accountId, shard, seq, eventId: `${shard}:${seq}`,
        commandId: row.command_id === null ? null : String(row.command_id),
        type: String(row.type) as CommandType,
        amount: safeInteger(row.amount),
        balanceAfter: safeInteger(row.balance_after),
        timeMs: safeInteger(row.time_ms),
      });
    }
    return { entries: page, next: rows.length > limit ? page[page.length - 1].seq : null };
  }

  /** The account as projected, or undefined when no event has touched it yet. */
  async account(partnerId: string, accountId: string): Promise<ProjectedAccount | undefined> {
    const b = accountBatches;
    let rows: { partnerId: string; accountId: string; shard: number; seq: number; currency: string; balance: number; held: number; overdraftLimit: number; status: string; time: Date }[];
    try {
      // Its newest row (a backward scan of the primary key), and the time of that row's event.
      rows = await this.db
        .select({
          partnerId: b.partnerId, accountId: b.accountId, shard: b.shard, seq: b.seq, currency: b.currency, balance: b.balance,
          held: b.held, overdraftLimit: b.overdraftLimit, status: b.status, time: results.time,
        })
        .from(b)
        .innerJoin(results, and(eq(results.shard, b.shard), eq(results.seq, b.seq)))
        .where(and(eq(b.partnerId, partnerId), eq(b.accountId, accountId)))
        .orderBy(desc(b.seq))
        .limit(1);
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: reading account ${partnerId}/${accountId} failed`, { cause: error });
    }
    if (rows.length === 0) return undefined;
    const { time, status, ...row } = rows[0];
    return {
      ...row,
      status: status as AccountStatus,
      available: row.balance - row.held + row.overdraftLimit,
      updatedMs: time.getTime(),
    };
  }

  /**
   * Accounts whose entries do not add up to their balance, checked in SQL over the whole projection (for tests and
   * fault drills; it reads every row). Empty when the projection is consistent.
   */
  async verifyProjection(): Promise<ProjectionMismatch[]> {
    const b = accountBatches;
    let rows: Record<string, unknown>[];
    try {
      rows = rowsOf(await this.db.execute(sql`
        select partner_id, account_id, balance, entries_total from (
          select ${b.partnerId} as partner_id, ${b.accountId} as account_id,
            (array_agg(${b.balance} order by ${b.seq} desc))[1] as balance,
            sum((select coalesce(sum(amount), 0) from unnest(${b.entryAmounts}) as amount)) as entries_total
          from ${b}
          group by ${b.partnerId}, ${b.accountId}
        ) as totals
        where balance <> entries_total
        order by partner_id, account_id`));
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: verifying the projection failed`, { cause: error });
    }
    return rows.map((row) => ({
      partnerId: String(row.partner_id),
      accountId: String(row.account_id),
      balance: safeInteger(row.balance),
      entriesTotal: safeInteger(row.entries_total),
    }));
  }

  /** Closes the connection (pool) or the PGlite instance; later calls do nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.closeClient();
  }
}

/** The rows of a raw query's result: postgres.js gives them as the result, PGlite as its `rows`. */
function rowsOf(result: unknown): Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[];
  const rows = (result as { rows?: unknown }).rows;
  assert(Array.isArray(rows), "a query result has rows");
  return rows as Record<string, unknown>[];
}

/** A bigint (or numeric) column's value as a number: postgres.js reads them as strings, PGlite as numbers. */
function safeInteger(value: unknown): number {
  const number = typeof value === "string" ? Number(value) : value;
  assert(typeof number === "number" && Number.isSafeInteger(number), `expected a safe integer from Postgres, got ${String(value)}`);
  return number;
}
