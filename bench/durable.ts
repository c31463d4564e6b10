/**
 * How fast is one durable shard (journal fsync per batch, group commit) under many concurrent producers, how fast
 * does it recover, and how long does taking a snapshot stall it? Napkin math in bench/README.md ("Durable shard").
 *
 * Run: `bun bench/durable.ts` (a table), `--json` (one JSON line on stdout), `--only ops,replay,recover,stall`.
 * Producers are async loops in this process (one thread, as the shard is): each submits a request of
 * REQUEST_COMMANDS credits/debits, awaits its durable results, and submits the next. Commit latency is the time
 * from submit to results. Every result code is checked, so no number comes from a broken run.
 * Journals live under the OS temp dir (BENCH_DIR overrides) and are removed at the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Shard, type Command, type ShardOptions } from "../core/index.ts";
import { FileJournal, type FsyncPolicy } from "../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../adapters/snapshot-file/index.ts";
import { median, percentile } from "./children.ts";
import { openAccounts, opsRun, PRODUCERS, REQUEST_COMMANDS, request, type OpsRun } from "./shard-load.ts";

// Bounds: every loop below is bounded by one of these.

/** Timed runs of the ops bench; the median is reported. */
const RUNS = 3;
/** An ops run stops after this many commands... */
const RUN_COMMANDS_MAX = 2_000_000;
/** ...or this long. */
const RUN_MS_MAX = 8_000;
/** Accounts of the ops bench (10k, as bench:core). */
const ACCOUNTS = 10_000;
/** Accounts of the recovery and stall benches. */
const ACCOUNTS_BIG = 1_000_000;
/** Commands in the journal after the snapshot for the recovery bench. RECOVER_COMMANDS env overrides. */
const RECOVER_COMMANDS = Number(process.env.RECOVER_COMMANDS ?? 10_000_000);
/** Snapshots taken in the stall bench; the maximum stall is reported. */
const STALL_SNAPSHOTS = 5;
/** The event-loop lag probe's period while a snapshot is taken. */
const LAG_PROBE_MS = 1;

const argv = process.argv.slice(2);
const jsonMode = argv.includes("--json");
const onlyIndex = argv.indexOf("--only");
const only = onlyIndex >= 0 ? new Set(argv[onlyIndex + 1].split(",")) : undefined;
const wants = (name: string): boolean => only === undefined || only.has(name);

function log(message: string): void {
  if (!jsonMode) process.stderr.write(`${message}\n`);
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`bench assertion: ${message}`);
}

/** Lets the event loop (journal I/O, producers) run between the chunks of a snapshot. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "hotledger-durable-"));
let timeMs = 1_700_000_000_000;

/** A shard on files under `name`, and its journal (closing only the journal = a crash without a final snapshot). */
async function openShard(name: string, fsync: FsyncPolicy, extra: Partial<ShardOptions> = {}) {
  const journal = await FileJournal.open({ directory: join(root, name, "journal"), fsync, log: () => {} });
  const snapshots = await FileSnapshotStore.open({ directory: join(root, name, "snapshots"), log: () => {} });
  const shard = await Shard.open({
    journal,
    snapshots,
    accountsMax: 1 << 14,
    ringSlots: 1 << 13,
    snapshotEveryCommands: Number.MAX_SAFE_INTEGER,
    snapshotEveryMs: Number.MAX_SAFE_INTEGER,
    clock: () => timeMs++,
    yieldToEventLoop,
    ...extra,
  });
  return { shard, journal };
}

async function benchOps() {
  log(`opsPerSec: one shard, fsync per batch, ${PRODUCERS} producers x ${REQUEST_COMMANDS} commands`);
  const { shard, journal } = await openShard("ops", "batch");
  await openAccounts(shard, ACCOUNTS);
  await opsRun(shard, RUNS, ACCOUNTS, RUN_COMMANDS_MAX, RUN_MS_MAX); // the warm-up: run number RUNS
  const runs: OpsRun[] = [];
  for (let run = 0; run < RUNS; run++) {
    runs.push(await opsRun(shard, run, ACCOUNTS, RUN_COMMANDS_MAX, RUN_MS_MAX));
    const last = runs[run];
    log(`  run ${run + 1}: ${Math.round(last.opsPerSec)}/s, commit p50 ${percentile(last.latencies, last.latencyCount, 50).toFixed(2)} ms p99 ${percentile(last.latencies, last.latencyCount, 99).toFixed(2)} ms`);
  }
  const sequence = shard.lastSequence;
  // Close only the journal: keep every record for the replay bench (close() would snapshot and compact).
  await journal.close();
  const byOps = [...runs].sort((a, b) => a.opsPerSec - b.opsPerSec);
  const middle = byOps[byOps.length >> 1];
  return {
    opsPerSec: middle.opsPerSec,
    commitP50Ms: percentile(middle.latencies, middle.latencyCount, 50),
    commitP99Ms: percentile(middle.latencies, middle.latencyCount, 99),
    runs: runs.map((run) => Math.round(run.opsPerSec)),
    journaledCommands: sequence,
  };
}

