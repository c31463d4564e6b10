/**
 * How many output events per second does the Postgres sink project into a real Postgres, in the relay's
 * 5,000-event batches? Prints one JSON line: {"postgresEventsPerSec": median, ...}.
 *
 * Run: `bun bench/postgres-sink.ts` (POSTGRES_URL overrides postgres://postgres@127.0.0.1:5432/test).
 *
 * Workload. EVENTS events from a real Shard and EventDeriver, untimed: accounts over 16 partners opened and
 * funded, then credits, debits, transfers and holds on random accounts (every one accepted). Two account counts:
 * - `postgresEventsPerSec`: 10,000 accounts. A 5,000-event batch holds 5,000 results rows, ~5,500 entries rows (a
 *   transfer is two) and ~4,500 distinct accounts to upsert, all at random places in the B-trees.
 * - `postgresHotEventsPerSec`: 128 accounts (a gateway's few busy settlement accounts): the same results and
 *   entries, but only 128 account upserts per batch.
 * Each timed run delivers every event, batch after batch as the relay does, into a fresh schema (dropped after),
 * and checks the projection adds up, so no number comes from a run that wrote the wrong thing. After each run the
 * yardstick (`yardstickRowsPerSec`) measures how fast this Postgres inserts narrow rows it makes itself; the ratios
 * to it compare across machines and neighbours better than the absolute numbers.
 *
 * Napkin math (before measuring). 2 vCPU shared by Bun and the one Postgres backend a deliver runs on. Per batch,
 * Bun builds 32 array literals (~1.5 MB of text, ~15 ms); Postgres parses them and inserts ~15,000 rows, each into
 * a heap and a B-tree primary key, the upserts also finding and updating an existing row: at ~2-4 us per row,
 * 30-60 ms, plus a WAL flush at commit (~1 ms). ~45-75 ms per batch: 65,000-110,000 events/s.
 *
 * Measured (2 vCPU Xeon, shared with other jobs, load average 2.2-2.8, Postgres 15, 3 invocations of 3 runs):
 * 10,000 accounts 22,800-25,900 events/s (medians; runs 20,300-26,700), 128 accounts 31,200-43,800, yardstick
 * 218,000-245,000 rows/s: ratios 0.10-0.11 and 0.14-0.18. The napkin math was 3-4x optimistic about Postgres: on
 * this machine the yardstick's trivial rows already cost ~4 us each, a results or entries row ~6-10 us
 * (auto_explain: results ~30 ms, entries ~55-65 ms, 4,500 upserts ~55 ms per batch), and Bun's encoding (~20 ms)
 * does not overlap with them. At these ratios 100,000 events/s needs a Postgres that inserts ~1M yardstick rows/s.
 */
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import postgres from "postgres";
import { EventDeriver, Engine, Shard, type Command, type OutputEvent } from "../core/index.ts";
import { MemoryJournal, MemorySnapshotStore } from "../core/testing/memory-ports.ts";
import { seededRandom } from "../core/testing/random.ts";
import { openPostgresSink } from "../adapters/postgres/index.ts";

/** Events delivered per run. */
const EVENTS = 200_000;
/** Events per deliver: the relay's default. */
const BATCH_EVENTS = 5_000;
/** Timed runs; the median is reported. */
const RUNS = 3;
/** Accounts of the two workloads: multiples of PARTNERS, so that a transfer stays within one partner. */
const ACCOUNTS = 10_000;
const ACCOUNTS_HOT = 128;
const PARTNERS = 16;
/** Commands per submit (at most SUBMIT_COMMANDS_MAX). */
const SUBMIT_COMMANDS = 1_000;
const SHARD = 0;
const SIZES = { accountsMax: 16_384, partnersMax: 64, holdsMax: 1 << 17, idempotencyCommandsMax: 1 << 18, ringSlots: 4096 };

const url = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`bench assertion: ${message}`);
}

/** The workload's commands over `accounts` accounts: openings, funding, then the money-moving mix, EVENTS in all. */
function workload(accounts: number): Command[] {
  const random = seededRandom(42);
  const partnerOf = (account: number) => `partner-${account % PARTNERS}`;
  const commands: Command[] = [];
  for (let account = 0; account < accounts; account++) {
    commands.push({ type: "openAccount", id: `open-${account}`, partnerId: partnerOf(account), accountId: `account-${account}`, currency: "USD" });
  }
  for (let account = 0; account < accounts; account++) {
    commands.push({ type: "credit", id: `fund-${account}`, partnerId: partnerOf(account), accountId: `account-${account}`, amount: 1_000_000_000 });
  }
  for (let n = 0; commands.length < EVENTS; n++) {
    const account = Math.floor(random() * accounts);
    const partnerId = partnerOf(account);
    const accountId = `account-${account}`;
    const amount = 1 + Math.floor(random() * 1000);
    const roll = random();
    const id = `command-${n}`;
    if (roll < 0.4) commands.push({ type: "credit", id, partnerId, accountId, amount });
    else if (roll < 0.7) commands.push({ type: "debit", id, partnerId, accountId, amount });
    else if (roll < 0.9) {
      // Another account of the same partner: accounts of partner p are p, p + PARTNERS, p + 2 PARTNERS, ...
      const other = (account + PARTNERS * (1 + Math.floor(random() * (accounts / PARTNERS - 1)))) % accounts;
      commands.push({ type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId: `account-${other}`, amount });
    } else commands.push({ type: "hold", id, partnerId, accountId, amount });
  }
  return commands;
}

