/**
 * The Postgres output sink: a projection of the output events (accounts, ledger entries, command results, a cursor
 * per sink and shard) kept with Drizzle, over a real Postgres (postgres.js) or an embedded PGlite. Both open
 * functions migrate the database to schema.ts with the SQL in migrations/ before they return the sink. Delivers
 * write with COPY through the driver itself (drivers.ts); reads go through Drizzle.
 *
 *   const sink = await openPostgresSink({ url: "postgres://postgres@127.0.0.1:5432/ledger" });
 *   const relay = await Relay.start({ ...engineOptions, shard: 0, sinks: [sink], ... });
 *   await sink.entries("partner-1", "wallet-9", { limit: 100 });
 */
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import type { MigrationConfig } from "drizzle-orm/migrator";
import postgres from "postgres";
import { pgliteDriver, postgresJsDriver } from "./drivers.ts";
import { PostgresSink, PostgresSinkError } from "./sink.ts";

export {
  DELIVER_EVENTS_MAX,
  ENTRIES_PAGE_LIMIT_MAX,
  PostgresSink,
  PostgresSinkError,
  ProjectionGapError,
  type EntriesPage,
  type EntriesPageOptions,
  type LedgerEntry,
  type ProjectedAccount,
  type ProjectionMismatch,
  type SinkDatabase,
} from "./sink.ts";
export * as postgresSchema from "./schema.ts";

/**
 * Connections in a sink's postgres.js pool. A deliver holds one for its transaction and a relay delivers one batch
 * at a time, so this many relays (shards) can share one sink without waiting for each other; each idle connection
 * costs a Postgres backend (~10 MB).
 */
export const SINK_CONNECTIONS_DEFAULT = 4;

/**
 * How long close() lets queries in flight finish before it closes the connections anyway. Bounded because a
 * connection that died in the middle of a transaction can leave postgres.js waiting for an answer that never comes.
 */
export const SINK_CLOSE_TIMEOUT_SECONDS = 5;

/** The migrations drizzle-kit generated from schema.ts; they ship next to this file. */
const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));

/** Names the migrator's bookkeeping table, kept in the same Postgres schema as the projection's tables. */
const MIGRATIONS_TABLE = "hotledger_migrations";

/** A Postgres identifier we can put in search_path without quoting surprises. */
const SCHEMA_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** What both open functions accept. */
export interface SinkOptions {
  /**
   * The sink's name in the relay's status and logs, and in its cursor rows. Default "postgres". The tables hold one
   * projection: two sinks on one schema must deliver different shards (or be the same sink twice, under one name);
   * a second projection of the same shards needs a schema of its own.
   */
  name?: string;
  /**
   * The Postgres schema holding the tables (created when missing). Default "public". Separate schemas are separate
   * projections: a test run uses a fresh one.
   */
  schema?: string;
}

/** Options of openPostgresSink. */
export interface PostgresSinkOptions extends SinkOptions {
  /** A postgres:// connection string. */
  url: string;
  /** Pool size. Default SINK_CONNECTIONS_DEFAULT. */
  connectionsMax?: number;
}

/** Options of openPgliteSink. */
export interface PgliteSinkOptions extends SinkOptions {
  /** Where PGlite keeps its files; undefined keeps the database in memory (gone on close). */
  dataDir?: string;
}

function schemaName(options: SinkOptions): string {
  const schema = options.schema ?? "public";
  if (!SCHEMA_NAME_PATTERN.test(schema)) {
    throw new RangeError(`schema must match ${SCHEMA_NAME_PATTERN}, got ${JSON.stringify(schema)}`);
  }
  return schema;
}

function migrationConfig(schema: string): MigrationConfig {
  return { migrationsFolder: MIGRATIONS_FOLDER, migrationsSchema: schema, migrationsTable: MIGRATIONS_TABLE };
}

/**
 * A sink over a Postgres server (postgres.js), after migrating the schema. Every pooled connection's search_path
 * is the sink's schema, so the statements name tables without a schema. Rejects with PostgresSinkError when the
 * server cannot be reached or the migration fails; nothing is left open then.
 */
export async function openPostgresSink(options: PostgresSinkOptions): Promise<PostgresSink> {
  const schema = schemaName(options);
  const client = postgres(options.url, {
    max: options.connectionsMax ?? SINK_CONNECTIONS_DEFAULT,
    connection: { search_path: schema },
    // The migrator's CREATE SCHEMA IF NOT EXISTS notices are expected, not news.
    onnotice: () => {},
  });
  const db = drizzlePostgres({ client });
  try {
    await migratePostgres(db, migrationConfig(schema));
  } catch (error) {
    await client.end({ timeout: SINK_CLOSE_TIMEOUT_SECONDS });
    throw new PostgresSinkError(`migrating schema ${schema} failed`, { cause: error });
  }
  return new PostgresSink(db, postgresJsDriver(client), () => client.end({ timeout: SINK_CLOSE_TIMEOUT_SECONDS }), options.name);
}

/** A sink over an embedded PGlite database (in memory unless `dataDir`), after migrating the schema. */
export async function openPgliteSink(options: PgliteSinkOptions = {}): Promise<PostgresSink> {
  const schema = schemaName(options);
  const client = new PGlite(options.dataDir);
  const db = drizzlePglite({ client });
  try {
    // PGlite is one session, so setting search_path once covers every later statement.
    await client.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"; SET search_path TO "${schema}"`);
    await migratePglite(db, migrationConfig(schema));
  } catch (error) {
    await client.close();
    throw new PostgresSinkError(`migrating schema ${schema} failed`, { cause: error });
  }
  return new PostgresSink(db, pgliteDriver(client), () => client.close(), options.name);
}
