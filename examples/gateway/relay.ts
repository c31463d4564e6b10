/**
 * The output relays as their own process: `bun examples/gateway/relay.ts`, with the gateway's configuration (same
 * env vars and config file) and the gateway started with HOTLEDGER_RELAY=separate. It only reads the shards' data
 * directories (journals and snapshots) and writes its own state beside them (relay snapshots, the journal floor),
 * so it can be killed and restarted at any moment: every sink resumes from its own cursor.
 * SIGTERM or SIGINT: finish the delivery in progress, close the sinks, exit 0.
 */
import { ConfigError, loadConfig } from "./config.ts";
import { startOutputs } from "./outputs.ts";

async function main(): Promise<void> {
  let outputs;
  try {
    const config = loadConfig();
    if (config.outputs.length === 0) throw new ConfigError("no outputs configured (HOTLEDGER_OUTPUTS=none)");
    outputs = startOutputs(config, console.log);
    await outputs.ready;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger relay: bad configuration: ${error.message}`);
    process.exit(2);
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
