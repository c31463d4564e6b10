/**
 * The output relays as their own process: `bun examples/gateway/relay.ts`, with the gateway's configuration (same
 * env vars and config file) and the gateway started with HOTLEDGER_RELAY=separate. It only reads the shards' data
 * directories (journals and snapshots) and writes its own state beside them (relay snapshots, the journal floor),
 * so it can be killed and restarted at any moment: every sink resumes from its own cursor.
 * SIGTERM or SIGINT, also while it is still starting: finish the delivery in progress (or the start in progress),
 * close what is open, exit 0. A relay that stops for good (Relay.ended: e.g. the journal no longer reaches back to a
 * sink's cursor) ends the process with exit code 1 and the reason on stderr, after closing the other relays, so a
 * supervisor restarts it and an operator sees why; a bad configuration exits 2.
 *
 * The ledger comes first on a machine shared with the shards. The relay lowers its own CPU priority (nice
 * HOTLEDGER_RELAY_NICE, default 19, the lowest), and while the shards' journals grow fast it holds itself to a share
 * of one CPU (cpu-budget.ts; HOTLEDGER_RELAY_CPU_PERCENT, default 10, and HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC): even
 * at nice 19 a relay catching up at full speed cost the shard 17-36% of its throughput on 2 vCPUs, held to 10% it
 * cost 6-11% (medians of runs; bench/README.md). Under a peak the outputs fall behind (their lag is in /metrics)
 * and catch up at full speed after it. With HOTLEDGER_RELAY_METRICS_PORT set it serves GET /metrics (each sink's
 * cursor, lag, deliveries and failures, in the gateway's Prometheus format) on 127.0.0.1 at that port.
 */
import { readdirSync } from "node:fs";
import { setPriority } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { prometheusText } from "../../transports/http/index.ts";
import { ConfigError, integer, loadConfig } from "./config.ts";
import { shardDirectories, startOutputs, type RunningOutputs } from "./outputs.ts";
import { JournalWriteMeter } from "../../adapters/journal-file/index.ts";
import { CpuBudget } from "./cpu-budget.ts";

/** The relay's share of one CPU while the shards are busy, in percent (HOTLEDGER_RELAY_CPU_PERCENT). */
const RELAY_CPU_PERCENT_DEFAULT = 10;
/**
 * Journal growth, all shards together, from which the shards count as busy (HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC):
 * 16 MiB/s, ~250k commands/s of ~70 B, about what the outputs deliver at full speed (bench/README.md).
 */
const RELAY_BUSY_BYTES_PER_SEC_DEFAULT = 16 << 20;

/**
 * Set the nice level of every thread of this process: on Linux a priority belongs to a thread, and `setPriority(0)`
 * sets only the calling one (the runtime's pool, JIT and GC threads kept nice 0 and did a quarter of the relay's
 * work). Where there is no /proc, the calling thread only.
 */
function niceEveryThread(nice: number): void {
  let threads: number[] = [0];
  try {
    threads = readdirSync("/proc/self/task").map(Number);
  } catch {
    // Not Linux: the process's priority is the call on 0.
  }
  for (const thread of threads) {
    try {
      setPriority(thread, nice);
    } catch (error) {
      if (thread === 0 || thread === process.pid) throw new ConfigError(`HOTLEDGER_RELAY_NICE ${nice}: ${(error as Error).message}`);
      // A thread that ended since the listing.
    }
  }
}

/** The exit code when a relay stopped for good (Relay.ended): its supervisor restarts the process, or an operator looks. */
const EXIT_RELAY_STOPPED = 1;
/** The exit code of a configuration that cannot work. */
const EXIT_CONFIG = 2;

async function main(): Promise<void> {
  let outputs: RunningOutputs | undefined;
  let metricsPort: number | undefined;
  let stopping = false;
  /** Stop what has started (at any point of the start too: outputs.stop waits for a start in progress) and exit. */
  const shutdown = async (code: number): Promise<never> => {
    stopping = true;
    try {
      await outputs?.stop();
    } catch (error) {
      console.error(`hotledger relay: stopping the outputs failed: ${(error as Error).message}`);
      code = code === 0 ? EXIT_RELAY_STOPPED : code;
    }
    process.exit(code);
  };
  // Before anything starts: a signal during the start (the sinks' servers unreachable, PGlite opening) stops it too.
  const onSignal = (signal: string) => {
    if (stopping) return;
    console.log(`hotledger relay: ${signal}, stopping`);
    void shutdown(0);
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    const config = loadConfig();
    const nice = integer("HOTLEDGER_RELAY_NICE", process.env.HOTLEDGER_RELAY_NICE ?? 19, -20, 19);
    niceEveryThread(nice);
    const port = process.env.HOTLEDGER_RELAY_METRICS_PORT;
    metricsPort = port === undefined ? undefined : integer("HOTLEDGER_RELAY_METRICS_PORT", port, 0, 65535);
    if (config.outputs.length === 0) throw new ConfigError("no outputs configured (HOTLEDGER_OUTPUTS=none)");
    const meters = Array.from({ length: config.shards }, (_, index) => new JournalWriteMeter(shardDirectories(config, index).journal));
    const budget = new CpuBudget({
      percent: integer("HOTLEDGER_RELAY_CPU_PERCENT", process.env.HOTLEDGER_RELAY_CPU_PERCENT ?? RELAY_CPU_PERCENT_DEFAULT, 1, 100),
      busyBytesPerSec: integer("HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC",
        process.env.HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC ?? RELAY_BUSY_BYTES_PER_SEC_DEFAULT, 0, Number.MAX_SAFE_INTEGER),
      journalBytes: async () => (await Promise.all(meters.map((meter) => meter.written()))).reduce((sum, bytes) => sum + bytes, 0),
      sleep: (ms) => sleep(ms),
    });
    outputs = startOutputs(config, console.log, { pace: budget.pace });
    // A relay that stopped for good would only show as lag: end the process, with the reason, instead.
    void outputs.failed.then(({ shard, error }) => {
      if (stopping) return;
      console.error(`hotledger relay: the relay of shard ${shard} stopped for good, exiting: ${error.name}: ${error.message}`);
      void shutdown(EXIT_RELAY_STOPPED);
    });
    await outputs.ready;
    if (stopping) return;
    niceEveryThread(nice); // the threads the runtime started meanwhile (its pool, JIT and GC helpers)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger relay: bad configuration: ${error.message}`);
    process.exit(EXIT_CONFIG);
  }
  const running = outputs;
  if (metricsPort !== undefined) {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: metricsPort,
      fetch: (request) =>
        new URL(request.url).pathname === "/metrics"
          ? new Response(prometheusText([], running.status()), { headers: { "content-type": "text/plain; version=0.0.4" } })
          : new Response("not found", { status: 404 }),
    });
    console.log(`hotledger relay: metrics on http://127.0.0.1:${server.port}/metrics`);
  }
  console.log("hotledger relay: running");
}

if (import.meta.main) await main();
