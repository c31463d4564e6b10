// Proves that the Postgres sink keeps a faithful projection of the output events, with exactly-once effect, on both
// drivers: the real Postgres at 127.0.0.1:5432 (override with POSTGRES_URL; each test in a fresh schema, dropped
// after) and PGlite in memory. Events come from a real Shard and EventDeriver over the seeded mixed workload. The
// tests deliver them in chunks and compare every results row, every account and every entry with what the events
// and the engine say; resend chunks whole and overlapping; fail a deliver in the middle of its transaction (a
// malformed event that Postgres refuses after the whole COPY payload went out, and on Postgres a connection killed
// while it waits for a lock) and check that nothing moved and the process survives; page through every account's
// entries; deliver made-up events whose texts, integers and times are the ones a binary COPY payload could get
// wrong and read them back; and run the sink behind the core Relay with lost acknowledgements. A last test
// regenerates the migrations from schema.ts and fails when the committed ones are out of date.
// It needs the network and a subprocess, so it runs under Bun only, as the other output adapters' tests do
// (scripts/deno-test.mjs and node-test.mjs leave them out; the guard below keeps another runtime from failing on
// it). When Postgres is unreachable its tests are skipped with a message, except in CI (CI=true): a failure there.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { and, asc, eq, max, sql } from "drizzle-orm";
import postgres from "postgres";
import { AssertionError, Relay, type Account, type OutputEvent, type OutputSink } from "../../core/index.ts";
import { skipUnlessAvailable } from "../../runtime-tests/services.ts";
import { MemoryJournalTail } from "../../core/testing/memory-outputs.ts";
import { KeepingJournal, MemoryJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import {
  deriveEvents, openWorkloadShard, randomWorkload, submitWorkload, WORKLOAD_ACCOUNTS, WORKLOAD_PARTNERS, workloadClock, workloadOpenings,
} from "../../core/testing/workload.ts";
import {
  ENTRIES_PAGE_LIMIT_MAX,
  openPgliteSink,
  openPostgresSink,
  PostgresSink,
  PostgresSinkError,
  ProjectionGapError,
  type LedgerEntry,
} from "./index.ts";
import { accountBatches, cursors, results } from "./schema.ts";

const runtimeIsBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const NOT_BUN = "runs under Bun only (needs the network and a subprocess)";
const URL_POSTGRES = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = randomBytes(4).toString("hex");
const SHARD = 3;
const SIZES = { accountsMax: 256, partnersMax: 16, holdsMax: 512, idempotencyCommandsMax: 4096, ringSlots: 64 };
/**
 * Every test finishes in seconds; this bounds a hung connection. (Bun's node:test takes a timeout from each test's
 * options only: not from describe's, nor from bunfig.toml, so every test below passes TEST_OPTIONS.)
 */
const TEST_TIMEOUT_MS = 60_000;
const TEST_OPTIONS = { timeout: TEST_TIMEOUT_MS };
/** drizzle-kit loads schema.ts with esbuild and writes a few files. */
const GENERATE_TIMEOUT_MS = 60_000;

/** Whether Postgres answers; a connection failure is the answer "no", with the reason. */
async function probe(): Promise<{ up: true } | { up: false; reason: string }> {
  const client = postgres(URL_POSTGRES, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await client`select 1`;
    return { up: true };
  } catch (error) {
    return { up: false, reason: (error as Error).message };
  } finally {
    await client.end({ timeout: 1 });
  }
}

const server = runtimeIsBun ? await probe() : { up: false as const, reason: NOT_BUN };
const postgresSkip = !runtimeIsBun
  ? NOT_BUN
  : skipUnlessAvailable(server.up, "Postgres is reachable",
    `Postgres at ${URL_POSTGRES} is unreachable (${server.up ? "" : server.reason}); Postgres sink tests skipped`);

/** The workload's shard: sizes of this file, a clock that moves 0-5 ms per record (short holds expire). */
const openShard = (journal: MemoryJournal) => openWorkloadShard(journal, { sizes: SIZES, clock: workloadClock(1_700_000_000_000) });

/** The workload's events and the engine's accounts at the end. */
async function workloadEvents(): Promise<{ events: OutputEvent[]; engineAccounts: Account[] }> {
  const journal = new KeepingJournal();
  const shard = await openShard(journal);
  await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(7, 400)]);
  const engineAccounts = await Promise.all(WORKLOAD_PARTNERS.flatMap((partnerId) => WORKLOAD_ACCOUNTS.map(async (accountId) => (await shard.account(partnerId, accountId))!)));
  await shard.close();
  return { events: deriveEvents(journal.records, SHARD, SIZES), engineAccounts };
}

