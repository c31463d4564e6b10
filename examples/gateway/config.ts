/**
 * Gateway configuration: defaults, then an optional JSON file (HOTLEDGER_CONFIG), then environment variables.
 * Anything wrong fails at start with a message naming the setting; nothing is guessed.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { FsyncPolicy } from "../../adapters/journal-file/index.ts";
import { limits } from "../../core/index.ts";
import { KeyRing, type KeyConfig } from "../../transports/auth.ts";

/** Everything the gateway reads at start. */
export interface GatewayConfig {
  shards: number;
  pinned: Record<string, number>;
  dataDirectory: string;
  host: string;
  port: number;
  fsync: FsyncPolicy;
  keys: KeyConfig[];
  /** Accounts per shard (preallocated: ~190 B each). */
  accountsMax: number;
  idempotencyCommandsMax: number;
  /**
   * A shard snapshots after this many commands (HOTLEDGER_SNAPSHOT_EVERY_COMMANDS) or this much time
   * (HOTLEDGER_SNAPSHOT_EVERY_MS) since its last snapshot, whichever comes first; a restart replays at most that.
   */
  snapshotEveryCommands: number;
  snapshotEveryMs: number;
  /**
   * Shards on worker threads, or in the gateway's own thread. Default: workers when the machine has at least
   * WORKERS_CORES_MIN cores; measured on 2 vCPUs (bench/README.md), in-thread shards were ~1.7x faster there.
   */
  workers: boolean;
  /**
   * Output sinks fed by one relay per shard (core/outputs.ts). Default: "postgres" (a PGlite projection under
   * <data>/projection, or DATABASE_URL), plus "jetstream" when NATS_URL is set and "kafka" when KAFKA_BROKERS is.
   * HOTLEDGER_OUTPUTS=none turns them off; HOTLEDGER_OUTPUTS=postgres,jetstream picks.
   */
  outputs: OutputName[];
  /** Postgres for the projection; undefined: PGlite under <data>/projection. */
  databaseUrl: string | undefined;
  /** NATS for JetStream output (and the NATS transport). */
  natsUrl: string | undefined;
  /** JetStream output: one message per journal batch of events instead of one per event (HOTLEDGER_JETSTREAM_ENVELOPE=1). */
  jetstreamEnvelope: boolean;
  /** Kafka brokers, comma separated, for the Kafka output. */
  kafkaBrokers: string | undefined;
  kafkaTopic: string;
  /** "inline": the gateway runs the output relays; "separate": `examples/gateway/relay.ts` does (HOTLEDGER_RELAY). */
  relay: "inline" | "separate";
}

/** The output sinks the gateway can run. */
export const OUTPUT_NAMES = ["postgres", "jetstream", "kafka"] as const;
export type OutputName = (typeof OUTPUT_NAMES)[number];

/** Thrown for configuration that cannot work; the message names the setting. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Cores from which shards go on worker threads by default. */
export const WORKERS_CORES_MIN = 4;

const DEFAULTS: GatewayConfig = {
  shards: 4,
  pinned: {},
  dataDirectory: "./data",
  host: "127.0.0.1",
  port: 3000,
  fsync: "batch",
  keys: [],
  accountsMax: 1 << 16,
  idempotencyCommandsMax: 1 << 18,
  snapshotEveryCommands: limits.SNAPSHOT_EVERY_COMMANDS_DEFAULT,
  snapshotEveryMs: limits.SNAPSHOT_EVERY_MS_DEFAULT,
  workers: availableParallelism() >= WORKERS_CORES_MIN,
  outputs: ["postgres"],
  databaseUrl: undefined,
  natsUrl: undefined,
  kafkaBrokers: undefined,
  jetstreamEnvelope: false,
  kafkaTopic: "hotledger.events",
  relay: "inline",
};

