/**
 * What do the outputs cost, and how fast do they deliver? Napkin math in bench/README.md ("Outputs").
 *
 * Run: `bun bench/outputs.ts` (a table) or `--json` (one JSON line on stdout). `--envelope` publishes JetStream
 * batch envelopes instead of one message per event. `--sinks-only` skips the engine's runs with and without the
 * relay (the warm-up's journal, ~2M+ commands, is what the sinks deliver; the engine fields are null).
 *
 * - engineOpsPerSecWithout / engineOpsPerSecWithOutputs: one durable shard in this process (fsync per batch,
 *   bench/shard-load.ts: 32 producers x 100 commands), with the relay process (examples/gateway/relay.ts: Postgres
 *   + JetStream) stopped (SIGSTOP) and then running (SIGCONT) as it tails the journal, alternated RUNS times in the
 *   same run; medians. One relay process serves every run, as deployed (nice 19, its CPU budget at the defaults:
 *   10% of a CPU while the journal grows fast), so on this 2-core machine it falls behind under the shard's full
 *   load and catches up after: the JSON line also reports the rate it delivered to Postgres meanwhile
 *   (`relayPostgresEventsPerSecBesideEngine`) and how far behind it was at the end of the last run
 *   (`relayLagEventsAtEnd`).
 * - jetstreamEventsPerSec / postgresEventsPerSec: after the engine runs, the relay process delivers the journal
 *   (millions of events) to one sink at a time from a fresh cursor; the rate is read off the sink's own cursor,
 *   from its first movement until SINK_EVENTS_MAX events or SINK_MS_MAX. It includes deriving the events from the
 *   journal (the follower engine), encoding and the sink's round trips: the end-to-end rate of a lagging sink.
 *
 * Postgres: the machine's server (127.0.0.1:5432, fsync on), a fresh database per measurement, dropped after.
 * NATS: a private nats-server with a file store (runtime-tests/services.ts), removed after.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Shard } from "../core/index.ts";
import { FileJournal, keepJournalForOutputs, readJournalFloor } from "../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../adapters/snapshot-file/index.ts";
import { HEADER_LAST_SEQ, STREAM_DEFAULT, SUBJECT_PREFIX_DEFAULT } from "../adapters/jetstream/index.ts";
import { loadConfig } from "../examples/gateway/config.ts";
import { PrivateNats } from "../runtime-tests/services.ts";
import { loadAverage, median, startChild, stopChild, type Child } from "./children.ts";
import { openAccounts, opsRun } from "./shard-load.ts";

// Bounds: every loop below is bounded by one of these.
/** Alternations of (without, with); medians are reported. */
const RUNS = 3;
/** One engine run: at most this long or this many commands. */
const RUN_MS = 5_000;
const RUN_COMMANDS_MAX = 5_000_000;
const ACCOUNTS = 10_000;
/** A sink measurement stops after this many events or this long. */
const SINK_EVENTS_MAX = 2_000_000;
const SINK_MS_MAX = 20_000;
const POLL_MS = 100;

const argv = process.argv.slice(2);
const jsonMode = argv.includes("--json");
const envelope = argv.includes("--envelope");
const sinksOnly = argv.includes("--sinks-only");
const BASE_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

function log(message: string): void {
  if (!jsonMode) process.stderr.write(`${message}\n`);
}

const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "hotledger-outputs-"));
const dataDirectory = join(root, "data");
const admin = postgres(BASE_DATABASE_URL, { max: 1, onnotice: () => {} });
const databases: string[] = [];

