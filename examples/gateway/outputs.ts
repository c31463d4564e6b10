/**
 * The gateway's outputs: one Relay per shard (core/outputs.ts) tailing that shard's journal under the data
 * directory and feeding the configured sinks, each with its own durable cursor. The gateway runs them in its own
 * process by default; `bun examples/gateway/relay.ts` runs the same relays as a separate process (the deployment
 * where an adapter crash or a slow broker cannot touch the gateway), with the same configuration.
 *
 * The relays need the shards' engine options (accountsMax, idempotency window): they re-apply the journal, so the
 * configuration must be the one the shards run with.
 */
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Relay, ShardUnavailableError, type OutputSink, type RelayOptions, type SinkStatus } from "../../core/index.ts";
import { FileJournalTail, writeJournalFloor } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { openPgliteSink, openPostgresSink, type PostgresSink } from "../../adapters/postgres/index.ts";
import { openJetStreamSink } from "../../adapters/jetstream/index.ts";
import { openKafkaSink } from "../../adapters/kafka/index.ts";
import type { HistoryReader, OutputsView } from "../../transports/gateway.ts";
import { runtimeAscii } from "../../transports/ascii.ts";
import type { GatewayConfig } from "./config.ts";

/** A relay that stopped for good (Relay.ended): its shard, and why. */
export interface RelayFailure {
  shard: number;
  error: Error;
}

/** Running relays, as the HTTP transport sees them, plus stop. */
export interface RunningOutputs extends OutputsView {
  /** Resolves once every relay runs (never rejects: a failed start is logged and retried). */
  ready: Promise<void>;
  /** Every shard's relay, by shard index; empty until ready. */
  relays: readonly Relay[];
  /**
   * Resolves with the first relay that stops for good (its sinks stay open until stop()); never when stop() ends
   * them, and never rejects. The separate relay process exits on it; the gateway's inline relays only log it.
   */
  failed: Promise<RelayFailure>;
  stop(): Promise<void>;
}

/** What the process running the relays adds to the configuration. */
export interface OutputsOptions {
  /** Every relay's `pace` (RelayOptions.pace): the CPU budget of a process that runs relays only. */
  pace?: RelayOptions["pace"];
}

/** A delivery not settled after this long is retried from the sink's cursor. */
const DELIVER_TIMEOUT_MS = 30_000;

/** Wait between attempts to open the sinks when a server is unreachable at start. */
const OPEN_RETRY_MS = 2_000;

/** The journal, snapshots and relay state directories of shard `index`. */
export function shardDirectories(config: GatewayConfig, index: number) {
  const directory = join(config.dataDirectory, `shard-${index}`);
  return {
    journal: join(directory, "journal"),
    snapshots: join(directory, "snapshots"),
    relaySnapshots: join(directory, "relay-snapshots"),
  };
}

/**
 * Start the outputs in the background and return at once: the ledger never waits for them (PGlite alone takes
 * seconds to start, and a database may be down). Until they run, history answers "unavailable, retry later" and
 * status lists nothing; a failed start (a server unreachable) is logged and retried every OPEN_RETRY_MS.
 */
export function startOutputs(config: GatewayConfig, log: (line: string) => void, options: OutputsOptions = {}): RunningOutputs {
  const relays: Relay[] = [];
  let projection: PostgresSink | null = null;
  let stopped = false;
  const stopSignal = new AbortController();
  let stopOpened = async () => {};
  let reportFailure: (failure: RelayFailure) => void = () => {};
  const failed = new Promise<RelayFailure>((resolve) => (reportFailure = resolve));
  const history: HistoryReader = {
    entries(partnerId, accountId, page) {
      if (projection === null || relays.length < config.shards) {
        throw new ShardUnavailableError("the history projection is starting", OPEN_RETRY_MS);
      }
      return projection.entries(partnerId, accountId, page);
    },
  };
  const ready = (async () => {
    for (let attempt = 1; !stopped; attempt++) {
      try {
        const opened = await openOutputs(config, log, options);
        if (stopped) {
          await opened.stop();
          return;
        }
        projection = opened.projection;
        relays.push(...opened.relays);
        stopOpened = opened.stop;
        opened.relays.forEach((relay, shard) => {
          void relay.ended.then((error) => {
            if (error !== null && !stopped) reportFailure({ shard, error });
          });
        });
        return;
      } catch (error) {
        log(`outputs: start failed (attempt ${attempt}), retrying in ${OPEN_RETRY_MS} ms: ${(error as Error).message}`);
        // Cut short by stop(): a process told to stop while its sinks' servers are down stops at once.
        await sleep(OPEN_RETRY_MS, undefined, { signal: stopSignal.signal }).catch(() => undefined);
      }
    }
  })();
  return {
    ready,
    relays,
    failed,
    history: config.outputs.includes("postgres") ? history : null,
    status: (): SinkStatus[] => relays.flatMap((relay) => relay.status()),
    async stop() {
      stopped = true;
      stopSignal.abort();
      await ready;
      await stopOpened();
    },
  };
}

