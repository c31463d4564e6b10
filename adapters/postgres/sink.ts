/**
 * PostgresSink: keeps a Postgres projection of one or more shards' output events (schema.ts), whichever driver
 * opened the database (index.ts: postgres.js or PGlite).
 *
 * Exactly-once effect. A deliver is one transaction: it locks the sink's cursor row for the shard, skips the events
 * at or before the cursor, writes the rest and moves the cursor. A resend after a lost acknowledgement finds the
 * cursor already past it and writes nothing; a deliver that fails anywhere rolls back whole, cursor included; two
 * relays delivering the same shard at once take turns on the lock, and the second writes only what the first did
 * not.
 *
 * Throughput. Each table gets one set-based statement per deliver (rows.ts), so a 5,000-event batch is six round
 * trips (cursor, results, entries, accounts, cursor, commit) and the cost is Postgres inserting rows, not the
 * protocol.
 */
import { and, asc, eq, gt, sql, type SQL } from "drizzle-orm";
import type { PgColumn, PgDatabase, PgQueryResultHKT, PgTable } from "drizzle-orm/pg-core";
import { DrizzleQueryError } from "drizzle-orm/errors";
import { AssertionError, assert } from "../../core/assert.ts";
import type { AccountStatus, CommandType } from "../../core/codes.ts";
import type { OutputEvent, OutputSink } from "../../core/outputs.ts";
import type { Account } from "../../core/types.ts";
import {
  arrayLiteral,
  bigintArrayLiteral,
  eventColumns,
  type AccountColumns,
  type EntryColumns,
  type ResultColumns,
} from "./rows.ts";
import { accounts, cursors, entries, results } from "./schema.ts";

/**
 * Most events in one deliver. Each event costs ~1 KB in the column arrays and the statements' parameters, so a
 * deliver at the limit holds ~64 MB on each side and one transaction of that size in Postgres. The relay sends
 * 5,000 by default.
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

/** An account whose entries do not add up to its projected balance (null: no such row). */
export interface ProjectionMismatch {
  partnerId: string;
  accountId: string;
  balance: number | null;
  entriesTotal: number | null;
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

/** The Postgres projection as an OutputSink, plus the reads the HTTP transport serves from it. */
export class PostgresSink implements OutputSink {
  private closed = false;

  /**
   * Use openPostgresSink or openPgliteSink (index.ts): they migrate the database first. `db` is public for queries
   * of the projection beyond the ones below (schema.ts names the tables); writing to it breaks the projection.
   */
  constructor(
    readonly db: SinkDatabase,
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
    for (let i = 0; i < events.length; i++) {
      assert(events[i].shard === shard, "every event belongs to the shard delivered");
      assert(i === 0 || events[i].seq === events[i - 1].seq + 1, "events are consecutive sequences");
    }
    try {
      await this.db.transaction((transaction) => this.deliverTransaction(transaction, shard, events));
    } catch (error) {
      // A gap is already its own typed error; a failed assertion is a bug and is never dressed up as an outage.
      if (error instanceof ProjectionGapError || error instanceof AssertionError) throw error;
      const range = `${events[0].seq}..${events[events.length - 1].seq}`;
      throw new PostgresSinkError(`${this.name}: delivering shard ${shard} events ${range} failed`, { cause: error });
    }
  }

  private async deliverTransaction(transaction: SinkDatabase, shard: number, events: readonly OutputEvent[]): Promise<void> {
    const cursor = await this.lockCursor(transaction, shard);
    const start = cursor + 1 - events[0].seq;
    if (start >= events.length) return; // a resend of events already here
    if (start < 0) throw new ProjectionGapError(shard, cursor, events[0].seq);
    const fresh = start === 0 ? events : events.slice(start);
    const columns = eventColumns(fresh);
    // One statement after another, not issued together: postgres.js sends a parameterised statement only after
    // Postgres has described it, so issuing them together gains nothing, and a connection lost with writes still
    // queued has been seen to leave postgres.js's promises unsettled.
    await transaction.execute(insertResults(shard, columns.results));
    if (columns.entries.seq.length > 0) await transaction.execute(insertEntries(shard, columns.entries));
    if (columns.accounts.seq.length > 0) await transaction.execute(upsertAccounts(shard, columns.accounts));
    await transaction
      .update(cursors)
      .set({ seq: fresh[fresh.length - 1].seq })
      .where(and(eq(cursors.sink, this.name), eq(cursors.shard, shard)));
  }

