/**
 * How many commands per second does the gateway take over HTTP, against a bare Bun.serve JSON echo on the same
 * machine in the same run? Napkin math in bench/README.md ("http.ts").
 *
 * Run: `bun bench/http.ts` (a table on stderr), `--json` (one JSON line on stdout), `--runs N` (default 1).
 * The gateway (examples/gateway, 4 shards, fsync "batch", journals in a temp dir removed at the end) and the
 * hello server run in their own processes; each measurement is a load generator process (bench/load-http.ts) with
 * CONNECTIONS connections, one request in flight on each. Every response must be 200 (and every result `ok`);
 * errors are counted and reported. Children are stopped in `finally`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeLoad, measureLoad, measureTransportRuns, openAccounts, PARTNERS, round, startChild, startGateway, stopChild, summarizeTransportRuns, transportBenchArguments, type Child } from "./children.ts";
import { loadConfig } from "../examples/gateway/config.ts";

// Bounds: every loop is bounded by one of these.
const CONNECTIONS = 64;
const WARMUP_MS = 1_500;
const DURATION_MS = 6_000;
/** A measurement also stops after this many requests. */
const REQUESTS_MAX = 5_000_000;
/** A load generator is killed if it runs longer than this. */
const LOAD_TIMEOUT_MS = 60_000;
/** Accounts per partner (4 partners, one per shard). */
const ACCOUNTS = 1_000;
const BATCH = 20;

const { jsonMode, runs: RUNS, log } = transportBenchArguments();

const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "hotledger-http-"));
let gateway: Child | undefined;
let hello: Child | undefined;
try {
  const started = await startGateway(root);
  gateway = started.child;
  const gatewayUrl = started.url;
  const helloStarted = await startChild("bench/hello-server.ts", [], {}, /listening on (http:\/\/\S+)/);
  hello = helloStarted.child;
  const helloUrl = helloStarted.match[1];
  log(`gateway ${gatewayUrl}, hello ${helloUrl}, data in ${root}`);
  await openAccounts(gatewayUrl, ACCOUNTS);
  log(`opened and funded ${ACCOUNTS} accounts for each of ${PARTNERS.length} partners`);

  const base = { connections: CONNECTIONS, warmupMs: WARMUP_MS, durationMs: DURATION_MS, requestsMax: REQUESTS_MAX, accounts: ACCOUNTS, partners: PARTNERS, batch: BATCH };
  const runs = await measureTransportRuns(
    RUNS,
    (load, tag) =>
      load === "yardstick"
        ? measureLoad(hello!, "bench/load-http.ts", { ...base, url: helloUrl, mode: "hello", tag }, LOAD_TIMEOUT_MS)
        : measureLoad(gateway!, "bench/load-http.ts", { ...base, url: gatewayUrl, mode: load, tag }, LOAD_TIMEOUT_MS),
    (load, measured) => (load === "yardstick" ? describeLoad("hello", measured) : load === "batch" ? describeLoad(`batch${BATCH}`, measured, "orders") : describeLoad("single", measured)),
    log,
  );
  const { yardstick: helloMedians, batch, single, errors, loadAverage } = summarizeTransportRuns(runs);
  const result = {
    bench: "http",
    runs: RUNS,
    /** Whether the gateway ran its shards on worker threads (HOTLEDGER_WORKERS, else its default for this machine). */
    workers: loadConfig(process.env).workers,
    connections: CONNECTIONS,
    durationMs: DURATION_MS,
    batch20OrdersPerSec: batch.opsPerSec,
    batch20ReqPerSec: batch.reqPerSec,
    batch20P99Ms: batch.p99Ms,
    singleReqPerSec: single.reqPerSec,
    p50Ms: single.p50Ms,
    p99Ms: single.p99Ms,
    helloReqPerSec: helloMedians.reqPerSec,
    helloP50Ms: helloMedians.p50Ms,
    helloP99Ms: helloMedians.p99Ms,
    ratioBatch20ToHello: round(batch.opsPerSec / helloMedians.reqPerSec, 3),
    ratioSingleToHello: round(single.reqPerSec / helloMedians.reqPerSec, 3),
    /** The server's CPU (all its threads) per request, medians: steadier than the rates on a shared machine. */
    serverCpuUsPerRequest: { hello: helloMedians.serverCpuUsPerRequest, batch20: batch.serverCpuUsPerRequest, single: single.serverCpuUsPerRequest },
    errors,
    perRun: runs.map((run) => ({
      hello: round(run.yardstick.reqPerSec),
      batch20Orders: round(run.batch.opsPerSec),
      single: round(run.single.reqPerSec),
      singleP50Ms: round(run.single.p50Ms, 2),
      singleP99Ms: round(run.single.p99Ms, 2),
    })),
    loadAverage,
  };
  if (jsonMode) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    log("");
    log(`| metric | value | target |`);
    log(`| --- | --- | --- |`);
    log(`| batch20OrdersPerSec | ${result.batch20OrdersPerSec} | >= 8 x hello |`);
    log(`| singleReqPerSec | ${result.singleReqPerSec} | >= 0.5 x hello |`);
    log(`| p50Ms / p99Ms (single) | ${result.p50Ms} / ${result.p99Ms} | p99 <= 10 |`);
    log(`| helloReqPerSec | ${result.helloReqPerSec} | |`);
    log(`| batch20 / hello | ${result.ratioBatch20ToHello} | >= 8 |`);
    log(`| single / hello | ${result.ratioSingleToHello} | >= 0.5 |`);
    log(`| server CPU per request, us (hello / batch20 / single) | ${result.serverCpuUsPerRequest.hello} / ${result.serverCpuUsPerRequest.batch20} / ${result.serverCpuUsPerRequest.single} | |`);
    log(`| errors | ${result.errors} | 0 |`);
    log(`| load average | ${result.loadAverage.join(", ")} | |`);
  }
} finally {
  await stopChild(gateway);
  await stopChild(hello);
  rmSync(root, { recursive: true, force: true });
}