/**
 * Open the configured sinks and start a relay per shard; on any failure close what was opened and throw. Every
 * sink is one connection shared by all relays: each relay delivers only its own shard's events (its own cursor
 * row, its own subject), and a sink takes concurrent deliveries of different shards.
 */
async function openOutputs(config: GatewayConfig, log: (line: string) => void, options: OutputsOptions) {
  const shared: OutputSink[] = [];
  let projection: PostgresSink | null = null;
  const relays: Relay[] = [];
  const stop = async () => {
    await Promise.all(relays.map((relay) => relay.stop()));
    await Promise.all(shared.map((sink) => sink.close()));
  };
  try {
    if (config.outputs.includes("postgres")) {
      projection = config.databaseUrl
        ? await openPostgresSink({ url: config.databaseUrl })
        : await openPgliteSink({ dataDir: join(config.dataDirectory, "projection") });
      shared.push(projection);
    }
    if (config.outputs.includes("jetstream")) {
      shared.push(await openJetStreamSink({ servers: config.natsUrl!, envelope: config.jetstreamEnvelope, log: (line) => log(`outputs: ${line}`) }));
    }
    if (config.outputs.includes("kafka")) {
      shared.push(await openKafkaSink({
        brokers: config.kafkaBrokers!.split(",").map((broker) => broker.trim()),
        clientId: "hotledger",
        topic: config.kafkaTopic,
        cursorFile: join(config.dataDirectory, "kafka-cursor.json"),
      }));
    }
    for (let index = 0; index < config.shards; index++) {
      const directories = shardDirectories(config, index);
      const sinks: OutputSink[] = shared.map(unclosable);
      relays.push(
        await Relay.start({
          shard: index,
          sinks,
          accountsMax: config.accountsMax,
          idempotencyCommandsMax: config.idempotencyCommandsMax,
          snapshotEveryEvents: config.snapshotEveryCommands,
          ascii: runtimeAscii,
          snapshots: await FileSnapshotStore.open({ directory: directories.snapshots, readOnly: true, log }),
          ownSnapshots: await FileSnapshotStore.open({ directory: directories.relaySnapshots, log }),
          saveJournalFloor: (sequence) => writeJournalFloor(directories.journal, sequence),
          openTail: (afterSequence) => FileJournalTail.open({ directory: directories.journal, afterSequence, sleep, log }),
          sleep: (ms) => sleep(ms, undefined, { ref: false }),
          // A driver can leave a query on a dead connection unsettled (seen with postgres.js after a Postgres
          // outage): such a delivery is abandoned and retried from the cursor.
          deliverTimeoutMs: DELIVER_TIMEOUT_MS,
          yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
          pace: options.pace,
          log: (line) => log(`outputs: ${line}`),
        }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const where = projection !== null && !config.databaseUrl ? ` (PGlite under ${join(config.dataDirectory, "projection")})` : "";
  log(`outputs: ${config.outputs.join(", ")} running for ${config.shards} shards${where}`);
  return { projection, relays, stop };
}

/** A shared sink as one relay's: the relay's stop must not close what the other relays still use. */
function unclosable(sink: OutputSink): OutputSink {
  return {
    name: sink.name,
    cursor: (shard) => sink.cursor(shard),
    deliver: (shard, events) => sink.deliver(shard, events),
    close: async () => {},
  };
}
