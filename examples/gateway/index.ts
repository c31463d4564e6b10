/**
 * The runnable gateway (`npm start`): durable shards, one per data directory, each on its own worker thread
 * (HOTLEDGER_WORKERS=0: in this thread), behind the HTTP transport (and NATS when NATS_URL is set). Defaults: 4 shards, journals and snapshots under ./data, HTTP on 127.0.0.1:3000; configure with
 * HOTLEDGER_* variables or a JSON file (examples/gateway/config.ts). With no keys configured it makes a demo
 * partner key and an internal key for this run (only their SHA-256 is kept) and prints a curl line that works.
 * SIGTERM or SIGINT: stop accepting, drain, snapshot, close the journals, exit 0 (during recovery: once the shards are
 * open). HTTP listens before the shards recover (/readyz 503 until they are open); one gateway per data directory.
 */
import { dlopen, FFIType } from "bun:ffi";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Shard, ShardMap, ShardUnavailableError, type Account, type Command, type Relay, type Result, type ShardMetrics } from "../../core/index.ts";
import { FileJournal, keepJournalForOutputs, readJournalFloor } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { readFileIfExists, writeFileAtomic } from "../../adapters/atomic-file.ts";
import { hashKey, KeyRing, type KeyConfig } from "../../transports/auth.ts";
import { RoutingGateway, type Gateway, type HistoryReader, type OutputsView, type ShardPort } from "../../transports/gateway.ts";
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
  /** Resolves once the inline outputs run (their projection serves history); undefined without inline outputs. */
  outputsReady?: Promise<void>;
  stop(): Promise<void>;
}

/** How long a graceful stop waits for the outputs to deliver what the shards applied before it stops them. */
const OUTPUTS_DRAIN_MS_MAX = 5_000;

/** Retry-After of a request that arrives while the shards recover. */
const RECOVERING_RETRY_MS = 1_000;

/** How long `npm start` waits for the inline outputs before it prints the demo's curl lines (history needs them). */
const DEMO_OUTPUTS_WAIT_MS = 10_000;

/**
 * Listen on HTTP first (a port in use fails the start before the data directory is touched, and /healthz and
 * /readyz answer during a long replay: 503 until every shard is open), lock the data directory, check its routing,
 * open (recover) every shard, start the outputs (unless HOTLEDGER_RELAY=separate: then `examples/gateway/relay.ts`
 * runs them), and serve on NATS when `config.natsUrl` is set.
 */
