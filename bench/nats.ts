/**
 * How many commands per second does the gateway take over NATS request/reply, against a bare NATS echo responder
 * on the same server in the same run? Napkin math in bench/README.md ("nats.ts").
 *
 * Run: `bun bench/nats.ts` (a table on stderr), `--json` (one JSON line on stdout), `--runs N` (default 1).
 * Needs a nats-server (NATS_URL, default 127.0.0.1:4222). The gateway (examples/gateway, 4 shards, fsync "batch",
 * journals in a temp dir removed at the end) subscribes to the default subject hotledger.v1.commands in queue
 * hotledger: another gateway on the same server in the same queue would share the load (and the bench would fail
 * on its unknown keys), so run it on a server nothing else uses. The echo responder runs in its own process on a
 * unique subject. Each measurement is a load generator process (bench/load-nats.ts) with IN_FLIGHT requests
 * outstanding on one connection. Every reply is checked (no error header, every result OK); errors are counted.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeLoad, measureLoad, measureTransportRuns, NATS_SERVERS, openAccounts, PARTNERS, round, startChild, startGateway, stopChild, summarizeTransportRuns, transportBenchArguments, type Child } from "./children.ts";
import { loadConfig } from "../examples/gateway/config.ts";

// Bounds: every loop is bounded by one of these.
const IN_FLIGHT = 64;
const WARMUP_MS = 1_500;
const DURATION_MS = 6_000;
const REQUESTS_MAX = 5_000_000;
const LOAD_TIMEOUT_MS = 60_000;
const ACCOUNTS = 1_000;
const BATCH = 100;
const SERVERS = NATS_SERVERS;
const SUBJECT = "hotledger.v1.commands";

const { jsonMode, runs: RUNS, log } = transportBenchArguments();

const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "hotledger-nats-"));
const echoSubject = `bench.echo.${process.pid}.${Date.now().toString(36)}`;
let gateway: Child | undefined;
let echo: Child | undefined;
try {
  const started = await startGateway(root, SERVERS);
  gateway = started.child;
  const gatewayUrl = started.url;
  if (!/NATS request\/reply/.test(gateway.output())) throw new Error(`the gateway did not start NATS:\n${gateway.output()}`);
  echo = (await startChild("bench/echo-responder.ts", [SERVERS, echoSubject], {}, /echo ready/)).child;
  log(`gateway ${gatewayUrl} + NATS ${SERVERS} subject ${SUBJECT}; echo on ${echoSubject}; data in ${root}`);
  await openAccounts(gatewayUrl, ACCOUNTS);
  log(`opened and funded ${ACCOUNTS} accounts for each of ${PARTNERS.length} partners (over HTTP, untimed)`);

  const base = { servers: SERVERS, inFlight: IN_FLIGHT, warmupMs: WARMUP_MS, durationMs: DURATION_MS, requestsMax: REQUESTS_MAX, accounts: ACCOUNTS, partners: PARTNERS };
  const runs = await measureTransportRuns(
    RUNS,
    (load, tag) =>
      load === "yardstick"
        ? measureLoad(echo!, "bench/load-nats.ts", { ...base, subject: echoSubject, mode: "echo", batch: 1, tag }, LOAD_TIMEOUT_MS)
        : measureLoad(gateway!, "bench/load-nats.ts", { ...base, subject: SUBJECT, mode: "gateway", batch: load === "batch" ? BATCH : 1, tag }, LOAD_TIMEOUT_MS),
    (load, measured) => (load === "yardstick" ? describeLoad("echo", measured) : load === "batch" ? describeLoad(`batch${BATCH}`, measured, "ops") : describeLoad("single", measured)),
    log,
  );
  const { yardstick: echoMedians, batch, single, errors, loadAverage } = summarizeTransportRuns(runs);
  const result = {
    bench: "nats",
    runs: RUNS,
    /** Whether the gateway ran its shards on worker threads (HOTLEDGER_WORKERS, else its default for this machine). */
    workers: loadConfig(process.env).workers,
    inFlight: IN_FLIGHT,
    durationMs: DURATION_MS,
    batch100OpsPerSec: batch.opsPerSec,
    batch100ReqPerSec: batch.reqPerSec,
    batch100P50Ms: batch.p50Ms,
    batch100P99Ms: batch.p99Ms,
    singleReqPerSec: single.reqPerSec,
    singleP50Ms: single.p50Ms,
    singleP99Ms: single.p99Ms,
    echoReqPerSec: echoMedians.reqPerSec,
    echoP50Ms: echoMedians.p50Ms,
    echoP99Ms: echoMedians.p99Ms,
    ratioBatch100ToEcho: round(batch.opsPerSec / echoMedians.reqPerSec, 3),
    ratioSingleToEcho: round(single.reqPerSec / echoMedians.reqPerSec, 3),
    /** The server's CPU (all its threads) per request, medians: steadier than the rates on a shared machine. */
    serverCpuUsPerRequest: { echo: echoMedians.serverCpuUsPerRequest, batch100: batch.serverCpuUsPerRequest, single: single.serverCpuUsPerRequest },
    errors,
    perRun: runs.map((run) => ({ echo: round(run.yardstick.reqPerSec), batch100Ops: round(run.batch.opsPerSec), single: round(run.single.reqPerSec) })),
    loadAverage,
  };
  if (jsonMode) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    log("");
    log(`| metric | value | target |`);
    log(`| --- | --- | --- |`);
    log(`| batch100OpsPerSec | ${result.batch100OpsPerSec} | >= 500,000 |`);
    log(`| singleReqPerSec | ${result.singleReqPerSec} (p50 ${result.singleP50Ms} / p99 ${result.singleP99Ms} ms) | |`);
    log(`| echoReqPerSec | ${result.echoReqPerSec} | |`);
    log(`| batch100 / echo, single / echo | ${result.ratioBatch100ToEcho}, ${result.ratioSingleToEcho} | |`);
    log(`| server CPU per request, us (echo / batch100 / single) | ${result.serverCpuUsPerRequest.echo} / ${result.serverCpuUsPerRequest.batch100} / ${result.serverCpuUsPerRequest.single} | |`);
    log(`| errors | ${result.errors} | 0 |`);
    log(`| load average | ${result.loadAverage.join(", ")} | |`);
  }
} finally {
  await stopChild(gateway);
  await stopChild(echo);
  rmSync(root, { recursive: true, force: true });
}
