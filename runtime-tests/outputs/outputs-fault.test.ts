// Proves the outputs' promise end to end, with real processes and real servers: the gateway (two shards, journals
// on disk) takes a steady stream of commands over HTTP while a separate relay process (examples/gateway/relay.ts)
// feeds a Postgres projection and a JetStream stream. Under that load the relay is killed with SIGKILL and
// restarted, nats-server is stopped for 3 s, Postgres is stopped for 3 s, and the gateway itself is killed with
// SIGKILL and recovered. After the load stops and the relay catches up: every event is in Postgres exactly once in
// effect (one result row per sequence, the projected accounts equal the engine's, every account's entries add up
// to its balance), and every event id is in the stream exactly once, in sequence order per shard.
//
// Postgres and nats-server here are private instances (runtime-tests/services.ts) so that stopping them touches
// nothing else. Needs Bun (the gateway runs on it). Skipped with a message when the server binaries are missing,
// except in CI (CI=true), where that fails.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Shard } from "../../core/index.ts";
import { randomWorkload, WORKLOAD_ACCOUNTS, WORKLOAD_PARTNERS, workloadOpenings, type WorkloadBatch } from "../../core/testing/workload.ts";
import { FileJournal } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { openPostgresSink } from "../../adapters/postgres/index.ts";
import { HEADER_LAST_SEQ, STREAM_DEFAULT, SUBJECT_PREFIX_DEFAULT } from "../../adapters/jetstream/index.ts";
import { hashKey } from "../../transports/auth.ts";
import { loadConfig } from "../../examples/gateway/config.ts";
import { freePort, PrivateNats, PrivatePostgres, privateServicesAvailable, skipUnlessAvailable } from "../services.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SHARDS = 2;
const INTERNAL_KEY = "fault-test-internal-key";
/** Concurrent HTTP load loops. */
const LOAD_WORKERS = 8;
/** Batches the load has to send at most (it is stopped long before). */
const LOAD_BATCHES = 40_000;
/** The pause between faults, with the load running. */
const PHASE_MS = 1_500;
/** How long each server stays down. */
const OUTAGE_MS = 3_000;
/** Bounds: process start, catch-up after the load, the whole test. */
const READY_MS_MAX = 60_000;
const CATCH_UP_MS_MAX = 90_000;
const TEST_MS_MAX = 300_000;

const runtimeIsBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const services = privateServicesAvailable();
const skip = !runtimeIsBun
  ? "needs Bun"
  : skipUnlessAvailable(services.ok, "private Postgres and nats-server can be started", `${services.ok ? "" : services.reason}; output fault test skipped`);

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What each child printed (the last 20,000 characters), for failure messages. */
const outputs = new Map<ChildProcess, () => string>();

