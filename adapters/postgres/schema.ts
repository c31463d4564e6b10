/**
 * The Postgres projection of the output events, as Drizzle tables: the source of truth for the tables. The SQL in
 * migrations/ is generated from this file (`npm run db:generate`), and the sink names its columns through these
 * objects, so a renamed column fails to typecheck instead of failing at run time.
 *
 * Tables carry a `hotledger_` prefix and no Postgres schema: they live in whichever schema the connection's
 * search_path names first (PostgresSinkOptions.schema), so one database can hold several independent projections
 * (a test run each, or one per environment).
 *
 * Money and sequences are `bigint` read and written as JavaScript numbers: the engine keeps every amount and
 * sequence a safe integer (|x| <= 2^53-1), so no value here is ever rounded.
 */
import { bigint, boolean, customType, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Partner and account ids: text compared byte by byte (COLLATE "C"). They are ASCII identifiers
 * ([A-Za-z0-9._:-]), so the order is the same under any database locale, and a B-tree compares them with memcmp
 * instead of the locale's strcoll: entries and accounts are keyed by them and every deliver inserts thousands of
 * keys at random places in those indexes. Drizzle has no column collation, hence the custom type.
 */
const identifier = customType<{ data: string; driverData: string }>({ dataType: () => 'text COLLATE "C"' });

/**
 * Each account's state after the last event that changed it. Every deliver updates thousands of these rows, so the
 * table is stored half full (fillfactor 50, in the hand-written migration 0001): an updated row's new version then
 * fits on its own page, a HOT update that adds nothing to the primary key index (measured: upserts ~35% faster).
 * The cost is twice the disk space, ~150 bytes more per account.
 */
export const accounts = pgTable(
  "hotledger_accounts",
  {
    partnerId: identifier("partner_id").notNull(),
    accountId: identifier("account_id").notNull(),
    /** The shard the account lives on (a partner's accounts all live on one shard). */
    shard: integer("shard").notNull(),
    currency: text("currency").notNull(),
    balance: bigint("balance", { mode: "number" }).notNull(),
    held: bigint("held", { mode: "number" }).notNull(),
    available: bigint("available", { mode: "number" }).notNull(),
    overdraftLimit: bigint("overdraft_limit", { mode: "number" }).notNull(),
    /** "active", "frozen" or "closed" (core/codes.ts ACCOUNT_STATUSES). */
    status: text("status").notNull(),
    /** The sequence of the event that last changed the account. */
    seq: bigint("seq", { mode: "number" }).notNull(),
    /** The stamped time of that event. */
    updated: timestamp("updated", { withTimezone: true, mode: "date" }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.partnerId, table.accountId] })],
);

/**
 * Ledger entries: one row per account whose balance an event moved (a transfer makes two: double entry). An
 * account lives on one shard and a command moves its balance at most once, so (partner, account, seq) is unique;
 * the same key orders an account's history for keyset pagination.
 */
export const entries = pgTable(
  "hotledger_entries",
  {
    partnerId: identifier("partner_id").notNull(),
    accountId: identifier("account_id").notNull(),
    shard: integer("shard").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    /** `<shard>:<seq>`, as on the event. */
    eventId: text("event_id").notNull(),
    commandId: text("command_id"),
    /** The command type, e.g. "transfer" (core/codes.ts COMMAND_TYPES). */
    type: text("type").notNull(),
    /** The signed change of the balance: negative for money out. */
    amount: bigint("amount", { mode: "number" }).notNull(),
    balanceAfter: bigint("balance_after", { mode: "number" }).notNull(),
    time: timestamp("time", { withTimezone: true, mode: "date" }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.partnerId, table.accountId, table.seq] })],
);

/** Command results: one row per event, rejections and duplicates included. */
export const results = pgTable(
  "hotledger_results",
  {
    shard: integer("shard").notNull(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    eventId: text("event_id").notNull(),
    /** Null for a check sent without an id. */
    commandId: text("command_id"),
    partnerId: identifier("partner_id").notNull(),
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
