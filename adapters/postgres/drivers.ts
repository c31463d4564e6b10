/**
 * What a deliver needs from the driver under Drizzle: one transaction on one connection, with plain statements and
 * `COPY ... FROM` a binary payload. Drizzle offers no COPY, so the deliver talks to postgres.js or PGlite directly;
 * reads of the projection go through Drizzle (sink.ts).
 */
import type { PGlite } from "@electric-sql/pglite";
import postgres, { type ReservedSql, type Sql } from "postgres";
import type { Writable } from "node:stream";

/** A parameter of a deliver's statements. */
export type StatementParameter = string | number;

/** The transaction a deliver runs in. */
export interface DeliverTransaction {
  /** Runs `text` ($1, $2... for `parameters`) and resolves with its rows, bigint columns as strings or numbers. */
  query(text: string, parameters: readonly StatementParameter[]): Promise<Record<string, unknown>[]>;
  /**
   * Starts `COPY <into> FROM ... (FORMAT binary)` (`into`: a table and its column list) and resolves once Postgres
   * is ready for the payload. Nothing else may run in the transaction until the copy's `end` has settled.
   */
  copy(into: string): Promise<CopyIn>;
}

/** A COPY waiting for its payload. */
export interface CopyIn {
  /**
   * Sends `payload` (rows.ts) and resolves once Postgres has stored every row; rejects with Postgres's error
   * otherwise (the transaction is then aborted). The payload is on its way when this returns, so the caller can
   * work while Postgres stores it.
   */
  end(payload: Uint8Array<ArrayBuffer>): Promise<void>;
}

/** Runs deliver transactions: commits when `body` resolves, rolls back when it rejects. */
export interface DeliverDriver {
  transaction(body: (transaction: DeliverTransaction) => Promise<void>): Promise<void>;
}

/**
 * Deliver transactions over a postgres.js pool, each on a connection reserved for its length, with BEGIN, COMMIT and
 * ROLLBACK of its own rather than sql.begin.
 *
 * postgres.js 3.4.9 crashes the process when a connection drops in the middle of sql.begin: begin's own ROLLBACK
 * goes to the dropped connection, whose write then runs from setImmediate on a socket that is gone, an uncaught
 * TypeError (porsager/postgres#1208, #1066; fixes proposed in #1209, #1215). Measured here: a backend terminated
 * while a deliver waits for a lock brought the test process down. So a transaction whose connection failed (any
 * rejection that is not Postgres answering with an error) sends nothing more on it and does not hand it back:
 * Postgres rolls the transaction back as the connection goes, and the pool opens a new connection in its place
 * when it needs one. Only a connection that is still talking gets a ROLLBACK and goes back to the pool.
 */
export function postgresJsDriver(client: Sql): DeliverDriver {
  return {
    async transaction(body) {
      const connection = await client.reserve();
      let connectionFailed = false;
      const watch = <T>(promise: Promise<T>): Promise<T> =>
        promise.catch((error: unknown) => {
          if (!(error instanceof postgres.PostgresError)) connectionFailed = true;
          throw error;
        });
      const transaction: DeliverTransaction = {
        query: (text, parameters) => watch(connection.unsafe(text, parameters as StatementParameter[])),
        copy: async (into) => {
          const copyIn = await watch(copyFromStdin(connection, `copy ${into} from stdin (format binary)`));
          return { end: (payload) => watch(copyIn.end(payload)) };
        },
      };
      try {
        await watch(connection.unsafe("begin"));
        await body(transaction);
        await watch(connection.unsafe("commit"));
      } catch (error) {
        if (!connectionFailed) {
          // A ROLLBACK that fails finds the connection gone, with the transaction: it stays out of the pool.
          const rolledBack = await connection.unsafe("rollback").then(() => true, () => false);
          if (rolledBack) connection.release();
        }
        throw error;
      }
      connection.release();
    },
  };
}

/** A postgres.js query, with the settle function postgres.js keeps on it (not in its types). */
interface SettleableQuery {
  writable(): Promise<Writable>;
  reject(error: unknown): void;
}

/**
 * `COPY ... FROM STDIN` whose end settles when Postgres has answered, whatever the answer.
 *
 * postgres.js 3.4.9 hands the COPY over as a Writable whose end waits for Postgres's CommandComplete. When
 * Postgres refuses a row after the last byte has gone out, or the connection drops then, postgres.js rejects the
 * query (already resolved with the Writable, so nobody hears it) and never ends the Writable: awaiting it would
 * hang the transaction forever and leak its connection as "idle in transaction (aborted)" (porsager/postgres#1173,
 * open; fix proposed in #1183). So the query's own reject is watched as well: the first of finish, stream error or
 * query rejection settles the COPY, and a failure reaches the transaction, which rolls back.
 */
async function copyFromStdin(sql: ReservedSql, statement: string): Promise<CopyIn> {
  const query = sql.unsafe(statement) as unknown as SettleableQuery;
  const outcome = new CopyOutcome();
  const rejectQuery = query.reject;
  query.reject = (error: unknown) => {
    outcome.fail(error);
    rejectQuery(error);
  };
  const stream = await query.writable();
  // Listened to from the start and for good: a stream error with no listener would crash the process.
  stream.on("error", (error: Error) => outcome.fail(error));
  stream.once("finish", () => outcome.succeed());
  return {
    end(payload) {
      const stored = outcome.settled();
      if (!outcome.failed) stream.end(payload);
      return stored;
    },
  };
}

/** How a COPY ended, told once to whoever waits for it (or kept until someone does); the first news wins. */
class CopyOutcome {
  private result: { error: unknown } | "succeeded" | undefined;
  private waiter: { resolve(): void; reject(error: unknown): void } | undefined;

  get failed(): boolean {
    return this.result !== undefined && this.result !== "succeeded";
  }

  succeed(): void {
    if (this.result !== undefined) return;
    this.result = "succeeded";
    this.waiter?.resolve();
  }

  fail(error: unknown): void {
    if (this.result !== undefined) return;
    this.result = { error };
    this.waiter?.reject(error);
  }

  /** Settles with the outcome, now if it is known. */
  settled(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.result === "succeeded") resolve();
      else if (this.result !== undefined) reject(this.result.error);
      else this.waiter = { resolve, reject };
    });
  }
}

/**
 * Deliver transactions over PGlite: one session, so PGlite runs them one at a time. COPY reads its payload from
 * PGlite's `/dev/blob`, the file a query's `blob` option provides.
 */
export function pgliteDriver(client: PGlite): DeliverDriver {
  return {
    async transaction(body) {
      await client.transaction((transaction) =>
        body({
          query: async (text, parameters) => (await transaction.query<Record<string, unknown>>(text, [...parameters])).rows,
          copy: async (into) => ({
            async end(payload) {
              await transaction.query(`copy ${into} from '/dev/blob' (format binary)`, [], { blob: new Blob([payload]) });
            },
          }),
        }),
      );
    },
  };
}