const { events: EVENTS, engineAccounts: ENGINE_ACCOUNTS } = runtimeIsBun ? await workloadEvents() : { events: [], engineAccounts: [] };
const key = (partnerId: string, accountId: string) => `${partnerId}/${accountId}`;

/** What the projection must hold after `events`: every results row, every account's entries, accounts' last events. */
function expectedProjection(events: readonly OutputEvent[]) {
  const resultRows = events.map((event) => ({
    shard: event.shard,
    seq: event.seq,
    commandId: event.command.id ?? null,
    partnerId: event.command.partnerId,
    type: event.command.type,
    code: event.result.code,
    status: event.result.status,
    duplicate: event.result.duplicate === true,
    amount: "amount" in event.command && event.command.amount !== undefined ? event.command.amount : null,
    balance: event.result.balance ?? null,
    held: event.result.held ?? null,
    available: event.result.available ?? null,
    time: new Date(event.timeMs),
  }));
  const entriesByAccount = new Map<string, LedgerEntry[]>();
  const lastChange = new Map<string, { seq: number; timeMs: number }>();
  for (const event of events) {
    for (const change of event.accounts) {
      const k = key(change.partnerId, change.accountId);
      lastChange.set(k, { seq: event.seq, timeMs: event.timeMs });
      if (change.balanceDelta === 0) continue;
      const list = entriesByAccount.get(k) ?? [];
      list.push({
        partnerId: change.partnerId, accountId: change.accountId, shard: event.shard, seq: event.seq, eventId: event.eventId,
        commandId: event.command.id ?? null, type: event.command.type, amount: change.balanceDelta, balanceAfter: change.balance,
        timeMs: event.timeMs,
      });
      entriesByAccount.set(k, list);
    }
  }
  return { resultRows, entriesByAccount, lastChange };
}

/** Every row of every table, in key order: two dumps are equal when the projection did not change. */
async function dump(sink: PostgresSink) {
  const db = sink.db;
  return {
    accountBatches: await db.select().from(accountBatches).orderBy(asc(accountBatches.partnerId), asc(accountBatches.accountId), asc(accountBatches.seq)),
    results: await db.select().from(results).orderBy(asc(results.shard), asc(results.seq)),
    cursors: await db.select().from(cursors).orderBy(asc(cursors.sink), asc(cursors.shard)),
  };
}

/** The shard of oddEvents, apart from SHARD's. */
const ODD_SHARD = 9;

/**
 * Events the engine would never make (its identifiers are ASCII), one credit each on an account of its own, made to
 * carry what a COPY payload could get wrong: quotes, backslashes, tabs, newlines, control characters, multi-byte
 * UTF-8, empty strings, the text "NULL" and COPY's own null marker; integers at the safe limits and at the 32-bit
 * boundaries of the int64 encoding; times before 1970, at Postgres's epoch and far ahead; a command without an id
 * and a result without a balance.
 */
