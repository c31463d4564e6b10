/**
 * The Postgres projection of the output events, as Drizzle tables: the source of truth for the tables. The SQL in
 * migrations/ is generated from this file (`npm run db:generate`), and the sink names its tables and columns
 * through these objects, so a renamed column fails to typecheck instead of failing at run time.
 *
 * Tables carry a `hotledger_` prefix and no Postgres schema: they live in whichever schema the connection's
 * search_path names first (PostgresSinkOptions.schema), so one database can hold several independent projections
 * (a test run each, or one per environment).
 *
 * Money and sequences are `bigint` read and written as JavaScript numbers: the engine keeps every amount and
 * sequence a safe integer (|x| <= 2^53-1), so no value here is ever rounded.
 *
 * Shaped for the write path (bench/postgres-sink.ts has the measurements). On the 2-vCPU machine this was measured
 * on, Postgres spends ~2 us storing a row in a heap, ~2 us appending its key to a B-tree and ~5 us inserting a key
 * at a random place, whatever the row holds; so a deliver costs what it inserts, and the tables keep that low: one
 * results row per event (its key the largest of its shard so far), and one account_batches row per account a
 * deliver changed, not one per change. Nothing is updated in place: every table only grows, so nothing is read
 * back, locked or vacuumed on the way in. Nothing derivable is stored: an event's id is `<shard>:<seq>`, an entry's
 * command and time are its event's (results), an account's available is balance - held + overdraft limit.
 */
import { bigint, boolean, customType, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Partner and account ids: text compared byte by byte (COLLATE "C"). They are ASCII identifiers
 * ([A-Za-z0-9._:-]), so the order is the same under any database locale, and a B-tree compares them with memcmp
 * instead of the locale's strcoll: account_batches is keyed by them, and every deliver inserts thousands of keys
 * at random places in that index. Drizzle has no column collation, hence the custom type.
 */
const identifier = customType<{ data: string; driverData: string }>({ dataType: () => 'text COLLATE "C"' });

/**
 * One row per account per deliver that changed it: the account's state after the last event of the deliver that
 * changed it, and the deliver's ledger entries of the account (one per event that moved its balance; a transfer
 * makes one on each side: double entry), as three arrays of one element per entry, in sequence order.
 *
 * The account's state is its newest row, and its history is its rows in key order, entries in array order: the
 * primary key (partner, account, seq) serves both, and a deliver inserts one key per account it touched, however
 * many times it touched it (measured: ~4,500 keys for a 5,000-event batch over 10,000 accounts, 128 over 128
 * accounts), where one row per entry plus an upsert per account inserted ~5,500 keys and updated ~4,500 rows.
 * A deliver's events are consecutive and the next deliver's come after them, so the rows of an account never
 * overlap: its entries in (seq, array position) order are in sequence order.
 */
export const accountBatches = pgTable(
  "hotledger_account_batches",
  {
    partnerId: identifier("partner_id").notNull(),
    accountId: identifier("account_id").notNull(),
    /** The shard the account lives on (a partner's accounts all live on one shard). */
    shard: integer("shard").notNull(),
    /** The sequence of the deliver's last event that changed the account: the state below is the state after it. */
    seq: bigint("seq", { mode: "number" }).notNull(),
    currency: text("currency").notNull(),
    balance: bigint("balance", { mode: "number" }).notNull(),
    held: bigint("held", { mode: "number" }).notNull(),
    overdraftLimit: bigint("overdraft_limit", { mode: "number" }).notNull(),
    /** "active", "frozen" or "closed" (core/codes.ts ACCOUNT_STATUSES). */
    status: text("status").notNull(),
    /** The sequence of each entry's event (its command and time are that event's results row). */
    entrySeqs: bigint("entry_seqs", { mode: "number" }).array().notNull(),
    /** Each entry's signed change of the balance: negative for money out. */
    entryAmounts: bigint("entry_amounts", { mode: "number" }).array().notNull(),
    /** The balance right after each entry. */
    entryBalances: bigint("entry_balances", { mode: "number" }).array().notNull(),
  },
  // No CHECK that the three arrays are equally long: it was measured to cost ~5 ms per 5,000-event deliver (~1 us
  // a row, to read three array headers), and rows.ts builds the arrays together and asserts their lengths.
  (table) => [primaryKey({ columns: [table.partnerId, table.accountId, table.seq] })],
);

/** Command results: one row per event, rejections and duplicates included. The event's id is `<shard>:<seq>`. */
export const results = pgTable(
  "hotledger_results",
  {
    shard: integer("shard").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    /** Null for a check sent without an id. */
    commandId: text("command_id"),
    partnerId: identifier("partner_id").notNull(),
    /** The command type, e.g. "transfer" (core/codes.ts COMMAND_TYPES). */
    type: text("type").notNull(),
    /** The result code, e.g. "insufficient_funds" (core/codes.ts RESULT_CODES). */
    code: text("code").notNull(),
    /** "ok" or "rejected". */
    status: text("status").notNull(),
    duplicate: boolean("duplicate").notNull(),
    /** The command's amount, when it has one. */
    amount: bigint("amount", { mode: "number" }),
    /** The (source) account after the command, when the account exists. */
    balance: bigint("balance", { mode: "number" }),
    held: bigint("held", { mode: "number" }),
    available: bigint("available", { mode: "number" }),
    /** The event's stamped time. */
    time: timestamp("time", { withTimezone: true, mode: "date" }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.shard, table.seq] })],
);

/** Each sink's durable cursor per shard: the last sequence whose event is in the tables above. */
export const cursors = pgTable(
  "hotledger_cursors",
  {
    sink: text("sink").notNull(),
    shard: integer("shard").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.sink, table.shard] })],
);
