/**
 * The output relays as their own process: `bun examples/gateway/relay.ts`, with the gateway's configuration (same
 * env vars and config file) and the gateway started with HOTLEDGER_RELAY=separate. It only reads the shards' data
 * directories (journals and snapshots) and writes its own state beside them (relay snapshots, the journal floor),
 * so it can be killed and restarted at any moment: every sink resumes from its own cursor.
 * SIGTERM or SIGINT: finish the delivery in progress, close the sinks, exit 0.
 *
 * It lowers its own CPU priority (nice HOTLEDGER_RELAY_NICE, default 19, the lowest): on a machine shared with the
 * shards, the ledger comes first, and outputs that fall behind under a peak catch up after it (their lag is in
 * /metrics). Measured on 2 vCPUs (bench/README.md), nice 10 still cost the engine 10-28% of its throughput while
 * the relay kept up; nice 19 cost it 1-8% by the medians of two invocations (-16% to +20% run by run), and the
 * relay delivers with what CPU is left. With
 * HOTLEDGER_RELAY_METRICS_PORT set it serves GET /metrics (each sink's cursor, lag, deliveries and failures, in the
 * gateway's Prometheus format) on 127.0.0.1 at that port.
 */
import { setPriority } from "node:os";
import { prometheusText } from "../../transports/http/index.ts";
import { ConfigError, integer, loadConfig } from "./config.ts";
import { startOutputs } from "./outputs.ts";

async function main(): Promise<void> {
  let outputs;
  let metricsPort: number | undefined;
  try {
    const config = loadConfig();
    setPriority(0, integer("HOTLEDGER_RELAY_NICE", process.env.HOTLEDGER_RELAY_NICE ?? 19, -20, 19));
    const port = process.env.HOTLEDGER_RELAY_METRICS_PORT;
    metricsPort = port === undefined ? undefined : integer("HOTLEDGER_RELAY_METRICS_PORT", port, 0, 65535);
    if (config.outputs.length === 0) throw new ConfigError("no outputs configured (HOTLEDGER_OUTPUTS=none)");
    outputs = startOutputs(config, console.log);
    await outputs.ready;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger relay: bad configuration: ${error.message}`);
    process.exit(2);
  }
  if (metricsPort !== undefined) {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: metricsPort,
      fetch: (request) =>
        new URL(request.url).pathname === "/metrics"
          ? new Response(prometheusText([], outputs.status()), { headers: { "content-type": "text/plain; version=0.0.4" } })
          : new Response("not found", { status: 404 }),
    });
    console.log(`hotledger relay: metrics on http://127.0.0.1:${server.port}/metrics`);
  }
  console.log("hotledger relay: running");
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`hotledger relay: ${signal}, stopping`);
    await outputs.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

if (import.meta.main) await main();