function oddEvents(): OutputEvent[] {
  const texts = ['quo"te', "back\\slash", "comma,brace{}", "NULL", "\\N", "", " spaced ", "tab\tnew\nline\r", "\u0001", "é€", "😀x"];
  const integers = [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 32, -(2 ** 32), 2 ** 32 - 1, -(2 ** 31) - 1, 2 ** 31, -1];
  const timesMs = [0, -1, 946_684_800_000, 946_684_799_999, 1_700_000_000_123, 4_102_444_800_000];
  return texts.map((text, i): OutputEvent => {
    const seq = i + 1;
    // The account's first entry: its balance is the amount. held and overdraftLimit keep available (balance -
    // held + overdraftLimit) a safe integer.
    const amount = integers[i % integers.length];
    const balance = amount;
    const held = balance > 0 ? balance : 0;
    const overdraftLimit = balance < 0 ? -balance : 0;
    const partnerId = text;
    const accountId = `${text}-${i}`;
    const command = i === 3
      ? { type: "check" as const, partnerId, accountId, amount: 1 }
      : { type: "credit" as const, id: text, partnerId, accountId, amount };
    return {
      eventId: `${ODD_SHARD}:${seq}`, shard: ODD_SHARD, seq, timeMs: timesMs[i % timesMs.length], command,
      result: i === 3
        ? { id: "", status: "rejected", code: "account_not_found", seq }
        : { id: text, status: "ok", code: "ok", seq, balance, held, available: balance - held + overdraftLimit, duplicate: i === 5 },
      accountId,
      accounts: i === 3 ? [] : [{
        partnerId, accountId, currency: "USD", balance, held, available: balance - held + overdraftLimit, overdraftLimit,
        status: "active", balanceDelta: amount, heldDelta: 0,
      }],
    };
  });
}

/** Delivers `events` in chunks of the sizes given, cycling through them. */
async function deliverInChunks(sink: OutputSink, events: readonly OutputEvent[], sizes: readonly number[]): Promise<void> {
  for (let first = 0, i = 0; first < events.length; i++) {
    const size = sizes[i % sizes.length];
    await sink.deliver(SHARD, events.slice(first, first + size));
    first += size;
  }
}

/** Asserts the projection is exactly what `events` (all of the workload's, through the engine) must give. */
async function assertFullProjection(sink: PostgresSink): Promise<void> {
  const expected = expectedProjection(EVENTS);
  assert.equal(await sink.cursor(SHARD), EVENTS.length, "the cursor is at the last event");
  const rows = await sink.db.select().from(results).orderBy(asc(results.seq));
  assert.equal(rows.length, EVENTS.length, "one results row per event");
  assert.deepEqual(rows, expected.resultRows, "every results row carries its event's command and result");
  for (const engineAccount of ENGINE_ACCOUNTS) {
    const { partnerId, accountId } = engineAccount;
    const projected = await sink.account(partnerId, accountId);
    assert.ok(projected !== undefined, `${partnerId}/${accountId} is projected`);
    const last = expected.lastChange.get(key(partnerId, accountId))!;
    const { seq: _engineSeq, ...engineState } = engineAccount;
    assert.deepEqual(projected, { ...engineState, shard: SHARD, seq: last.seq, updatedMs: last.timeMs }, `${partnerId}/${accountId} equals the engine's`);
  }
  assert.deepEqual(await sink.verifyProjection(), [], "entries add up to every balance");
  const [entryCount] = await sink.db.select({ value: sql<number>`coalesce(sum(cardinality(${accountBatches.entrySeqs})), 0)`.mapWith(Number) }).from(accountBatches);
  const expectedEntries = [...expected.entriesByAccount.values()].reduce((total, list) => total + list.length, 0);
  assert.equal(entryCount.value, expectedEntries, "one entry per balance change");
}

interface Opened {
  sink: PostgresSink;
  /** Opens a second sink on the same database (Postgres only; null for in-memory PGlite). */
  reopen: (() => Promise<PostgresSink>) | null;
  /** The Postgres schema of the tables (Postgres only). */
  schema: string | null;
  cleanup(): Promise<void>;
}

interface Driver {
  name: string;
  skip: string | false;
  open(): Promise<Opened>;
}

let schemas = 0;