export async function startGateway(config: GatewayConfig, log: (line: string) => void = console.log): Promise<RunningGateway> {
  let keys: KeyConfig[] = config.keys;
  let demo: RunningGateway["demo"];
  if (keys.length === 0) {
    demo = { partnerId: "demo", partnerKey: `demo-${randomBytes(16).toString("hex")}`, internalKey: `internal-${randomBytes(16).toString("hex")}` };
    keys = [
      { sha256: hashKey(demo.partnerKey), partnerId: demo.partnerId },
      { sha256: hashKey(demo.internalKey), internal: "demo-admin" },
    ];
  }
  const keyRing = new KeyRing(keys);
  const recovering = new RecoveringGateway();
  let outputs: ReturnType<typeof startOutputs> | undefined;
  const outputsView = config.relay === "inline" && config.outputs.length > 0 ? startedOutputsView(config, () => outputs) : undefined;
  const app = createHttpApp({ gateway: recovering, keys: keyRing, outputs: outputsView });
  try {
    // createHttpApp listens without SO_REUSEPORT: a second gateway on the port fails here.
    app.listen({ hostname: config.host, port: config.port });
  } catch (error) {
    throw new ConfigError(`HOTLEDGER_HOST/HOTLEDGER_PORT ${config.host}:${config.port}: cannot listen: ${(error as Error).message}`);
  }
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${app.server?.port}`;
  log(`hotledger gateway: recovering ${config.shards} shards; ${url}/readyz answers 503 until they are open`);
  let unlock: () => void;
  try {
    unlock = lockDataDirectory(config.dataDirectory, log);
    try {
      await checkRouting(config);
    } catch (error) {
      unlock();
      throw error;
    }
  } catch (error) {
    await app.stop();
    throw error;
  }
  let shards: Awaited<ReturnType<typeof openShards>>;
  try {
    shards = await openShards(config, log);
  } catch (error) {
    // Recovery failed (a damaged snapshot or journal, a disk error): the start leaves nothing behind, HTTP included.
    unlock();
    await app.stop();
    throw error;
  }
  const gateway = new RoutingGateway(shards, new ShardMap({ shardCount: config.shards, pinned: config.pinned }));
  recovering.gateway = gateway;
  outputs = config.relay === "inline" && config.outputs.length > 0 ? startOutputs(config, log) : undefined;
  let nats: NatsTransport | undefined;
  let stopped: Promise<void> | undefined;
  const stopOnce = async () => {
    await app.stop();
    await nats?.stop();
    // Nothing new arrives now; what is sequenced is journaled by close, and then the relays can deliver it.
    const lastSequences = (await gateway.metrics()).map((metrics) => metrics.lastSequenced);
    await Promise.all(shards.map((shard) => shard.close()));
    if (outputs !== undefined) {
      if (outputs.relays.length > 0) await drainOutputs(outputs.relays, lastSequences, log);
      await outputs.stop();
    }
    unlock();
  };
  const running: RunningGateway = {
    url,
    demo,
    outputsReady: outputs?.ready,
    // A second call waits for the first: shards, journals and the lock are closed once.
    stop: () => (stopped ??= stopOnce()),
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

/** Open (recover) every shard, on a worker thread each or in this thread. */
async function openShards(config: GatewayConfig, log: (line: string) => void): Promise<(ShardPort & { close(): Promise<void> })[]> {
  const shards: (ShardPort & { close(): Promise<void> })[] = [];
  try {
    for (let index = 0; index < config.shards; index++) shards.push(await openShard(config, index, log));
  } catch (error) {
    // A failed start leaves nothing open: the shards recovered so far close (their journals flushed) before it throws.
    await Promise.allSettled(shards.map((shard) => shard.close()));
    throw error;
  }
  return shards;
}

/** Open (recover) shard `index`, on a worker thread or in this thread; a failed open closes what it opened. */
async function openShard(config: GatewayConfig, index: number, log: (line: string) => void): Promise<ShardPort & { close(): Promise<void> }> {
  const directory = join(config.dataDirectory, `shard-${index}`);
  const shardLog = (line: string) => log(`shard ${index}: ${line}`);
  // The relay starts after the shard (or in its own process): the journal must keep what it has not read yet.
  if (config.outputs.length > 0) await keepJournalForOutputs(shardDirectories(config, index).journal);
  if (config.workers) {
    return WorkerShard.start(
      {
        directory,
        fsync: config.fsync,
        accountsMax: config.accountsMax,
        idempotencyCommandsMax: config.idempotencyCommandsMax,
        snapshotEveryCommands: config.snapshotEveryCommands,
        snapshotEveryMs: config.snapshotEveryMs,
      },
      shardLog,
    );
  }
  const journalDirectory = shardDirectories(config, index).journal;
  const journal = await FileJournal.open({ directory: journalDirectory, fsync: config.fsync, log: shardLog });
  try {
    return await Shard.open({
      journal,
      journalFloor: () => readJournalFloor(journalDirectory),
      snapshots: await FileSnapshotStore.open({ directory: join(directory, "snapshots"), log: shardLog }),
      accountsMax: config.accountsMax,
      idempotencyCommandsMax: config.idempotencyCommandsMax,
      snapshotEveryCommands: config.snapshotEveryCommands,
      snapshotEveryMs: config.snapshotEveryMs,
      yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
      log: shardLog,
    });
  } catch (error) {
    await journal.close().catch(() => undefined);
    throw error;
  }
}

/**
 * The gateway HTTP serves from the start: not ready, and every shard unavailable (503 with Retry-After) until
 * `gateway` is set, when the shards are open; then that gateway.
 */
class RecoveringGateway implements Gateway {
  gateway: Gateway | undefined;

  private open(): Gateway {
    if (this.gateway === undefined) throw new ShardUnavailableError("the shards are recovering", RECOVERING_RETRY_MS);
    return this.gateway;
  }

  // Plain delegation, no async wrapper: the request path pays no extra promise once the shards are open. While they
  // recover, open() throws synchronously; the transport awaits the call inside its try and answers 503.
  submit(commands: readonly Command[], options?: { atomic?: boolean; mode?: "sync" | "async" }): Promise<Result[]> {
    return this.open().submit(commands, options);
  }

  account(partnerId: string, accountId: string): Promise<Account | undefined> {
    return this.open().account(partnerId, accountId);
  }

  storedResult(partnerId: string, id: string): Promise<Result | undefined> {
    return this.open().storedResult(partnerId, id);
  }

  ready(): boolean {
    return this.gateway?.ready() ?? false;
  }

  metrics(): Promise<ShardMetrics[]> {
    return this.open().metrics();
  }
}

/** The outputs as HTTP sees them: until they start (after the shards) no sinks and history unavailable (503); then `started()`. */
function startedOutputsView(config: GatewayConfig, started: () => OutputsView | undefined): OutputsView {
  const history: HistoryReader = {
    entries(partnerId, accountId, page) {
      const reader = started()?.history;
      if (reader === undefined || reader === null) throw new ShardUnavailableError("the shards are recovering", RECOVERING_RETRY_MS);
      return reader.entries(partnerId, accountId, page);
    },
  };
  return {
    status: () => started()?.status() ?? [],
    history: config.outputs.includes("postgres") ? history : null,
  };
}

/** flock(2)'s operation: an exclusive lock (LOCK_EX), refused at once when held (LOCK_NB) instead of waiting. */
const LOCK_EXCLUSIVE_NOW = 2 | 4;

/**
 * Take `<data>/lock` with flock(2) while the gateway runs, or fail with a ConfigError: two processes appending to
 * one journal would overwrite each other's records. The kernel drops the lock when the process ends, however it
 * ends, so a crash leaves nothing stale. node:fs has no flock; libc's is called through bun:ffi. Where no libc with
 * flock loads, the start goes on unlocked, with a warning. Returns the release.
 */
function lockDataDirectory(directory: string, log: (line: string) => void): () => void {
  const path = join(directory, "lock");
  let descriptor: number;
  try {
    mkdirSync(directory, { recursive: true });
    descriptor = openSync(path, "a");
  } catch (error) {
    throw new ConfigError(`HOTLEDGER_DATA ${directory}: cannot create ${path}: ${(error as Error).message}`);
  }
  const library = process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
  let flock: (descriptor: number, operation: number) => number;
  try {
    flock = dlopen(library, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } }).symbols.flock;
  } catch (error) {
    log(`hotledger gateway: ${directory} is not locked against a second gateway: no flock in ${library}: ${(error as Error).message}`);
    return () => closeSync(descriptor);
  }
  if (flock(descriptor, LOCK_EXCLUSIVE_NOW) !== 0) {
    closeSync(descriptor);
    throw new ConfigError(`HOTLEDGER_DATA ${directory} is in use by another gateway (${path} is locked): one writer per data directory`);
  }
  return () => closeSync(descriptor);
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
 * The record is written atomically and durably before any shard directory exists: a crash during the first start
 * leaves either no record and no shard data, or both.
 */
export async function checkRouting(config: GatewayConfig): Promise<void> {
  const path = join(config.dataDirectory, "routing.json");
  const routing = JSON.stringify({ shards: config.shards, pinned: config.pinned });
  let stored: string;
  try {
    mkdirSync(config.dataDirectory, { recursive: true });
    const text = await readFileIfExists(path);
    if (text === undefined) {
      await writeFileAtomic(path, `${routing}\n`);
      return;
    }
    stored = text.trim();
  } catch (error) {
    throw new ConfigError(`HOTLEDGER_DATA ${config.dataDirectory}: cannot record its routing in ${path}: ${(error as Error).message}`);
  }
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
  let running: RunningGateway | undefined;
  let stopping: string | undefined;
  const shutdown = async (gateway: RunningGateway, signal: string) => {
    console.log(`hotledger gateway: ${signal}, draining`);
    await gateway.stop();
    console.log("hotledger gateway: stopped");
    process.exit(0);
  };
  // From before the shards open: a signal during recovery stops the gateway as soon as they are open (with a final
  // snapshot, so the next start need not replay again), instead of killing it.
  const onSignal = (signal: string) => {
    if (stopping !== undefined) return;
    stopping = signal;
    if (running !== undefined) void shutdown(running, signal);
    else console.log(`hotledger gateway: ${signal} while starting: stopping once the shards are open`);
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    running = await startGateway(config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`hotledger: bad configuration: ${error.message}`);
    process.exit(2);
  }
  if (stopping !== undefined) return shutdown(running, stopping);
  const where = config.workers ? "on worker threads" : "in process";
  console.log(`hotledger gateway: ${config.shards} shards ${where}, data in ${config.dataDirectory}, listening on ${running.url}`);
  if (running.demo) {
    const { partnerId, partnerKey, internalKey } = running.demo;
    // The history line answers 503 until the projection is open (PGlite takes a moment): print the lines once it is.
    if (running.outputsReady !== undefined) {
      const ready = await Promise.race([running.outputsReady.then(() => true), sleep(DEMO_OUTPUTS_WAIT_MS, undefined, { ref: false }).then(() => false)]);
      if (!ready) console.log(`outputs not running after ${DEMO_OUTPUTS_WAIT_MS} ms: the history line answers 503 until they are`);
    }
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
}

if (import.meta.main) await main();