/** A fresh database on the machine's Postgres; its URL. */
async function freshDatabase(): Promise<string> {
  const name = `hotledger_bench_${process.pid}_${databases.length}`;
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.unsafe(`create database ${name}`);
  databases.push(name);
  const url = new URL(BASE_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * The relay process for shard 0 of `dataDirectory`, with `outputs`. Beside the engine it runs at its default
 * priority (nice 19: the ledger first); alone, measuring a sink, at nice 0.
 */
function startRelay(outputs: string, databaseUrl: string, natsUrl: string, nice?: number): Promise<{ child: Child }> {
  return startChild("examples/gateway/relay.ts", [], {
    ...(nice === undefined ? {} : { HOTLEDGER_RELAY_NICE: String(nice) }),
    HOTLEDGER_DATA: dataDirectory,
    HOTLEDGER_SHARDS: "1",
    HOTLEDGER_OUTPUTS: outputs,
    DATABASE_URL: databaseUrl,
    NATS_URL: natsUrl,
    HOTLEDGER_JETSTREAM_ENVELOPE: envelope ? "1" : "0",
  }, /hotledger relay: running/);
}

/** Events per second read off a sink's cursor: from its first movement to SINK_EVENTS_MAX or SINK_MS_MAX. */
async function sinkRate(cursor: () => Promise<number>, total: number): Promise<{ eventsPerSec: number; events: number }> {
  const target = Math.min(total, SINK_EVENTS_MAX);
  const startDeadline = Date.now() + 60_000;
  let first = await cursor();
  while (first === 0) {
    if (Date.now() > startDeadline) throw new Error("the sink never moved");
    await Bun.sleep(10);
    first = await cursor();
  }
  const begin = performance.now();
  let at = first;
  while (at < target && performance.now() - begin < SINK_MS_MAX) {
    await Bun.sleep(POLL_MS);
    at = await cursor();
  }
  const elapsed = performance.now() - begin;
  return { eventsPerSec: ((at - first) / elapsed) * 1000, events: at - first };
}

/** Shard 0's cursor in a Postgres projection (0 before the sink's first delivery). */
async function postgresCursor(sql: postgres.Sql): Promise<number> {
  const rows = await sql<{ seq: string }[]>`select seq from hotledger_cursors where shard = 0`.catch(() => []);
  return Number(rows[0]?.seq ?? 0);
}

async function main(): Promise<void> {
  const config = loadConfig({ HOTLEDGER_DATA: dataDirectory, HOTLEDGER_SHARDS: "1" });
  const nats = await PrivateNats.create();
  const journalDirectory = join(dataDirectory, "shard-0", "journal");
  // The relay starts after millions of commands: as the gateway does when outputs are configured, keep the journal.
  await keepJournalForOutputs(journalDirectory);
  const journal = await FileJournal.open({ directory: journalDirectory, fsync: "batch", log: () => {} });
  let timeMs = 1_700_000_000_000;
  const shard = await Shard.open({
    journal,
    snapshots: await FileSnapshotStore.open({ directory: join(dataDirectory, "shard-0", "snapshots"), log: () => {} }),
    journalFloor: () => readJournalFloor(journalDirectory),
    // The relay re-applies the journal with the gateway's options: the shard must run with the same.
    accountsMax: config.accountsMax,
    idempotencyCommandsMax: config.idempotencyCommandsMax,
    snapshotEveryCommands: config.snapshotEveryCommands,
    snapshotEveryMs: Number.MAX_SAFE_INTEGER,
    clock: () => timeMs++,
    yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
  });
  let relay: Child | undefined;
  try {
    await openAccounts(shard, ACCOUNTS);
    await opsRun(shard, 2 * RUNS, ACCOUNTS, RUN_COMMANDS_MAX, 2_000); // the warm-up: run number 2 x RUNS
    const databaseUrl = await freshDatabase();
    const without: number[] = [];
    const withOutputs: number[] = [];
    // What the relay delivered to Postgres while the engine ran beside it: it takes what CPU is left, falls
    // behind under the engine's full load, and catches up afterwards.
    const besideSql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const besideCursor = () => postgresCursor(besideSql);
    const besideRates: number[] = [];
    let lagAtEnd = 0;
    // One relay process for all the runs, as deployed: stopped (SIGSTOP) while the engine runs without it, so a
    // run with it measures a relay at work, not a relay starting (restoring its follower, reaching its cursors).
    if (!sinksOnly) relay = (await startRelay("postgres,jetstream", databaseUrl, nats.url)).child;
    for (let run = 0; run < (sinksOnly ? 0 : RUNS); run++) {
      relay!.proc.kill("SIGSTOP");
      without.push((await opsRun(shard, 2 * run, ACCOUNTS, RUN_COMMANDS_MAX, RUN_MS)).opsPerSec);
      relay!.proc.kill("SIGCONT");
      const cursorBefore = await besideCursor();
      const begin = performance.now();
      withOutputs.push((await opsRun(shard, 2 * run + 1, ACCOUNTS, RUN_COMMANDS_MAX, RUN_MS)).opsPerSec);
      const cursorAfter = await besideCursor();
      besideRates.push(((cursorAfter - cursorBefore) / (performance.now() - begin)) * 1000);
      lagAtEnd = shard.lastSequence - cursorAfter;
      log(`run ${run + 1}: without outputs ${Math.round(without[run])}/s, with ${Math.round(withOutputs[run])}/s; `
        + `the relay delivered ${Math.round(besideRates[run])} events/s to Postgres meanwhile, ${lagAtEnd} behind at the end`);
    }
    await besideSql.end();
    await stopChild(relay);
    relay = undefined;
    const total = shard.lastSequence;
    log(`journal: ${total} commands`);

    // JetStream alone, from an empty stream.
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    // (With --sinks-only no relay has created it yet: the private server is fresh.)
    if (!sinksOnly) await jsm.streams.delete(STREAM_DEFAULT);
    relay = (await startRelay("jetstream", "", nats.url, 0)).child;
    const jetstreamCursor = async () => {
      const message = await jsm.streams.getMessage(STREAM_DEFAULT, { last_by_subj: `${SUBJECT_PREFIX_DEFAULT}.0` }).catch(() => null);
      return Number(message?.header.get(HEADER_LAST_SEQ) ?? 0);
    };
    const jetstream = await sinkRate(jetstreamCursor, total);
    log(`jetstream (${envelope ? "envelopes" : "one message per event"}): ${jetstream.events} events at ${Math.round(jetstream.eventsPerSec)}/s`);
    await stopChild(relay);
    relay = undefined;
    await nc.close();

    // Postgres alone, into a fresh database.
    const sinkDatabase = await freshDatabase();
    relay = (await startRelay("postgres", sinkDatabase, nats.url, 0)).child;
    const sql = postgres(sinkDatabase, { max: 1, onnotice: () => {} });
    const projection = await sinkRate(() => postgresCursor(sql), total);
    log(`postgres: ${projection.events} events at ${Math.round(projection.eventsPerSec)}/s`);
    await stopChild(relay);
    relay = undefined;
    await sql.end();

    const engineOpsPerSecWithout = sinksOnly ? NaN : median(without);
    const engineOpsPerSecWithOutputs = sinksOnly ? NaN : median(withOutputs);
    const result = {
      jetstreamEventsPerSec: Math.round(jetstream.eventsPerSec),
      postgresEventsPerSec: Math.round(projection.eventsPerSec),
      engineOpsPerSecWithOutputs: Math.round(engineOpsPerSecWithOutputs),
      engineOpsPerSecWithout: Math.round(engineOpsPerSecWithout),
      ratioWithToWithout: Number((engineOpsPerSecWithOutputs / engineOpsPerSecWithout).toFixed(3)),
      relayPostgresEventsPerSecBesideEngine: sinksOnly ? null : Math.round(median(besideRates)),
      relayLagEventsAtEnd: lagAtEnd,
      jetstreamMode: envelope ? "envelope" : "per-event",
      runsWithout: without.map(Math.round),
      runsWith: withOutputs.map(Math.round),
      journaledCommands: total,
      loadAverage: loadAverage(),
      bunVersion: process.versions.bun ?? null,
    };
    if (jsonMode) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${Object.entries(result).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("\n")}\n`);
  } finally {
    await stopChild(relay);
    await journal.close();
    await nats.destroy();
    for (const name of databases) await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