/** A child `bun <script>` with `env`; resolves once a line matches `ready`. */
async function startProcess(script: string, env: Record<string, string>, ready: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, [script], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  cleanups.push(async () => void child.kill("SIGKILL"));
  let output = "";
  outputs.set(child, () => output);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready after ${READY_MS_MAX} ms:\n${output}`)), READY_MS_MAX);
    const onData = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Drop the "exited before it was ready" listener first: this exit is wanted.
  child.removeAllListeners("exit");
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  await exited;
}

/** What the test is doing, with the time since it started (on stderr, for a run that fails or hangs). */
const begin = Date.now();
function step(what: string): void {
  process.stderr.write(`[outputs fault test +${((Date.now() - begin) / 1000).toFixed(1)} s] ${what}\n`);
}

/** LOAD_WORKERS loops posting workload batches; a batch is re-sent (same ids) until it gets a 200 (bounded). */
function startLoad(base: string, batches: readonly WorkloadBatch[]) {
  const deadline = Date.now() + TEST_MS_MAX / 2;
  let next = 0;
  let stopped = false;
  let acked = 0;
  let retries = 0;
  const worker = async () => {
    while (!stopped && next < batches.length) {
      const batch = batches[next++];
      for (;;) {
        try {
          const response = await fetch(`${base}/v1/commands`, {
            method: "POST",
            headers: { authorization: `Bearer ${INTERNAL_KEY}`, "content-type": "application/json" },
            body: JSON.stringify({ commands: batch.commands, atomic: batch.atomic }),
          });
          const body = await response.text();
          if (response.status === 200) {
            acked++;
            break;
          }
          assert.equal(response.status, 503, `unexpected ${response.status}: ${body}`);
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          // The gateway is down (killed): retry the same batch once it is back.
        }
        retries++;
        assert.ok(Date.now() < deadline, "a batch was refused until the load's deadline");
        await sleep(50);
      }
    }
  };
  const workers = Array.from({ length: LOAD_WORKERS }, worker);
  return {
    async stop() {
      stopped = true;
      await Promise.all(workers);
      return { acked, retries };
    },
  };
}

/** Each shard's last sequence, from the gateway's /metrics. */
async function lastSequences(base: string): Promise<number[]> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Array.from({ length: SHARDS }, (_, shard) => {
    const match = new RegExp(`^hotledger_last_sequence\\{shard="${shard}"\\} (\\d+)$`, "m").exec(text);
    assert.ok(match !== null, `no last sequence for shard ${shard} in /metrics`);
    return Number(match[1]);
  });
}

test("outputs survive a relay kill, a NATS outage, a Postgres outage and a gateway kill, exactly once in effect", { skip, timeout: TEST_MS_MAX }, async () => {
  const pg = await PrivatePostgres.create();
  cleanups.push(() => pg.destroy());
  const nats = await PrivateNats.create();
  cleanups.push(() => nats.destroy());
  const directory = mkdtempSync(join(tmpdir(), "hotledger-outputs-fault-"));
  cleanups.push(async () => rmSync(directory, { recursive: true, force: true }));
  const configPath = join(directory, "config.json");
  writeFileSync(configPath, JSON.stringify({ keys: [{ sha256: hashKey(INTERNAL_KEY), internal: "fault-test" }] }));
  const port = await freePort();
  const env: Record<string, string> = {
    HOTLEDGER_CONFIG: configPath,
    HOTLEDGER_DATA: join(directory, "data"),
    HOTLEDGER_PORT: String(port),
    HOTLEDGER_SHARDS: String(SHARDS),
    HOTLEDGER_WORKERS: "0",
    HOTLEDGER_RELAY: "separate",
    HOTLEDGER_OUTPUTS: "postgres,jetstream",
    // Not the default 19: the relay must be delivering, not starved by the load, when the faults hit it.
    HOTLEDGER_RELAY_NICE: "10",
    DATABASE_URL: pg.url,
    NATS_URL: nats.url,
  };
  const base = `http://127.0.0.1:${port}`;
  step("services up; starting the gateway and the relay");
  let gateway = await startProcess("examples/gateway/index.ts", env, /listening on/);
  let relay = await startProcess("examples/gateway/relay.ts", env, /hotledger relay: running/);

  const openings = workloadOpenings();
  for (const batch of openings) {
    const response = await fetch(`${base}/v1/commands`, {
      method: "POST",
      headers: { authorization: `Bearer ${INTERNAL_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ commands: batch.commands }),
    });
    assert.equal(response.status, 200);
  }
  const load = startLoad(base, randomWorkload(Date.now() % 100_000, LOAD_BATCHES));

  await sleep(PHASE_MS);
  step("SIGKILL the relay, restart it");
  await kill(relay, "SIGKILL");
  await sleep(500);
  relay = await startProcess("examples/gateway/relay.ts", env, /hotledger relay: running/);

  await sleep(PHASE_MS);
  step("stop nats-server");
  await nats.stop();
  await sleep(OUTAGE_MS);
  await nats.start();
  step("nats-server back");

  await sleep(PHASE_MS);
  step("stop Postgres");
  await pg.stop();
  await sleep(OUTAGE_MS);
  await pg.start();
  step("Postgres back");

  await sleep(PHASE_MS);
  step("SIGKILL the gateway, restart it");
  await kill(gateway, "SIGKILL");
  gateway = await startProcess("examples/gateway/index.ts", env, /listening on/);
  await sleep(PHASE_MS);
  step("stopping the load");
  const { acked, retries } = await load.stop();
  step(`load stopped: ${acked} batches acknowledged, ${retries} retries`);
  assert.ok(acked > 500, `the load got through (${acked} batches acknowledged, ${retries} retries)`);

  // Catch-up: both sinks reach every shard's last sequence.
  const last = await lastSequences(base);
  const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
  cleanups.push(() => sql.end());
  const nc = await connect({ servers: nats.url });
  cleanups.push(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + CATCH_UP_MS_MAX;
  for (;;) {
    const rows = await sql<{ shard: number; seq: string }[]>`select shard, seq from hotledger_cursors`;
    const postgresAt = last.map((_, shard) => Number(rows.find((row) => row.shard === shard)?.seq ?? 0));
    const streamAt = await Promise.all(last.map(async (_, shard) => {
      const message = await jsm.streams.getMessage(STREAM_DEFAULT, { last_by_subj: `${SUBJECT_PREFIX_DEFAULT}.${shard}` }).catch(() => null);
      return Number(message?.header.get(HEADER_LAST_SEQ) ?? 0);
    }));
    if (last.every((sequence, shard) => postgresAt[shard] === sequence && streamAt[shard] === sequence)) break;
    assert.ok(Date.now() < deadline, `not caught up: shards at ${last}, postgres ${postgresAt}, stream ${streamAt}; the relay said:\n${outputs.get(relay)?.()}`);
    await sleep(200);
  }
  step(`caught up at ${last}; verifying`);
  await kill(relay, "SIGTERM");
  await kill(gateway, "SIGTERM");

  // Postgres: one result per sequence, accounts equal to the engine's, entries that add up.
  const results = await sql<{ shard: number; rows: string; distinct: string; low: string; high: string }[]>`
    select shard, count(*) as rows, count(distinct seq) as distinct, min(seq) as low, max(seq) as high
    from hotledger_results group by shard order by shard`;
  assert.deepEqual(
    results.map((row) => [row.shard, Number(row.rows), Number(row.distinct), Number(row.low), Number(row.high)]),
    last.map((sequence, shard) => [shard, sequence, sequence, 1, sequence]).filter((row) => row[1] > 0),
  );
  const projection = await openPostgresSink({ url: pg.url });
  cleanups.push(() => projection.close());
  assert.deepEqual(await projection.verifyProjection(), [], "every account's entries add up to its balance");
  const config = loadConfig(env);
  const journals: FileJournal[] = [];
  const engines = await Promise.all(Array.from({ length: SHARDS }, async (_, shard) => {
    const shardDirectory = join(env.HOTLEDGER_DATA, `shard-${shard}`);
    const journal = await FileJournal.open({ directory: join(shardDirectory, "journal"), fsync: "never", log: () => {} });
    journals.push(journal);
    // Recovered read only: never closed (close would snapshot), only its journal is.
    return Shard.open({
      journal,
      snapshots: await FileSnapshotStore.open({ directory: join(shardDirectory, "snapshots"), readOnly: true, log: () => {} }),
      accountsMax: config.accountsMax,
      idempotencyCommandsMax: config.idempotencyCommandsMax,
    });
  }));
  let compared = 0;
  for (const partnerId of WORKLOAD_PARTNERS) {
    for (const accountId of WORKLOAD_ACCOUNTS) {
      const expected = (await Promise.all(engines.map((engine) => engine.account(partnerId, accountId)))).find((account) => account !== undefined);
      const projected = await projection.account(partnerId, accountId);
      assert.ok(expected !== undefined && projected !== undefined, `${partnerId}/${accountId} exists on both sides`);
      const fields = ({ balance, held, available, overdraftLimit, status, currency }: typeof expected) => ({ balance, held, available, overdraftLimit, status, currency });
      assert.deepEqual(fields(projected), fields(expected), `${partnerId}/${accountId}`);
      compared++;
    }
  }
  assert.equal(compared, WORKLOAD_PARTNERS.length * WORKLOAD_ACCOUNTS.length);

  // JetStream: every event id once, in sequence order, per shard.
  const js = jetstream(nc);
  for (let shard = 0; shard < SHARDS; shard++) {
    if (last[shard] === 0) continue;
    // A single subject as a string: nats-server 2.9 (Debian) has no filter_subjects list.
    const consumer = await js.consumers.get(STREAM_DEFAULT, { filter_subjects: `${SUBJECT_PREFIX_DEFAULT}.${shard}` });
    const ids: string[] = [];
    const readDeadline = Date.now() + CATCH_UP_MS_MAX;
    let pending = 1;
    while (pending > 0) {
      assert.ok(Date.now() < readDeadline, `shard ${shard}: read ${ids.length} messages before the deadline`);
      const messages = await consumer.fetch({ max_messages: 5000, expires: 2000 });
      for await (const message of messages) {
        ids.push(message.headers?.get("Nats-Msg-Id") ?? "");
        pending = message.info.pending;
      }
    }
    assert.equal(ids.length, last[shard], `shard ${shard}: one message per event`);
    assert.deepEqual(ids, Array.from({ length: last[shard] }, (_, i) => `${shard}:${i + 1}`), `shard ${shard}: every id once, in order`);
  }
  for (const journal of journals) await journal.close();
  console.log(`outputs fault test: ${acked} batches acknowledged (${retries} retries), shards at ${last}`);
});
