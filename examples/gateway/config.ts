/**
 * Gateway configuration: defaults, then an optional JSON file (HOTLEDGER_CONFIG), then environment variables.
 * Anything wrong fails at start with a message naming the setting; nothing is guessed.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { FsyncPolicy } from "../../adapters/journal-file/index.ts";
import type { KeyConfig } from "../../transports/auth.ts";

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
   * Shards on worker threads, or in the gateway's own thread. Default: workers when the machine has at least
   * WORKERS_CORES_MIN cores; measured on 2 vCPUs (bench/README.md), in-thread shards were ~1.7x faster there.
   */
  workers: boolean;
}

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
  workers: availableParallelism() >= WORKERS_CORES_MIN,
};

function integer(name: string, value: unknown, min: number, max: number): number {
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof number !== "number" || !Number.isInteger(number) || number < min || number > max) {
    throw new ConfigError(`${name} must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return number;
}

/** Read the configuration from `env` (and the file it names). */
export function loadConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  let file: Partial<GatewayConfig> = {};
  if (env.HOTLEDGER_CONFIG) {
    try {
      file = JSON.parse(readFileSync(env.HOTLEDGER_CONFIG, "utf8")) as Partial<GatewayConfig>;
    } catch (cause) {
      throw new ConfigError(`HOTLEDGER_CONFIG ${env.HOTLEDGER_CONFIG}: ${(cause as Error).message}`);
    }
    const known = new Set(Object.keys(DEFAULTS));
    for (const key of Object.keys(file)) if (!known.has(key)) throw new ConfigError(`unknown setting "${key}" in ${env.HOTLEDGER_CONFIG}`);
  }
  const merged = { ...DEFAULTS, ...file };
  const fsync = env.HOTLEDGER_FSYNC ?? merged.fsync;
  if (fsync !== "batch" && fsync !== "interval" && fsync !== "never") {
    throw new ConfigError(`HOTLEDGER_FSYNC must be batch, interval or never, got ${JSON.stringify(fsync)}`);
  }
  return {
    ...merged,
    shards: integer("HOTLEDGER_SHARDS", env.HOTLEDGER_SHARDS ?? merged.shards, 1, 64),
    port: integer("HOTLEDGER_PORT", env.HOTLEDGER_PORT ?? merged.port, 0, 65535),
    host: env.HOTLEDGER_HOST ?? merged.host,
    dataDirectory: env.HOTLEDGER_DATA ?? merged.dataDirectory,
    accountsMax: integer("accountsMax", merged.accountsMax, 1, 1 << 24),
    idempotencyCommandsMax: integer("idempotencyCommandsMax", merged.idempotencyCommandsMax, 1000, 1 << 24),
    fsync,
    workers: env.HOTLEDGER_WORKERS === undefined ? merged.workers !== false : env.HOTLEDGER_WORKERS !== "0",
  };
}
