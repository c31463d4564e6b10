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
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeLoad, gatewayConfig, loadAverage, measureLoad, median, medianCpu, openAccounts, PARTNERS, round, startChild, stopChild, type Child, type MeasuredLoad } from "./children.ts";
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

const argv = process.argv.slice(2);
const jsonMode = argv.includes("--json");
const runsIndex = argv.indexOf("--runs");
const RUNS = Math.min(10, Math.max(1, runsIndex >= 0 ? Number(argv[runsIndex + 1]) : 1));

function log(message: string): void {
  if (!jsonMode) process.stderr.write(`${message}\n`);
}


const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "hotledger-http-"));
let gateway: Child | undefined;
let hello: Child | undefined;
try {
  const configFile = join(root, "config.json");
  writeFileSync(configFile, gatewayConfig());
  const started = await startChild(
    "examples/gateway/index.ts",
    [],
    { HOTLEDGER_CONFIG: configFile, HOTLEDGER_DATA: join(root, "data"), HOTLEDGER_PORT: "0", HOTLEDGER_FSYNC: "batch", HOTLEDGER_OUTPUTS: process.env.HOTLEDGER_OUTPUTS ?? "none", NATS_URL: "" },
    /listening on (http:\/\/\S+)/,
  );
  gateway = started.child;
  const gatewayUrl = started.match[1];
  const helloStarted = await startChild("bench/hello-server.ts", [], {}, /listening on (http:\/\/\S+)/);
  hello = helloStarted.child;
  const helloUrl = helloStarted.match[1];
  log(`gateway ${gatewayUrl}, hello ${helloUrl}, data in ${root}`);
  await openAccounts(gatewayUrl, ACCOUNTS);
  log(`opened and funded ${ACCOUNTS} accounts for each of ${PARTNERS.length} partners`);

  const base = { connections: CONNECTIONS, warmupMs: WARMUP_MS, durationMs: DURATION_MS, requestsMax: REQUESTS_MAX, accounts: ACCOUNTS, partners: PARTNERS, batch: BATCH };
  const runs: { hello: MeasuredLoad; batch: MeasuredLoad; single: MeasuredLoad; loadAverage: number[] }[] = [];
  for (let run = 0; run < RUNS; run++) {
    const tag = `r${run}-${Date.now().toString(36)}`;
    const helloLoad = await measureLoad(hello, "bench/load-http.ts", { ...base, url: helloUrl, mode: "hello", tag }, LOAD_TIMEOUT_MS);
    log(`run ${run}: ${describeLoad("hello", helloLoad)}`);
    const batch = await measureLoad(gateway, "bench/load-http.ts", { ...base, url: gatewayUrl, mode: "batch", tag: `${tag}-b` }, LOAD_TIMEOUT_MS);
    log(`run ${run}: ${describeLoad(`batch${BATCH}`, batch, "orders")}`);
    const single = await measureLoad(gateway, "bench/load-http.ts", { ...base, url: gatewayUrl, mode: "single", tag: `${tag}-s` }, LOAD_TIMEOUT_MS);
    log(`run ${run}: ${describeLoad("single", single)}`);
    runs.push({ hello: helloLoad, batch, single, loadAverage: loadAverage() });
  }

  const helloReqPerSec = median(runs.map((run) => run.hello.reqPerSec));
  const batch20OrdersPerSec = median(runs.map((run) => run.batch.opsPerSec));
  const singleReqPerSec = median(runs.map((run) => run.single.reqPerSec));
  const result = {
    bench: "http",
    runs: RUNS,
    /** Whether the gateway ran its shards on worker threads (HOTLEDGER_WORKERS, else its default for this machine). */
    workers: loadConfig(process.env).workers,
    connections: CONNECTIONS,
    durationMs: DURATION_MS,
    batch20OrdersPerSec: round(batch20OrdersPerSec),
    batch20ReqPerSec: round(median(runs.map((run) => run.batch.reqPerSec))),
    batch20P99Ms: round(median(runs.map((run) => run.batch.p99Ms)), 2),
    singleReqPerSec: round(singleReqPerSec),
    p50Ms: round(median(runs.map((run) => run.single.p50Ms)), 2),
    p99Ms: round(median(runs.map((run) => run.single.p99Ms)), 2),
    helloReqPerSec: round(helloReqPerSec),
    helloP50Ms: round(median(runs.map((run) => run.hello.p50Ms)), 2),
    helloP99Ms: round(median(runs.map((run) => run.hello.p99Ms)), 2),
    ratioBatch20ToHello: round(batch20OrdersPerSec / helloReqPerSec, 3),
    ratioSingleToHello: round(singleReqPerSec / helloReqPerSec, 3),
    /** The server's CPU (all its threads) per request, medians: steadier than the rates on a shared machine. */
    serverCpuUsPerRequest: {
      hello: medianCpu(runs.map((run) => run.hello)),
      batch20: medianCpu(runs.map((run) => run.batch)),
      single: medianCpu(runs.map((run) => run.single)),
    },
    errors: runs.reduce((sum, run) => sum + run.hello.errors + run.batch.errors + run.single.errors, 0),
    perRun: runs.map((run) => ({
      hello: round(run.hello.reqPerSec),
      batch20Orders: round(run.batch.opsPerSec),
      single: round(run.single.reqPerSec),
      singleP50Ms: round(run.single.p50Ms, 2),
      singleP99Ms: round(run.single.p99Ms, 2),
    })),
    loadAverage: runs[runs.length - 1].loadAverage,
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