const DRIVERS: Driver[] = [
  {
    name: "postgres (postgres.js)",
    skip: postgresSkip,
    async open() {
      const schema = `hotledger_test_${RUN}_${schemas++}`;
      const opened: PostgresSink[] = [];
      const reopen = async () => {
        const sink = await openPostgresSink({ url: URL_POSTGRES, schema });
        opened.push(sink);
        return sink;
      };
      return {
        sink: await reopen(),
        reopen,
        schema,
        async cleanup() {
          for (const sink of opened) await sink.close();
          const admin = postgres(URL_POSTGRES, { max: 1, onnotice: () => {} });
          await admin.unsafe(`drop schema if exists "${schema}" cascade`);
          await admin.end();
        },
      };
    },
  },
  {
    name: "PGlite (in memory)",
    skip: runtimeIsBun ? false : NOT_BUN,
    async open() {
      const sink = await openPgliteSink();
      return { sink, reopen: null, schema: null, cleanup: () => sink.close() };
    },
  },
];

/** Runs `body` with a freshly opened, migrated sink of `driver`, and cleans up whatever happens. */
async function withSink(driver: Driver, body: (opened: Opened) => Promise<void>): Promise<void> {
  const opened = await driver.open();
  try {
    await body(opened);
  } finally {
    await opened.cleanup();
  }
}

test("the workload is large and varied enough to prove something", { skip: runtimeIsBun ? false : NOT_BUN }, () => {
  assert.ok(EVENTS.length > 1500, `${EVENTS.length} events`);
  const expected = expectedProjection(EVENTS);
  assert.ok(expected.entriesByAccount.size >= 15, "most accounts have entries");
  assert.ok(EVENTS.some((event) => event.command.type === "transfer" && event.accounts.filter((c) => c.balanceDelta !== 0).length === 2));
  assert.ok(EVENTS.some((event) => event.result.duplicate === true));
  assert.ok(EVENTS.some((event) => event.command.id === undefined), "checks without an id");
});