  /**
   * The stored cursor, its row locked until the transaction ends. An upsert rather than SELECT ... FOR UPDATE so
   * that the first deliver of a shard, when there is no row to lock yet, is serialised too.
   */
  private async lockCursor(transaction: SinkDatabase, shard: number): Promise<number> {
    const rows = await transaction
      .insert(cursors)
      .values({ sink: this.name, shard, seq: 0 })
      .onConflictDoUpdate({ target: [cursors.sink, cursors.shard], set: { seq: sql`${cursors.seq}` } })
      .returning({ seq: cursors.seq });
    assert(rows.length === 1, "the cursor upsert returns its row");
    return rows[0].seq;
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
    let rows: (typeof entries.$inferSelect)[];
    try {
      // One row more than asked tells whether another page follows, so the last page says so (next: null).
      rows = await this.db
        .select()
        .from(entries)
        .where(and(eq(entries.partnerId, partnerId), eq(entries.accountId, accountId), gt(entries.seq, after)))
        .orderBy(asc(entries.seq))
        .limit(limit + 1);
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: reading entries of ${partnerId}/${accountId} failed`, { cause: error });
    }
    const page = rows.slice(0, limit).map(({ time, type, ...row }): LedgerEntry => ({
      ...row,
      type: type as CommandType,
      timeMs: time.getTime(),
    }));
    return { entries: page, next: rows.length > limit ? page[page.length - 1].seq : null };
  }

  /** The account as projected, or undefined when no event has touched it yet. */
  async account(partnerId: string, accountId: string): Promise<ProjectedAccount | undefined> {
    let rows: (typeof accounts.$inferSelect)[];
    try {
      rows = await this.db
        .select()
        .from(accounts)
        .where(and(eq(accounts.partnerId, partnerId), eq(accounts.accountId, accountId)));
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: reading account ${partnerId}/${accountId} failed`, { cause: error });
    }
    if (rows.length === 0) return undefined;
    const { updated, status, ...row } = rows[0];
    return { ...row, status: status as AccountStatus, updatedMs: updated.getTime() };
  }

  /**
   * Accounts whose entries do not add up to their balance, checked in SQL over the whole projection (for tests and
   * fault drills; it reads every entry). Empty when the projection is consistent.
   */
  async verifyProjection(): Promise<ProjectionMismatch[]> {
    const totals = this.db
      .select({
        partnerId: entries.partnerId,
        accountId: entries.accountId,
        entriesTotal: sql<number>`sum(${entries.amount})`.mapWith(Number).as("entries_total"),
      })
      .from(entries)
      .groupBy(entries.partnerId, entries.accountId)
      .as("totals");
    try {
      return await this.db
        .select({
          partnerId: sql<string>`coalesce(${accounts.partnerId}, ${totals.partnerId})`,
          accountId: sql<string>`coalesce(${accounts.accountId}, ${totals.accountId})`,
          balance: accounts.balance,
          entriesTotal: totals.entriesTotal,
        })
        .from(accounts)
        .fullJoin(totals, and(eq(accounts.partnerId, totals.partnerId), eq(accounts.accountId, totals.accountId)))
        .where(sql`coalesce(${accounts.balance}, 0) <> coalesce(${totals.entriesTotal}, 0)`);
    } catch (error) {
      throw new PostgresSinkError(`${this.name}: verifying the projection failed`, { cause: error });
    }
  }