/** Recovery speed: reopen the ops journal with no snapshot, so every command is replayed. */
async function benchReplay(journaledCommands: number) {
  log("replayOpsPerSec: reopen the ops bench's journal without snapshots");
  const speeds: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const journal = await FileJournal.open({ directory: join(root, "ops", "journal"), fsync: "never", log: () => {} });
    const snapshots = await FileSnapshotStore.open({ directory: join(root, `replay-empty-${run}`), log: () => {} });
    const begin = performance.now();
    const shard = await Shard.open({ journal, snapshots, accountsMax: 1 << 14, ringSlots: 1 << 13 });
    const elapsed = performance.now() - begin;
    assert(shard.lastSequence === journaledCommands, `replayed to ${shard.lastSequence}, want ${journaledCommands}`);
    speeds.push((shard.lastSequence / elapsed) * 1000);
    log(`  run ${run + 1}: ${shard.lastSequence} commands in ${elapsed.toFixed(0)} ms = ${Math.round(speeds[run])}/s`);
    await journal.close();
  }
  return median(speeds);
}

/** Build 1M accounts + snapshot + RECOVER_COMMANDS journaled commands (fsync "never" to build fast), then recover. */
async function benchRecover() {
  log(`recover: 1M accounts in a snapshot, then ${RECOVER_COMMANDS} journaled commands`);
  const big = { accountsMax: 1 << 20, ringSlots: 1 << 13 };
  const { shard, journal: crashedJournal } = await openShard("recover", "never", big);
  await openAccounts(shard, ACCOUNTS_BIG);
  await shard.takeSnapshot();
  let sent = 0;
  let index = 0;
  while (sent < RECOVER_COMMANDS) {
    const inFlight: Promise<unknown>[] = [];
    for (let p = 0; p < PRODUCERS && sent < RECOVER_COMMANDS; p++, sent += REQUEST_COMMANDS) {
      inFlight.push(shard.submit(request(0, index++, ACCOUNTS_BIG)));
    }
    await Promise.all(inFlight);
  }
  const hash = await shard.stateHash();
  const sequence = shard.lastSequence;
  // A crash: the shard is dropped without close(), so no final snapshot (only its file handle is closed).
  await crashedJournal.close();
  const journal = await FileJournal.open({ directory: join(root, "recover", "journal"), fsync: "never", log: () => {} });
  const snapshots = await FileSnapshotStore.open({ directory: join(root, "recover", "snapshots"), log: () => {} });
  const begin = performance.now();
  const recovered = await Shard.open({ journal, snapshots, yieldToEventLoop, ...big });
  const elapsed = performance.now() - begin;
  assert(recovered.lastSequence === sequence && (await recovered.stateHash()) === hash, "recovery gives the same state");
  log(`  recovered ${sequence} commands (1M accounts) in ${elapsed.toFixed(0)} ms`);
  return { recoverMs: elapsed, shard: recovered, journal };
}

/** The longest the event loop (and so the processor) is blocked while a snapshot of 1M accounts is taken. */
async function benchStall(shard: Shard) {
  log("snapshotStallMsMax: snapshots at 1M accounts");
  let stallMax = 0;
  for (let run = 0; run < STALL_SNAPSHOTS; run++) {
    let lagMax = 0;
    let last = performance.now();
    const probe = setInterval(() => {
      const now = performance.now();
      lagMax = Math.max(lagMax, now - last - LAG_PROBE_MS);
      last = now;
    }, LAG_PROBE_MS);
    const begin = performance.now();
    const pending = shard.takeSnapshot();
    const synchronousMs = performance.now() - begin;
    await pending;
    clearInterval(probe);
    const stall = Math.max(synchronousMs, lagMax);
    stallMax = Math.max(stallMax, stall);
    log(`  snapshot ${run + 1}: synchronous ${synchronousMs.toFixed(1)} ms, longest event-loop stall ${lagMax.toFixed(1)} ms`);
  }
  return stallMax;
}

async function main(): Promise<void> {
  try {
    const ops = wants("ops") || wants("replay") ? await benchOps() : undefined;
    const replayOpsPerSec = wants("replay") && ops ? await benchReplay(ops.journaledCommands) : undefined;
    const recover = wants("recover") || wants("stall") ? await benchRecover() : undefined;
    const stall = wants("stall") && recover ? await benchStall(recover.shard) : undefined;
    await recover?.journal.close();
    const result = {
      opsPerSec: ops ? Math.round(ops.opsPerSec) : null,
      commitP50Ms: ops ? Number(ops.commitP50Ms.toFixed(2)) : null,
      commitP99Ms: ops ? Number(ops.commitP99Ms.toFixed(2)) : null,
      replayOpsPerSec: replayOpsPerSec === undefined ? null : Math.round(replayOpsPerSec),
      recover1MAccounts10MCommandsMs: recover ? Math.round(recover.recoverMs) : null,
      recoverCommands: RECOVER_COMMANDS,
      snapshotStallMsMax: stall === undefined ? null : Number(stall.toFixed(1)),
      producers: PRODUCERS,
      requestCommands: REQUEST_COMMANDS,
      opsRuns: ops?.runs ?? null,
      bunVersion: process.versions.bun ?? null,
    };
    if (jsonMode) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${Object.entries(result).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("\n")}\n`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