for (const driver of DRIVERS) {
  describe(`postgres sink over ${driver.name}`, { skip: driver.skip }, () => {
    test("projects every event: results rows, accounts equal to the engine's, entries that add up, the cursor", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        assert.equal(await sink.cursor(SHARD), 0, "no cursor before the first deliver");
        await deliverInChunks(sink, EVENTS, [1, 37, 500, 2]);
        await assertFullProjection(sink);
        assert.equal(await sink.cursor(SHARD + 1), 0, "another shard's cursor is untouched");
        assert.equal(await sink.account("p1", "nobody"), undefined);
        // verifyProjection finds a balance that its entries do not explain.
        const { partnerId, accountId, balance } = ENGINE_ACCOUNTS.find((account) => account.balance !== 0)!;
        const ofAccount = and(eq(accountBatches.partnerId, partnerId), eq(accountBatches.accountId, accountId));
        const [newest] = await sink.db.select({ seq: max(accountBatches.seq) }).from(accountBatches).where(ofAccount);
        await sink.db.update(accountBatches).set({ balance: balance + 1 }).where(and(ofAccount, eq(accountBatches.seq, newest.seq!)));
        assert.deepEqual(await sink.verifyProjection(), [{ partnerId, accountId, balance: balance + 1, entriesTotal: balance }]);
      });
    });

    test("a resend, whole or overlapping, changes nothing it already has", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        const half = Math.floor(EVENTS.length / 2);
        await deliverInChunks(sink, EVENTS.slice(0, half), [100]);
        const before = await dump(sink);
        await sink.deliver(SHARD, EVENTS.slice(half - 100, half));
        await sink.deliver(SHARD, EVENTS.slice(0, half));
        assert.deepEqual(await dump(sink), before, "resending delivered events writes nothing");
        await sink.deliver(SHARD, EVENTS.slice(half - 50, half + 50));
        assert.equal(await sink.cursor(SHARD), half + 50, "an overlapping chunk adds only what is new");
        await deliverInChunks(sink, EVENTS.slice(half + 50), [300]);
        await assertFullProjection(sink);
      });
    });

    test("a deliver that fails inside its transaction leaves cursor and tables as they were", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        await deliverInChunks(sink, EVENTS.slice(0, 600), [200]);
        const before = await dump(sink);
        const chunk = EVENTS.slice(600, 800);
        // Malformed in its last event's entry only: the results rows go in first, then Postgres refuses the entry.
        let at = chunk.length - 1;
        while (!chunk[at].accounts.some((change) => change.balanceDelta !== 0)) at--;
        const malformed = chunk.map((event, i) => i !== at ? event : {
          ...event,
          accounts: event.accounts.map((change) => ({ ...change, accountId: null as unknown as string })),
        });
        await assert.rejects(sink.deliver(SHARD, malformed), (error: Error) => {
          assert.ok(error instanceof PostgresSinkError, `${error.name}: ${error.message}`);
          assert.match(error.message, /events 601\.\.800 failed: .*null value/);
          assert.ok(error.message.length < 1000, "the message is the driver's, not megabytes of parameters");
          return true;
        });
        assert.deepEqual(await dump(sink), before, "nothing of the failed deliver is left");
        // An event the payload writer refuses (a time that is not a whole millisecond): refused before any COPY
        // starts, so the transaction rolls back and the cursor row is free for the next deliver.
        const refused = chunk.map((event, i) => (i === 5 ? { ...event, timeMs: Number.NaN } : event));
        await assert.rejects(sink.deliver(SHARD, refused), /whole number of milliseconds/);
        assert.deepEqual(await dump(sink), before, "nothing of the refused deliver is left");
        await sink.deliver(SHARD, chunk);
        await deliverInChunks(sink, EVENTS.slice(800), [400]);
        await assertFullProjection(sink);
      });
    });

    test("refuses events after a gap, and events that are not consecutive, writing nothing", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        await sink.deliver(SHARD, EVENTS.slice(0, 10));
        const before = await dump(sink);
        await assert.rejects(sink.deliver(SHARD, EVENTS.slice(11, 20)), (error: Error) => {
          assert.ok(error instanceof ProjectionGapError, error.name);
          assert.equal(error.cursor, 10);
          assert.equal(error.firstSeq, 12);
          return true;
        });
        await assert.rejects(sink.deliver(SHARD, [EVENTS[10], EVENTS[12]]), AssertionError);
        await assert.rejects(sink.deliver(SHARD + 1, EVENTS.slice(10, 12)), AssertionError);
        await sink.deliver(SHARD, []);
        assert.deepEqual(await dump(sink), before);
      });
    });

    test("entries() walks every entry of every account once, in sequence order; bad pages are RangeErrors", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        await deliverInChunks(sink, EVENTS, [1000]);
        const expected = expectedProjection(EVENTS);
        for (const partnerId of WORKLOAD_PARTNERS) {
          for (const accountId of WORKLOAD_ACCOUNTS) {
            const walked: LedgerEntry[] = [];
            let after: number | undefined;
            for (let pages = 0; ; pages++) {
              assert.ok(pages <= EVENTS.length, "the walk ends");
              const page = await sink.entries(partnerId, accountId, { after, limit: 7 });
              assert.ok(page.entries.length <= 7);
              walked.push(...page.entries);
              if (page.next === null) break;
              assert.equal(page.entries.length, 7, "only the last page is short");
              assert.equal(page.next, page.entries[6].seq);
              after = page.next;
            }
            assert.deepEqual(walked, expected.entriesByAccount.get(key(partnerId, accountId)) ?? [], `${partnerId}/${accountId}`);
          }
        }
        const [busiest] = [...expected.entriesByAccount.values()].sort((a, b) => b.length - a.length);
        const { partnerId, accountId } = busiest[0];
        const whole = await sink.entries(partnerId, accountId, { limit: ENTRIES_PAGE_LIMIT_MAX });
        assert.deepEqual(whole, { entries: busiest, next: null }, "a page of the maximum size");
        const exact = await sink.entries(partnerId, accountId, { limit: busiest.length });
        assert.equal(exact.next, null, "a page that ends exactly at the last entry says so");
        const one = await sink.entries(partnerId, accountId, { after: busiest[0].seq, limit: 1 });
        assert.deepEqual(one, { entries: [busiest[1]], next: busiest[1].seq });
        assert.deepEqual(await sink.entries(partnerId, accountId, { after: busiest[busiest.length - 1].seq, limit: 5 }), { entries: [], next: null });
        for (const limit of [0, ENTRIES_PAGE_LIMIT_MAX + 1, 1.5, Number.NaN, -1]) {
          await assert.rejects(sink.entries(partnerId, accountId, { limit }), RangeError, `limit ${limit}`);
        }
        for (const after of [-1, 2.5, Number.POSITIVE_INFINITY]) {
          await assert.rejects(sink.entries(partnerId, accountId, { after, limit: 10 }), RangeError, `after ${after}`);
        }
      });
    });

    test("COPY payloads carry any text, any safe integer and any millisecond to Postgres unchanged", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        const events = oddEvents();
        await sink.deliver(ODD_SHARD, events);
        const rows = await sink.db.select().from(results).where(eq(results.shard, ODD_SHARD)).orderBy(asc(results.seq));
        assert.deepEqual(rows, expectedProjection(events).resultRows, "results rows");
        for (const event of events) {
          for (const change of event.accounts) {
            const { balanceDelta, heldDelta: _heldDelta, ...state } = change;
            assert.deepEqual(
              await sink.account(change.partnerId, change.accountId),
              { ...state, shard: ODD_SHARD, seq: event.seq, updatedMs: event.timeMs },
              `account ${JSON.stringify(change.accountId)}`,
            );
            const page = await sink.entries(change.partnerId, change.accountId, { limit: 10 });
            assert.deepEqual(page.entries, [{
              partnerId: change.partnerId, accountId: change.accountId, shard: ODD_SHARD, seq: event.seq, eventId: event.eventId,
              commandId: event.command.id ?? null, type: event.command.type, amount: balanceDelta, balanceAfter: change.balance,
              timeMs: event.timeMs,
            }], `entries of ${JSON.stringify(change.accountId)}`);
          }
        }
        assert.deepEqual(await sink.verifyProjection(), [], "each odd account's one entry is its balance");
      });
    });

    test("behind the core Relay: every event exactly once across lost acknowledgements", TEST_OPTIONS, async () => {
      await withSink(driver, async ({ sink }) => {
        const journal = new KeepingJournal();
        const shard = await openShard(journal);
        const losing = new LosingAckSink(sink, 3);
        const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
        const relay = await Relay.start({
          ...SIZES, shard: SHARD, sinks: [losing], snapshots: new MemorySnapshotStore(), sleep, retryMs: 2, deliverEventsMax: 50,
          openTail: async (after: number) => new MemoryJournalTail(journal, after),
        });
        try {
          await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(7, 400)]);
          await relay.caughtUp(shard.lastSequence);
          assert.equal(relay.status()[0].failures, 3, "three acknowledgements were lost");
          await assertFullProjection(sink);
        } finally {
          await relay.stop();
          await shard.close();
        }
      });
    });

    if (driver.name.startsWith("postgres")) {
      test("a connection killed in the middle of a deliver: nothing of it stays, and the next deliver works", TEST_OPTIONS, async () => {
        await withSink(driver, async ({ sink, reopen, schema }) => {
          await deliverInChunks(sink, EVENTS.slice(0, 500), [250]);
          const reader = await reopen!();
          const before = await dump(reader);
          const admin = postgres(URL_POSTGRES, { max: 2, onnotice: () => {} });
          const holder = await admin.reserve();
          try {
            // Hold the account batches table, so the deliver writes the results, then waits to copy the account batches.
            await holder`begin`;
            await holder.unsafe(`lock table "${schema!}".hotledger_account_batches in exclusive mode`);
            const outcome = sink.deliver(SHARD, EVENTS.slice(500, 1000)).then(() => "delivered", (error: Error) => error);
            let killed = 0;
            for (let attempt = 0; attempt < 500 && killed === 0; attempt++) {
              const rows = await admin`
                select pg_terminate_backend(pid) from pg_stat_activity
                where wait_event_type = 'Lock' and query like '%hotledger_account_batches%' and pid <> pg_backend_pid()`;
              killed = rows.length;
              if (killed === 0) await new Promise((resolve) => setTimeout(resolve, 10));
            }
            assert.equal(killed, 1, "the deliver was caught waiting on the lock");
            const error = await outcome;
            assert.ok(error instanceof PostgresSinkError, `the deliver failed: ${error}`);
            assert.match(error.message, /events 501\.\.1000 failed: .*CONNECTION_CLOSED/);
          } finally {
            await holder`rollback`;
            holder.release();
            await admin.end();
          }
          assert.deepEqual(await dump(reader), before, "the killed transaction left nothing");
          assert.equal(await sink.cursor(SHARD), 500);
          await deliverInChunks(sink, EVENTS.slice(500), [500]);
          await assertFullProjection(reader);
        });
      });

      test("open fails with a typed error when the server is unreachable, and on a bad schema name", TEST_OPTIONS, async () => {
        await assert.rejects(openPostgresSink({ url: "postgres://postgres@127.0.0.1:1/test", schema: `hotledger_test_${RUN}_x` }), PostgresSinkError);
        await assert.rejects(openPostgresSink({ url: URL_POSTGRES, schema: 'bad"name' }), RangeError);
      });
    }
  });
}

