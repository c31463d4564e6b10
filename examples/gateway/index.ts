/**
 * The runnable gateway (`npm start`): durable shards, one per data directory, each on its own worker thread
 * (HOTLEDGER_WORKERS=0: in this thread), behind the HTTP transport (and NATS when NATS_URL is set). Defaults: 4 shards, journals and snapshots under ./data, HTTP on 127.0.0.1:3000; configure with
 * HOTLEDGER_* variables or a JSON file (examples/gateway/config.ts). With no keys configured it makes a demo
 * partner key and an internal key for this run (only their SHA-256 is kept) and prints a curl line that works.
 * SIGTERM or SIGINT: stop accepting, drain, snapshot, close the journals, exit 0.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Shard, ShardMap, type Relay } from "../../core/index.ts";
import { FileJournal, keepJournalForOutputs, readJournalFloor } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { hashKey, KeyRing, type KeyConfig } from "../../transports/auth.ts";
import { RoutingGateway, type ShardPort } from "../../transports/gateway.ts";
import { WorkerShard } from "../../transports/worker/index.ts";
import { createHttpApp } from "../../transports/http/index.ts";
import { startNatsTransport, type NatsTransport } from "../../transports/nats/index.ts";
import { ConfigError, loadConfig, type GatewayConfig } from "./config.ts";
import { shardDirectories, startOutputs } from "./outputs.ts";

/** A started gateway. */
export interface RunningGateway {
  url: string;
  /** Keys made for this run when none were configured. */
  demo?: { partnerId: string; partnerKey: string; internalKey: string };
  stop(): Promise<void>;
}

/** How long a graceful stop waits for the outputs to deliver what the shards applied before it stops them. */
const OUTPUTS_DRAIN_MS_MAX = 5_000;

/**
 * Open (recover) every shard, start the outputs (unless HOTLEDGER_RELAY=separate: then `examples/gateway/relay.ts`
 * runs them), then listen on HTTP, and on NATS when `config.natsUrl` is set.
 */
export async function startGateway(config: GatewayConfig, log: (line: string) => void = console.log): Promise<RunningGateway> {
  checkRouting(config);
  const shards: (ShardPort & { close(): Promise<void> })[] = [];
  for (let index = 0; index < config.shards; index++) {
    const directory = join(config.dataDirectory, `shard-${index}`);
    const shardLog = (line: string) => log(`shard ${index}: ${line}`);
    // The relay starts after the shard (or in its own process): the journal must keep what it has not read yet.
    if (config.outputs.length > 0) await keepJournalForOutputs(shardDirectories(config, index).journal);
    if (config.workers) {
      shards.push(
        await WorkerShard.start(
          {
            directory,
            fsync: config.fsync,
            accountsMax: config.accountsMax,
            idempotencyCommandsMax: config.idempotencyCommandsMax,
            snapshotEveryCommands: config.snapshotEveryCommands,
            snapshotEveryMs: config.snapshotEveryMs,
          },
          shardLog,
        ),
      );
      continue;
    }
    const journalDirectory = shardDirectories(config, index).journal;
    shards.push(
      await Shard.open({
        journal: await FileJournal.open({ directory: journalDirectory, fsync: config.fsync, log: shardLog }),
        journalFloor: () => readJournalFloor(journalDirectory),
        snapshots: await FileSnapshotStore.open({ directory: join(directory, "snapshots"), log: shardLog }),
        accountsMax: config.accountsMax,
        idempotencyCommandsMax: config.idempotencyCommandsMax,
        snapshotEveryCommands: config.snapshotEveryCommands,
        snapshotEveryMs: config.snapshotEveryMs,
        yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
        log: shardLog,
      }),
    );
  }
  let keys: KeyConfig[] = config.keys;
  let demo: RunningGateway["demo"];
  if (keys.length === 0) {
    demo = { partnerId: "demo", partnerKey: `demo-${randomBytes(16).toString("hex")}`, internalKey: `internal-${randomBytes(16).toString("hex")}` };
    keys = [
      { sha256: hashKey(demo.partnerKey), partnerId: demo.partnerId },
      { sha256: hashKey(demo.internalKey), internal: "demo-admin" },
    ];
  }
  const gateway = new RoutingGateway(shards, new ShardMap({ shardCount: config.shards, pinned: config.pinned }));
  const keyRing = new KeyRing(keys);
  const outputs = config.relay === "inline" && config.outputs.length > 0 ? startOutputs(config, log) : undefined;
  const app = createHttpApp({ gateway, keys: keyRing, outputs }).listen({ hostname: config.host, port: config.port });
  const url = `http://${config.host}:${app.server?.port}`;
  let nats: NatsTransport | undefined;
  const running: RunningGateway = {
    url,
    demo,
    async stop() {
      await app.stop();
      await nats?.stop();
      // Nothing new arrives now; what is sequenced is journaled by close, and then the relays can deliver it.
      const lastSequences = (await gateway.metrics()).map((metrics) => metrics.lastSequenced);
      await Promise.all(shards.map((shard) => shard.close()));
      if (outputs !== undefined) {
        if (outputs.relays.length > 0) await drainOutputs(outputs.relays, lastSequences, log);
        await outputs.stop();
      }
    },
  };
  if (config.natsUrl) {
    try {
      nats = await startNatsTransport({ servers: config.natsUrl, gateway, keys: keyRing });
    } catch (error) {
      // Everything opened so far closes as at shutdown; then the start fails with the setting's name.
      await running.stop();
      throw new ConfigError(`NATS_URL ${config.natsUrl}: cannot start the NATS transport: ${(error as Error).message}`);
    }
    log(`hotledger gateway: NATS request/reply on ${config.natsUrl}, subject hotledger.v1.commands, queue hotledger`);
  }
  return running;
}