/** An integer setting in min..max (a number, or a non-empty decimal string), else a ConfigError naming it. */
export function integer(name: string, value: unknown, min: number, max: number): number {
  const number = typeof value === "string" ? (DECIMAL.test(value) ? Number(value) : Number.NaN) : value;
  if (typeof number !== "number" || !Number.isInteger(number) || number < min || number > max) {
    throw new ConfigError(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return number;
}

/** A decimal integer as such: `Number` would also take "1e1", "0x4" and " 4". */
const DECIMAL = /^[0-9]+$/;

/** An on/off setting: "1" or "0" in the environment, true or false in the file; else a ConfigError naming it. */
function flag(name: string, env: string | undefined, file: unknown): boolean {
  if (env !== undefined) {
    if (env !== "0" && env !== "1") throw new ConfigError(`${name} must be 1 or 0, got ${JSON.stringify(env)}`);
    return env === "1";
  }
  if (typeof file !== "boolean") throw new ConfigError(`${name} must be true or false in the configuration file, got ${JSON.stringify(file)}`);
  return file;
}

/** A non-empty string setting, without surrounding whitespace ("./data " would name another directory than ./data). */
function text(name: string, value: unknown): string {
  if (typeof value !== "string" || value === "") throw new ConfigError(`${name} must be a non-empty string, got ${JSON.stringify(value)}`);
  if (value.trim() !== value) throw new ConfigError(`${name} must not start or end with whitespace, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * Every HOTLEDGER_ variable the gateway and its relay process (relay.ts) read. Any other is refused: a typo such as
 * HOTLEDGER_SHRADS would start with the default, and the data directory would keep that routing for good.
 */
export const ENV_NAMES: readonly string[] = [
  "HOTLEDGER_CONFIG", "HOTLEDGER_SHARDS", "HOTLEDGER_WORKERS", "HOTLEDGER_DATA", "HOTLEDGER_HOST", "HOTLEDGER_PORT",
  "HOTLEDGER_FSYNC", "HOTLEDGER_OUTPUTS", "HOTLEDGER_RELAY", "HOTLEDGER_JETSTREAM_ENVELOPE", "HOTLEDGER_KAFKA_TOPIC",
  "HOTLEDGER_SNAPSHOT_EVERY_COMMANDS", "HOTLEDGER_SNAPSHOT_EVERY_MS", "HOTLEDGER_RELAY_NICE", "HOTLEDGER_RELAY_CPU_PERCENT",
  "HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC", "HOTLEDGER_RELAY_METRICS_PORT",
];

/** `pinned`: partner id -> shard index in 0..shards-1. */
function pinnedMap(value: unknown, shards: number): Record<string, number> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`pinned must be an object of partner id -> shard index, got ${JSON.stringify(value)}`);
  }
  for (const [partnerId, shard] of Object.entries(value)) {
    if (!Number.isInteger(shard) || (shard as number) < 0 || (shard as number) >= shards) {
      throw new ConfigError(`pinned.${partnerId} must be a shard index in 0..${shards - 1}, got ${JSON.stringify(shard)}`);
    }
  }
  return value as Record<string, number>;
}

/** Read the configuration from `env` (and the file it names). */
export function loadConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  for (const name of Object.keys(env)) {
    if (name.startsWith("HOTLEDGER_") && !ENV_NAMES.includes(name)) {
      throw new ConfigError(`unknown setting ${name} (known: ${ENV_NAMES.join(", ")})`);
    }
  }
  let file: Partial<GatewayConfig> = {};
  if (env.HOTLEDGER_CONFIG) {
    try {
      file = JSON.parse(readFileSync(env.HOTLEDGER_CONFIG, "utf8")) as Partial<GatewayConfig>;
    } catch (cause) {
      throw new ConfigError(`HOTLEDGER_CONFIG ${env.HOTLEDGER_CONFIG}: ${(cause as Error).message}`);
    }
    if (typeof file !== "object" || file === null || Array.isArray(file)) {
      throw new ConfigError(`HOTLEDGER_CONFIG ${env.HOTLEDGER_CONFIG} must hold a JSON object of settings`);
    }
    const known = new Set(Object.keys(DEFAULTS));
    for (const key of Object.keys(file)) if (!known.has(key)) throw new ConfigError(`unknown setting "${key}" in ${env.HOTLEDGER_CONFIG}`);
  }
  const merged = { ...DEFAULTS, ...file };
  checkKeys(merged.keys, env.HOTLEDGER_CONFIG);
  const fsync = env.HOTLEDGER_FSYNC ?? merged.fsync;
  if (fsync !== "batch" && fsync !== "interval" && fsync !== "never") {
    throw new ConfigError(`HOTLEDGER_FSYNC must be batch, interval or never, got ${JSON.stringify(fsync)}`);
  }
  const natsUrl = env.NATS_URL ?? merged.natsUrl;
  const kafkaBrokers = env.KAFKA_BROKERS ?? merged.kafkaBrokers;
  const outputs = outputList(env.HOTLEDGER_OUTPUTS, file.outputs, natsUrl, kafkaBrokers);
  if (outputs.includes("jetstream") && !natsUrl) throw new ConfigError("the jetstream output needs NATS_URL");
  if (outputs.includes("kafka") && !kafkaBrokers) throw new ConfigError("the kafka output needs KAFKA_BROKERS");
  const shards = integer("HOTLEDGER_SHARDS", env.HOTLEDGER_SHARDS ?? merged.shards, 1, 64);
  const relay = env.HOTLEDGER_RELAY ?? merged.relay;
  if (relay !== "inline" && relay !== "separate") throw new ConfigError(`HOTLEDGER_RELAY must be inline or separate, got ${JSON.stringify(relay)}`);
  return {
    ...merged,
    outputs,
    databaseUrl: env.DATABASE_URL ?? merged.databaseUrl,
    natsUrl,
    kafkaBrokers,
    kafkaTopic: env.HOTLEDGER_KAFKA_TOPIC ?? merged.kafkaTopic,
    relay,
    jetstreamEnvelope: flag("HOTLEDGER_JETSTREAM_ENVELOPE", env.HOTLEDGER_JETSTREAM_ENVELOPE, merged.jetstreamEnvelope),
    shards,
    pinned: pinnedMap(merged.pinned, shards),
    port: integer("HOTLEDGER_PORT", env.HOTLEDGER_PORT ?? merged.port, 0, 65535),
    host: text("HOTLEDGER_HOST", env.HOTLEDGER_HOST ?? merged.host),
    dataDirectory: text("HOTLEDGER_DATA", env.HOTLEDGER_DATA ?? merged.dataDirectory),
    accountsMax: integer("accountsMax", merged.accountsMax, 1, 1 << 24),
    idempotencyCommandsMax: integer("idempotencyCommandsMax", merged.idempotencyCommandsMax, 1000, 1 << 24),
    snapshotEveryCommands: integer("HOTLEDGER_SNAPSHOT_EVERY_COMMANDS", env.HOTLEDGER_SNAPSHOT_EVERY_COMMANDS ?? merged.snapshotEveryCommands, 1000, 1e12),
    snapshotEveryMs: integer("HOTLEDGER_SNAPSHOT_EVERY_MS", env.HOTLEDGER_SNAPSHOT_EVERY_MS ?? merged.snapshotEveryMs, 1000, 7 * 24 * 60 * 60 * 1000),
    fsync,
    workers: flag("HOTLEDGER_WORKERS", env.HOTLEDGER_WORKERS, merged.workers),
  };
}

/** The configured keys must make a KeyRing (hex SHA-256s, one owner each, <= 2 per partner, no repeats). */
function checkKeys(keys: unknown, file: string | undefined): void {
  if (!Array.isArray(keys)) throw new ConfigError(`keys in ${file} must be a list of {sha256, partnerId | internal}`);
  try {
    new KeyRing(keys as KeyConfig[]);
  } catch (error) {
    if (!(error instanceof RangeError) && !(error instanceof TypeError)) throw error;
    throw new ConfigError(`keys in ${file}: ${error.message}`);
  }
}

/** HOTLEDGER_OUTPUTS (or the file's `outputs`), else the default: postgres, plus what the environment enables. */
function outputList(env: string | undefined, file: unknown, natsUrl: string | undefined, kafkaBrokers: string | undefined): OutputName[] {
  if (env === undefined && file === undefined) {
    return [...DEFAULTS.outputs, ...(natsUrl ? ["jetstream" as const] : []), ...(kafkaBrokers ? ["kafka" as const] : [])];
  }
  const names = env !== undefined ? (env.trim() === "none" ? [] : env.split(",").map((name) => name.trim())) : file;
  if (!Array.isArray(names)) throw new ConfigError(`outputs must be a list of ${OUTPUT_NAMES.join(", ")}`);
  for (const name of names) {
    if (!OUTPUT_NAMES.includes(name)) {
      throw new ConfigError(`HOTLEDGER_OUTPUTS: unknown output ${JSON.stringify(name)} (known: ${OUTPUT_NAMES.join(", ")}, or none)`);
    }
  }
  return [...new Set(names as OutputName[])];
}