/** Delivers through `inner`, but reports the first `lose` successful deliveries as failed (a lost acknowledgement). */
class LosingAckSink implements OutputSink {
  readonly name: string;

  constructor(
    private readonly inner: OutputSink,
    private lose: number,
  ) {
    this.name = inner.name;
  }

  cursor(shard: number): Promise<number> {
    return this.inner.cursor(shard);
  }

  async deliver(shard: number, events: readonly OutputEvent[]): Promise<void> {
    await this.inner.deliver(shard, events);
    if (this.lose > 0) {
      this.lose--;
      throw new Error("simulated lost acknowledgement");
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The repository root: this file lives in adapters/postgres/. */
const repositoryRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Every file under `directory`, as sorted paths relative to it. */
function listFiles(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: "utf8", withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(directory, join(entry.parentPath, entry.name)))
    .sort();
}

test(
  "adapters/postgres/migrations is what `npm run db:generate` makes of schema.ts",
  { skip: runtimeIsBun ? false : NOT_BUN, timeout: GENERATE_TIMEOUT_MS },
  () => {
    const committed = join(repositoryRoot, "adapters", "postgres", "migrations");
    const scratch = mkdtempSync(join(tmpdir(), "hotledger-migrations-"));
    try {
      const fresh = join(scratch, "migrations");
      cpSync(committed, fresh, { recursive: true });
      const drizzleKit = join(repositoryRoot, "node_modules", ".bin", "drizzle-kit");
      // drizzle-kit puts "./" before --out, so it must be relative; and it exits 0 even when it fails.
      const out = relative(repositoryRoot, fresh);
      const generated = spawnSync(drizzleKit, ["generate", "--dialect", "postgresql", "--schema", "adapters/postgres/schema.ts", "--out", out], {
        cwd: repositoryRoot,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        timeout: GENERATE_TIMEOUT_MS,
      });
      assert.equal(generated.error, undefined, `could not run drizzle-kit: ${generated.error}`);
      assert.equal(generated.status, 0, `drizzle-kit generate failed:\n${generated.stdout}${generated.stderr}`);
      assert.match(generated.stdout, /No schema changes|Your SQL migration file/, `drizzle-kit generate failed:\n${generated.stdout}${generated.stderr}`);
      const stale = "adapters/postgres/migrations is out of date: run `npm run db:generate` and commit the result";
      assert.deepEqual(listFiles(fresh), listFiles(committed), stale);
      for (const file of listFiles(committed)) {
        assert.equal(readFileSync(join(fresh, file), "utf8"), readFileSync(join(committed, file), "utf8"), `${stale} (${file})`);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
);
