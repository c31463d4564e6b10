/**
 * Child processes for the transport benches (bench/http.ts, bench/nats.ts): the gateway and the yardstick
 * servers each in their own process, load generators in theirs, so no number comes from one event loop serving
 * itself. Every wait is bounded; `stopChild` is called in `finally` by the benches.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { LoadResult } from "./load-runner.ts";

const BUN = process.execPath;
const ROOT = join(import.meta.dir, "..");
/** How long a child may take to print its ready line. */
const READY_MS_MAX = 30_000;
/** How long a child may take to exit after SIGTERM before it is killed. */
const STOP_MS_MAX = 15_000;
/** BENCH_CPU_PROF_DIR=dir: servers started by startChild write a `bun --cpu-prof` profile there when they exit. */
const PROFILE_FLAGS = process.env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];

export interface Child {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the child printed on stdout and stderr (bounded), for error messages. */
  output(): string;
}

/** Keep draining a stream (so the child never blocks on a full pipe), keeping the last 64 KiB of text. */
function drain(stream: ReadableStream<Uint8Array>, sink: { text: string }, onText: () => void): void {
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      sink.text = (sink.text + decoder.decode(chunk, { stream: true })).slice(-65536);
      onText();
    }
  })();
}

/** Start `bun <script>` with `env`, and wait until its output matches `ready` (bounded by READY_MS_MAX). */
export async function startChild(script: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<{ child: Child; match: RegExpMatchArray }> {
  const proc = Bun.spawn([BUN, ...PROFILE_FLAGS, join(ROOT, script), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const sink = { text: "" };
  const child: Child = { proc, output: () => sink.text };
  let wake = () => {};
  drain(proc.stdout, sink, () => wake());
  drain(proc.stderr, sink, () => wake());
  const deadline = Date.now() + READY_MS_MAX;
  try {
    for (;;) {
      const match = sink.text.match(ready);
      if (match !== null) return { child, match };
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${script} exited before it was ready:\n${sink.text}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${script} not ready after ${READY_MS_MAX} ms:\n${sink.text}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/** SIGTERM, wait (bounded), then SIGKILL. Safe to call twice or on an exited child. */
export async function stopChild(child: Child | undefined): Promise<void> {
  if (child === undefined || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill("SIGTERM");
  const exited = await Promise.race([child.proc.exited.then(() => true), Bun.sleep(STOP_MS_MAX).then(() => false)]);
  if (!exited) {
    child.proc.kill("SIGKILL");
    await child.proc.exited;
  }
}

/** Run a load generator (`bun <script> '<json config>'`) to completion; its last stdout line is its JSON result. */
export async function runLoad<T>(script: string, config: unknown, timeoutMs: number): Promise<T> {
  const proc = Bun.spawn([BUN, join(ROOT, script), JSON.stringify(config)], { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`${script} exited with ${code} (signal ${proc.signalCode}):\n${stderr}\n${stdout}`);
    const lines = stdout.trim().split("\n");
    return JSON.parse(lines[lines.length - 1]) as T;
  } finally {
    clearTimeout(timer);
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
}

/** Partners of the benches, one per shard (pinned), each with its own key. */
export const PARTNERS = [0, 1, 2, 3].map((index) => ({ partnerId: `bench-p${index}`, key: `bench-key-${index}-0123456789abcdef`, shard: index }));

/** The gateway's JSON configuration file content for PARTNERS. */
function gatewayConfig(): string {
  return JSON.stringify({
    shards: PARTNERS.length,
    fsync: "batch",
    pinned: Object.fromEntries(PARTNERS.map((partner) => [partner.partnerId, partner.shard])),
    keys: PARTNERS.map((partner) => ({ sha256: createHash("sha256").update(partner.key, "utf8").digest("hex"), partnerId: partner.partnerId })),
  });
}

/**
 * Start the gateway (examples/gateway) as the transport benches measure it: PARTNERS pinned one per shard, fsync
 * "batch", journals under `root` (the caller removes it), HTTP on a free port, outputs off unless HOTLEDGER_OUTPUTS
 * says otherwise (they have their own bench), NATS only when `natsUrl` is given. Resolves once it listens.
 */
export async function startGateway(root: string, natsUrl = ""): Promise<{ child: Child; url: string }> {
  const configFile = join(root, "config.json");
  writeFileSync(configFile, gatewayConfig());
  const env = {
    HOTLEDGER_CONFIG: configFile, HOTLEDGER_DATA: join(root, "data"), HOTLEDGER_PORT: "0", HOTLEDGER_FSYNC: "batch",
    HOTLEDGER_OUTPUTS: process.env.HOTLEDGER_OUTPUTS ?? "none", NATS_URL: natsUrl,
  };
  const { child, match } = await startChild("examples/gateway/index.ts", [], env, /listening on (http:\/\/\S+)/);
  return { child, url: match[1] };
}

/** Open `accounts` accounts per partner and fund each with 10^12 (untimed setup), over HTTP; every code must be ok. */
export async function openAccounts(url: string, accounts: number): Promise<void> {
  const CHUNK = 1000;
  for (const partner of PARTNERS) {
    for (const phase of ["open", "fund"] as const) {
      for (let start = 0; start < accounts; start += CHUNK) {
        const commands = [];
        for (let i = start; i < Math.min(accounts, start + CHUNK); i++) {
          commands.push(
            phase === "open"
              ? { type: "openAccount", id: `open:acct:${i}`, partnerId: partner.partnerId, accountId: `acct:${i}`, currency: "USD" }
              : { type: "credit", id: `fund:acct:${i}`, partnerId: partner.partnerId, accountId: `acct:${i}`, amount: 1e12 },
          );
        }
        const response = await fetch(`${url}/v1/commands`, {
          method: "POST",
          headers: { authorization: `Bearer ${partner.key}`, "content-type": "application/json" },
          body: JSON.stringify({ commands }),
        });
        const text = await response.text();
        if (response.status !== 200) throw new Error(`setup ${phase}: status ${response.status}: ${text}`);
        const { results } = JSON.parse(text) as { results: { code: string }[] };
        const bad = results.find((result) => result.code !== "ok");
        if (bad !== undefined) throw new Error(`setup ${phase}: ${JSON.stringify(bad)}`);
      }
    }
  }
}

/** The nats-server the NATS benches use: NATS_URL, else the machine's on 127.0.0.1:4222. */
export const NATS_SERVERS = process.env.NATS_URL || "127.0.0.1:4222";

/** CPU seconds (user + system, all threads) a process has used, from /proc; null where there is no /proc. */
export function processCpuSeconds(pid: number): number | null {
  try {
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th, in clock ticks (100 a second on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** A load generator's result, with the CPU the server under load used per request (null without /proc). */
export interface MeasuredLoad extends LoadResult {
  serverCpuUsPerRequest: number | null;
}

/**
 * `runLoad` against `server`, also measuring the server's CPU per request: CPU seconds over the whole load
 * (warm-up included) divided by the requests the timed phase's rate gives for that time. A steadier number than
 * the rates on a shared machine: it does not move when another process takes the CPU.
 */
export async function measureLoad(server: Child, script: string, config: object, timeoutMs: number): Promise<MeasuredLoad> {
  const pid = server.proc.pid;
  const cpuBefore = processCpuSeconds(pid);
  const started = performance.now();
  const load = await runLoad<LoadResult>(script, config, timeoutMs);
  const cpuAfter = processCpuSeconds(pid);
  const seconds = (performance.now() - started) / 1000;
  const requests = load.reqPerSec * seconds;
  const serverCpuUsPerRequest = cpuBefore === null || cpuAfter === null || requests === 0 ? null : ((cpuAfter - cpuBefore) / requests) * 1e6;
  return { ...load, serverCpuUsPerRequest };
}

/** The median server CPU per request of `loads`, rounded to a microsecond; null without /proc. */
export function medianCpu(loads: readonly MeasuredLoad[]): number | null {
  const values = loads.map((load) => load.serverCpuUsPerRequest).filter((value): value is number => value !== null);
  return values.length === 0 ? null : Math.round(median(values));
}

/**
 * A transport bench's command line (bench/http.ts, bench/nats.ts): `--json` prints one JSON line on stdout and no
 * log; `--runs N` measures N runs (1-10, default 1) and reports their medians. `log` writes to stderr.
 */
export function transportBenchArguments(argv: readonly string[] = process.argv.slice(2)): { jsonMode: boolean; runs: number; log: (line: string) => void } {
  const jsonMode = argv.includes("--json");
  const runsIndex = argv.indexOf("--runs");
  const runs = Math.min(10, Math.max(1, runsIndex >= 0 ? Number(argv[runsIndex + 1]) : 1));
  return { jsonMode, runs, log: (line) => void (jsonMode || process.stderr.write(`${line}\n`)) };
}

/** The three loads of a transport bench run: the yardstick (a bare server), batches of commands, single commands. */
export type TransportLoad = "yardstick" | "batch" | "single";

/** One run of a transport bench: each load measured once, and the load average after. */
export type TransportRun = Record<TransportLoad, MeasuredLoad> & { loadAverage: number[] };

/**
 * `runs` runs of a transport bench (bench/http.ts, bench/nats.ts), each measuring the yardstick, then the batch
 * load, then the single-command load with `measure` (given a tag that makes the run's ids unique), logging each
 * with `describe`.
 */
export async function measureTransportRuns(
  runs: number,
  measure: (load: TransportLoad, tag: string) => Promise<MeasuredLoad>,
  describe: (load: TransportLoad, measured: MeasuredLoad) => string,
  log: (line: string) => void,
): Promise<TransportRun[]> {
  const measured: TransportRun[] = [];
  for (let run = 0; run < runs; run++) {
    const tag = `r${run}-${Date.now().toString(36)}`;
    const one = async (load: TransportLoad, suffix: string) => {
      const result = await measure(load, `${tag}${suffix}`);
      log(`run ${run}: ${describe(load, result)}`);
      return result;
    };
    const yardstick = await one("yardstick", "");
    const batch = await one("batch", "-b");
    const single = await one("single", "-s");
    measured.push({ yardstick, batch, single, loadAverage: loadAverage() });
  }
  return measured;
}

/** A load's medians over the runs: rates, latencies, and the server's CPU per request. */
export interface LoadMedians {
  reqPerSec: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuUsPerRequest: number | null;
}

/** The medians of each load over `runs`, their errors summed, and the load average after the last run. */
export function summarizeTransportRuns(runs: readonly TransportRun[]): Record<TransportLoad, LoadMedians> & { errors: number; loadAverage: number[] } {
  const medians = (load: TransportLoad): LoadMedians => ({
    reqPerSec: round(median(runs.map((run) => run[load].reqPerSec))),
    opsPerSec: round(median(runs.map((run) => run[load].opsPerSec))),
    p50Ms: round(median(runs.map((run) => run[load].p50Ms)), 2),
    p99Ms: round(median(runs.map((run) => run[load].p99Ms)), 2),
    serverCpuUsPerRequest: medianCpu(runs.map((run) => run[load])),
  });
  return {
    yardstick: medians("yardstick"),
    batch: medians("batch"),
    single: medians("single"),
    errors: runs.reduce((sum, run) => sum + run.yardstick.errors + run.batch.errors + run.single.errors, 0),
    loadAverage: runs[runs.length - 1].loadAverage,
  };
}

/** `value` rounded to `digits` decimals. */
export const round = (value: number, digits = 0) => Math.round(value * 10 ** digits) / 10 ** digits;

/** One load generator's result as a log line: rate (commands per second as `unit` when given), latency, errors. */
export function describeLoad(label: string, load: MeasuredLoad, unit?: string): string {
  const rate = unit === undefined ? `${round(load.reqPerSec)} req/s` : `${round(load.opsPerSec)} ${unit}/s (${round(load.reqPerSec)} req/s)`;
  const cpu = load.serverCpuUsPerRequest === null ? "" : `, server ${round(load.serverCpuUsPerRequest)} us CPU/request`;
  return `${label} ${rate} p50 ${round(load.p50Ms, 2)} p99 ${round(load.p99Ms, 2)} ms${cpu}, errors ${load.errors} ${load.firstError ?? ""}`;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function loadAverage(): number[] {
  return loadavg().map((value) => Math.round(value * 100) / 100);
}

/** A percentile of the first `count` entries of `samples` (sorts them in place). */
export function percentile(samples: Float64Array, count: number, p: number): number {
  if (count === 0) return Number.NaN;
  const sorted = samples.subarray(0, count).sort();
  return sorted[Math.min(count - 1, Math.floor((p / 100) * count))];
}