/** Keeps every record (the shard compacts after its closing snapshot), so the events derive from the start. */
class KeepingJournal extends MemoryJournal {
  override async compact(): Promise<void> {}
}

/** Runs the workload through a shard and derives its events from the journal, as a relay would. */
async function generateEvents(accounts: number): Promise<OutputEvent[]> {
  const journal = new KeepingJournal();
  let now = 1_700_000_000_000;
  const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => now++, snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12 });
  const commands = workload(accounts);
  for (let first = 0; first < commands.length; first += SUBMIT_COMMANDS) {
    const results = await shard.submit(commands.slice(first, first + SUBMIT_COMMANDS));
    for (const result of results) check(result.code === "ok", `command ${result.id}: ${result.code}`);
  }
  await shard.close();
  const deriver = new EventDeriver(new Engine(SIZES), SHARD);
  const events: OutputEvent[] = [];
  for (const record of journal.records) deriver.apply(record, events);
  check(events.length === EVENTS, `${events.length} events`);
  return events;
}

/** Delivers `events` into a fresh schema in BATCH_EVENTS batches; returns events per second. */
async function run(events: readonly OutputEvent[]): Promise<number> {
  const schema = `hotledger_bench_${randomBytes(6).toString("hex")}`;
  const sink = await openPostgresSink({ url, schema });
  try {
    const startMs = performance.now();
    for (let first = 0; first < events.length; first += BATCH_EVENTS) {
      await sink.deliver(SHARD, events.slice(first, first + BATCH_EVENTS));
    }
    const elapsedMs = performance.now() - startMs;
    check((await sink.cursor(SHARD)) === events.length, "the cursor reached the last event");
    check((await sink.verifyProjection()).length === 0, "entries add up to every balance");
    return Math.round(events.length / (elapsedMs / 1000));
  } finally {
    await sink.close();
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop schema if exists "${schema}" cascade`);
    await admin.end();
  }
}

/**
 * The yardstick: rows per second Postgres inserts when it has no input to parse, `INSERT ... SELECT FROM
 * generate_series` of BATCH_EVENTS narrow rows (a bigint primary key, a text and two bigints) per statement, in a
 * fresh schema. On a shared machine its absolute number moves with the neighbours, so the sink's rate is reported
 * as a ratio to it too, measured right after it.
 */
async function yardstick(): Promise<number> {
  const schema = `hotledger_bench_${randomBytes(6).toString("hex")}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create schema "${schema}"; create table "${schema}".yardstick (seq bigint primary key, command_id text, amount bigint, balance bigint)`);
    const startMs = performance.now();
    for (let first = 1; first <= EVENTS; first += BATCH_EVENTS) {
      await admin.unsafe(
        `insert into "${schema}".yardstick select i, 'command-' || i, i, i from generate_series($1::bigint, $2::bigint) as i`,
        [first, first + BATCH_EVENTS - 1],
      );
    }
    return Math.round(EVENTS / ((performance.now() - startMs) / 1000));
  } finally {
    await admin.unsafe(`drop schema if exists "${schema}" cascade`);
    await admin.end();
  }
}

/** Median, min and max of `values`. */
function spreadOf(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1] };
}

/** RUNS timed runs over the workload with `accounts` accounts, each followed by a yardstick run. */
async function measure(accounts: number): Promise<{ rates: number[]; yardsticks: number[] }> {
  const events = await generateEvents(accounts);
  const rates: number[] = [];
  const yardsticks: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rates.push(await run(events));
    yardsticks.push(await yardstick());
    process.stderr.write(`${accounts} accounts, run ${i + 1}: ${rates[i]} events/s (yardstick ${yardsticks[i]} rows/s)\n`);
  }
  return { rates, yardsticks };
}

const spread = await measure(ACCOUNTS);
const hot = await measure(ACCOUNTS_HOT);
const rate = spreadOf(spread.rates);
const hotRate = spreadOf(hot.rates);
const yardstickRowsPerSec = spreadOf([...spread.yardsticks, ...hot.yardsticks]).median;
console.log(JSON.stringify({
  postgresEventsPerSec: rate.median,
  postgresEventsPerSecMin: rate.min,
  postgresEventsPerSecMax: rate.max,
  postgresHotEventsPerSec: hotRate.median,
  postgresHotEventsPerSecMin: hotRate.min,
  postgresHotEventsPerSecMax: hotRate.max,
  yardstickRowsPerSec,
  ratioEventsToYardstick: Number((rate.median / yardstickRowsPerSec).toFixed(3)),
  ratioHotEventsToYardstick: Number((hotRate.median / yardstickRowsPerSec).toFixed(3)),
  events: EVENTS,
  batchEvents: BATCH_EVENTS,
  loadAverage: loadavg()[0],
}));