/** Give the relays a bounded moment to deliver up to `lastSequences` (one per shard); log what is left. */
async function drainOutputs(relays: readonly Relay[], lastSequences: readonly number[], log: (line: string) => void): Promise<void> {
  const deadline = AbortSignal.timeout(OUTPUTS_DRAIN_MS_MAX);
  const caughtUp = Promise.all(relays.map((relay, index) => relay.caughtUp(lastSequences[index])));
  const timedOut = new Promise<"timeout">((resolve) => deadline.addEventListener("abort", () => resolve("timeout")));
  if ((await Promise.race([caughtUp, timedOut])) === "timeout") {
    log(`outputs: not caught up after ${OUTPUTS_DRAIN_MS_MAX} ms; they resume from their cursors at the next start`);
  }
}

/**
 * The data directory remembers how partners were routed (shard count and pinned partners) the first time. A later
 * start with different routing would send partners to shards that do not hold their accounts, so it is refused.
 */
export function checkRouting(config: GatewayConfig): void {
  mkdirSync(config.dataDirectory, { recursive: true });
  const path = join(config.dataDirectory, "routing.json");
  const routing = JSON.stringify({ shards: config.shards, pinned: config.pinned });
  if (!existsSync(path)) {
    writeFileSync(path, `${routing}\n`);
    return;
  }
  const stored = readFileSync(path, "utf8").trim();
  if (!sameRouting(stored, config)) {
    throw new ConfigError(
      `${path} says the data was written with routing ${stored}, but the configuration is ${routing}: moving partners between shards is not supported`,
    );
  }
}

/** Whether routing.json's text names the same shard count and pinned partners (in any order) as `config`. */
function sameRouting(stored: string, config: GatewayConfig): boolean {
  let parsed: { shards?: unknown; pinned?: unknown };
  try {
    parsed = JSON.parse(stored) as typeof parsed;
  } catch {
    return false;
  }
  const pinned = (parsed?.pinned ?? {}) as Record<string, unknown>;
  const wanted = Object.entries(config.pinned);
  return parsed?.shards === config.shards && typeof pinned === "object" && Object.keys(pinned).length === wanted.length &&
    wanted.every(([partnerId, shard]) => pinned[partnerId] === shard);
}

async function main(): Promise<void> {
  let config: GatewayConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger: bad configuration: ${error.message}`);
    process.exit(2);
  }
  let running: RunningGateway;
  try {
    running = await startGateway(config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger: bad configuration: ${error.message}`);
    process.exit(2);
  }
  const where = config.workers ? "on worker threads" : "in process";
  console.log(`hotledger gateway: ${config.shards} shards ${where}, data in ${config.dataDirectory}, listening on ${running.url}`);
  if (running.demo) {
    const { partnerId, partnerKey, internalKey } = running.demo;
    console.log(`demo partner "${partnerId}" key (this run only): ${partnerKey}`);
    console.log(`internal key (this run only): ${internalKey}`);
    console.log("try:");
    console.log(
      `  curl -s -X POST ${running.url}/v1/accounts -H 'Authorization: Bearer ${partnerKey}' -H 'Content-Type: application/json' ` +
        `-d '{"partnerId":"${partnerId}","accountId":"wallet:alice","currency":"USD"}'`,
    );
    console.log(
      `  curl -s -X POST ${running.url}/v1/credit -H 'Authorization: Bearer ${partnerKey}' -H 'Content-Type: application/json' ` +
        `-d '{"id":"topup-1","partnerId":"${partnerId}","accountId":"wallet:alice","amount":10000}'`,
    );
    // History is served by the gateway only when its relays run inside it (a separate relay's projection is its own).
    if (config.outputs.includes("postgres") && config.relay === "inline") {
      console.log(`  curl -s ${running.url}/v1/accounts/${partnerId}/wallet:alice/entries -H 'Authorization: Bearer ${partnerKey}'`);
    }
  }
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`hotledger gateway: ${signal}, draining`);
    await running.stop();
    console.log("hotledger gateway: stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

if (import.meta.main) await main();