  /** Closes the connection (pool) or the PGlite instance; later calls do nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.closeClient();
  }
}

/** `"a", "b", ...`: bare column names, as an INSERT's column list needs them. */
function columnNames(columns: readonly PgColumn[]): SQL {
  return sql.join(columns.map((column) => sql.identifier(column.name)), sql`, `);
}

/** A target column and the expression that fills it: a constant, or one element of an array per row. */
type ColumnValue = readonly [PgColumn, SQL];

/**
 * `INSERT INTO table (a, b) SELECT unnest($1::bigint[]), unnest($2::text[])`: the set-returning functions in the
 * select list run in lockstep, one row per array element, and stream into the insert (measured ~20% faster than
 * `FROM unnest(...)`, which first copies every row into a tuplestore).
 */
function insertSelect(table: PgTable, values: readonly ColumnValue[]): SQL {
  return sql`insert into ${table} (${columnNames(values.map(([column]) => column))}) select ${sql.join(
    values.map(([, value]) => value),
    sql`, `,
  )}`;
}

const unnestBigint = (values: readonly (number | null)[]): SQL => sql`unnest(${bigintArrayLiteral(values)}::bigint[])`;
const unnestText = (values: readonly (string | null)[]): SQL => sql`unnest(${arrayLiteral(values)}::text[])`;
const unnestBoolean = (values: readonly boolean[]): SQL => sql`unnest(${arrayLiteral(values)}::boolean[])`;
/** Stamped milliseconds as timestamptz, exactly (no float division). */
const unnestTime = (timesMs: readonly number[]): SQL =>
  sql`timestamptz 'epoch' + unnest(${bigintArrayLiteral(timesMs)}::bigint[]) * interval '1 millisecond'`;
const shardValue = (shard: number): SQL => sql`${shard}::integer`;

function insertResults(shard: number, rows: ResultColumns): SQL {
  const r = results;
  return insertSelect(r, [
    [r.shard, shardValue(shard)],
    [r.seq, unnestBigint(rows.seq)],
    [r.eventId, unnestText(rows.eventId)],
    [r.commandId, unnestText(rows.commandId)],
    [r.partnerId, unnestText(rows.partnerId)],
    [r.type, unnestText(rows.type)],
    [r.code, unnestText(rows.code)],
    [r.status, unnestText(rows.status)],
    [r.duplicate, unnestBoolean(rows.duplicate)],
    [r.amount, unnestBigint(rows.amount)],
    [r.balance, unnestBigint(rows.balance)],
    [r.held, unnestBigint(rows.held)],
    [r.available, unnestBigint(rows.available)],
    [r.time, unnestTime(rows.timeMs)],
  ]);
}

function insertEntries(shard: number, rows: EntryColumns): SQL {
  const e = entries;
  return insertSelect(e, [
    [e.partnerId, unnestText(rows.partnerId)],
    [e.accountId, unnestText(rows.accountId)],
    [e.shard, shardValue(shard)],
    [e.seq, unnestBigint(rows.seq)],
    [e.eventId, unnestText(rows.eventId)],
    [e.commandId, unnestText(rows.commandId)],
    [e.type, unnestText(rows.type)],
    [e.amount, unnestBigint(rows.amount)],
    [e.balanceAfter, unnestBigint(rows.balanceAfter)],
    [e.time, unnestTime(rows.timeMs)],
  ]);
}

/** Inserts new accounts and overwrites the others with their state after the batch. */
function upsertAccounts(shard: number, rows: AccountColumns): SQL {
  const a = accounts;
  const values: ColumnValue[] = [
    [a.partnerId, unnestText(rows.partnerId)],
    [a.accountId, unnestText(rows.accountId)],
    [a.shard, shardValue(shard)],
    [a.currency, unnestText(rows.currency)],
    [a.balance, unnestBigint(rows.balance)],
    [a.held, unnestBigint(rows.held)],
    [a.available, unnestBigint(rows.available)],
    [a.overdraftLimit, unnestBigint(rows.overdraftLimit)],
    [a.status, unnestText(rows.status)],
    [a.seq, unnestBigint(rows.seq)],
    [a.updated, unnestTime(rows.timeMs)],
  ];
  const updated = values.slice(2).map(([column]) => sql`${sql.identifier(column.name)} = excluded.${sql.identifier(column.name)}`);
  return sql`${insertSelect(a, values)} on conflict (${columnNames([a.partnerId, a.accountId])}) do update set ${sql.join(updated, sql`, `)}`;
}
