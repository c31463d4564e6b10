// Proves the gateway's configuration: defaults, environment overrides, and that bad settings fail at start with
// a message naming the setting; and that a start that fails in recovery leaves nothing open behind it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { ConfigError, loadConfig, WORKERS_CORES_MIN, type GatewayConfig } from "./config.ts";
import { checkRouting, startGateway } from "./index.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hashKey } from "../../transports/auth.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("defaults and environment overrides", () => {
  const defaults = loadConfig({});
  assert.equal(defaults.shards, 4);
  assert.equal(defaults.port, 3000);
  assert.equal(defaults.host, "127.0.0.1");
  assert.equal(defaults.fsync, "batch");
  assert.equal(defaults.workers, availableParallelism() >= WORKERS_CORES_MIN);
  assert.equal(loadConfig({ HOTLEDGER_WORKERS: "0" }).workers, false);
  assert.equal(loadConfig({ HOTLEDGER_WORKERS: "1" }).workers, true);
  assert.equal(defaults.snapshotEveryCommands, 10_000_000);
  assert.equal(defaults.snapshotEveryMs, 60_000);
  const snapshots = loadConfig({ HOTLEDGER_SNAPSHOT_EVERY_COMMANDS: "250000", HOTLEDGER_SNAPSHOT_EVERY_MS: "5000" });
  assert.deepEqual([snapshots.snapshotEveryCommands, snapshots.snapshotEveryMs], [250_000, 5_000]);
  const custom = loadConfig({ HOTLEDGER_SHARDS: "2", HOTLEDGER_PORT: "0", HOTLEDGER_FSYNC: "interval", HOTLEDGER_DATA: "/tmp/x" });
  assert.deepEqual([custom.shards, custom.port, custom.fsync, custom.dataDirectory], [2, 0, "interval", "/tmp/x"]);
});

test("bad configuration fails fast with the setting's name", () => {
  assert.throws(() => loadConfig({ HOTLEDGER_SHARDS: "zero" }), (error: Error) => error instanceof ConfigError && /HOTLEDGER_SHARDS/.test(error.message));
  assert.throws(() => loadConfig({ HOTLEDGER_PORT: "70000" }), /HOTLEDGER_PORT/);
  assert.throws(() => loadConfig({ HOTLEDGER_FSYNC: "sometimes" }), /HOTLEDGER_FSYNC/);
  assert.throws(() => loadConfig({ HOTLEDGER_SNAPSHOT_EVERY_COMMANDS: "10" }), /HOTLEDGER_SNAPSHOT_EVERY_COMMANDS must be an integer in 1000\.\./);
  assert.throws(() => loadConfig({ HOTLEDGER_SNAPSHOT_EVERY_MS: "1500.5" }), /HOTLEDGER_SNAPSHOT_EVERY_MS/);
  assert.throws(() => loadConfig({ HOTLEDGER_CONFIG: "/nonexistent/config.json" }), /HOTLEDGER_CONFIG/);
  for (const shards of ["1e1", "0x4", " 4", "4.0"]) assert.throws(() => loadConfig({ HOTLEDGER_SHARDS: shards }), /HOTLEDGER_SHARDS/, shards);
  for (const value of ["no", "false", "", "true"]) {
    assert.throws(() => loadConfig({ HOTLEDGER_WORKERS: value }), /HOTLEDGER_WORKERS must be 1 or 0/, value);
    assert.throws(() => loadConfig({ HOTLEDGER_JETSTREAM_ENVELOPE: value }), /HOTLEDGER_JETSTREAM_ENVELOPE must be 1 or 0/, value);
  }
  assert.equal(loadConfig({ HOTLEDGER_JETSTREAM_ENVELOPE: "1" }).jetstreamEnvelope, true);
  assert.throws(() => loadConfig({ HOTLEDGER_DATA: "" }), /HOTLEDGER_DATA must be a non-empty string/);
  // "./data " would be another directory than ./data, " 127.0.0.1" no address: refused, not guessed.
  for (const [name, value] of [["HOTLEDGER_DATA", "./data "], ["HOTLEDGER_DATA", "\t./data"], ["HOTLEDGER_HOST", " 127.0.0.1"]]) {
    assert.throws(() => loadConfig({ [name]: value }), new RegExp(`${name} must not start or end with whitespace`), JSON.stringify(value));
  }
});

test("an unknown HOTLEDGER_ variable (a typo) is refused; every variable the gateway and its relay read is known", () => {
  assert.throws(
    () => loadConfig({ HOTLEDGER_SHRADS: "8" }),
    (error: Error) => error instanceof ConfigError && /unknown setting HOTLEDGER_SHRADS \(known: .*HOTLEDGER_SHARDS/.test(error.message),
  );
  const known = {
    HOTLEDGER_SHARDS: "2", HOTLEDGER_WORKERS: "0", HOTLEDGER_DATA: "/tmp/x", HOTLEDGER_HOST: "127.0.0.1", HOTLEDGER_PORT: "0",
    HOTLEDGER_FSYNC: "batch", HOTLEDGER_OUTPUTS: "postgres", HOTLEDGER_RELAY: "separate", HOTLEDGER_JETSTREAM_ENVELOPE: "0",
    HOTLEDGER_KAFKA_TOPIC: "t", HOTLEDGER_SNAPSHOT_EVERY_COMMANDS: "1000", HOTLEDGER_SNAPSHOT_EVERY_MS: "1000",
    HOTLEDGER_RELAY_NICE: "19", HOTLEDGER_RELAY_CPU_PERCENT: "10", HOTLEDGER_RELAY_BUSY_BYTES_PER_SEC: "0", HOTLEDGER_RELAY_METRICS_PORT: "0",
    // Other programs' variables are not the gateway's business.
    PATH: "/bin", NATS_URL: "nats://127.0.0.1:4222",
  };
  assert.equal(loadConfig(known).shards, 2);
});

test("the config file: an object of known settings, pinned partners on existing shards, typed values", () => {
  const directory = mkdtempSync(join(tmpdir(), "hotledger-config-"));
  try {
    const path = join(directory, "config.json");
    const cases: [string, RegExp][] = [
      ["null", /must hold a JSON object of settings/],
      ["[1, 2]", /must hold a JSON object of settings/],
      [JSON.stringify({ shards: 2, pinned: { hot: 5 } }), /pinned\.hot must be a shard index in 0\.\.1, got 5/],
      [JSON.stringify({ shards: 2, pinned: { hot: -1 } }), /pinned\.hot/],
      [JSON.stringify({ shards: 2, pinned: { hot: "1" } }), /pinned\.hot/],
      [JSON.stringify({ pinned: [1, 2] }), /pinned must be an object/],
      [JSON.stringify({ workers: "no" }), /HOTLEDGER_WORKERS must be true or false/],
      [JSON.stringify({ host: 5 }), /HOTLEDGER_HOST must be a non-empty string/],
      [JSON.stringify({ colour: "blue" }), /unknown setting "colour"/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(path, text);
      assert.throws(() => loadConfig({ HOTLEDGER_CONFIG: path }), (error: Error) => error instanceof ConfigError && message.test(error.message), text);
    }
    writeFileSync(path, JSON.stringify({ shards: 2, pinned: { hot: 1, warm: 0 }, workers: false }));
    const config = loadConfig({ HOTLEDGER_CONFIG: path });
    assert.deepEqual([config.shards, config.pinned, config.workers], [2, { hot: 1, warm: 0 }, false]);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test("bad keys in the config file fail at load, before any shard opens", () => {
  const directory = mkdtempSync(join(tmpdir(), "hotledger-keys-"));
  try {
    const hash = hashKey("k");
    const cases: [unknown, RegExp][] = [
      ["not a list", /must be a list/],
      [[{ sha256: "xyz", partnerId: "p" }], /64 lowercase hex/],
      [[{ sha256: hash }], /exactly one of partnerId and internal/],
      [[{ sha256: hash, partnerId: "p" }, { sha256: hash, internal: "ops" }], /repeats an earlier key's hash/],
      [[null], /keys in/],
    ];
    for (const [keys, message] of cases) {
      const path = join(directory, "config.json");
      writeFileSync(path, JSON.stringify({ keys }));
      assert.throws(() => loadConfig({ HOTLEDGER_CONFIG: path }), (error: Error) => error instanceof ConfigError && message.test(error.message), JSON.stringify(keys));
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test("the data directory keeps its routing: a different shard count or pinned map is refused", async () => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "hotledger-routing-"));
  try {
    const config = { ...loadConfig({}), dataDirectory };
    await checkRouting(config);
    await checkRouting(config);
    await assert.rejects(() => checkRouting({ ...config, shards: 8 }), (error: Error) => error instanceof ConfigError && /routing/.test(error.message));
    await assert.rejects(() => checkRouting({ ...config, pinned: { hot: 1 } }), ConfigError);
    // The same routing listed in another order is the same routing.
    const pinned = mkdtempSync(join(tmpdir(), "hotledger-routing-"));
    try {
      await checkRouting({ ...config, dataDirectory: pinned, pinned: { a: 0, b: 1 } });
      await checkRouting({ ...config, dataDirectory: pinned, pinned: { b: 1, a: 0 } });
      await assert.rejects(() => checkRouting({ ...config, dataDirectory: pinned, pinned: { a: 0, b: 2 } }), ConfigError);
      await assert.rejects(() => checkRouting({ ...config, dataDirectory: pinned, pinned: { a: 0 } }), ConfigError);
    } finally {
      rmSync(pinned, { recursive: true, force: true });
    }
  } finally {
    rmSync(dataDirectory, { recursive: true, force: true });
  }
});

test("outputs: postgres by default, jetstream and kafka when their servers are configured, a chosen list, or none", () => {
  assert.deepEqual(loadConfig({}).outputs, ["postgres"]);
  assert.deepEqual(loadConfig({ NATS_URL: "nats://127.0.0.1:4222" }).outputs, ["postgres", "jetstream"]);
  assert.deepEqual(loadConfig({ KAFKA_BROKERS: "127.0.0.1:9092" }).outputs, ["postgres", "kafka"]);
  assert.deepEqual(loadConfig({ HOTLEDGER_OUTPUTS: "none", NATS_URL: "nats://127.0.0.1:4222" }).outputs, []);
  assert.deepEqual(loadConfig({ HOTLEDGER_OUTPUTS: "jetstream, postgres", NATS_URL: "nats://x" }).outputs, ["jetstream", "postgres"]);
  assert.equal(loadConfig({ DATABASE_URL: "postgres://127.0.0.1/test" }).databaseUrl, "postgres://127.0.0.1/test");
  assert.throws(() => loadConfig({ HOTLEDGER_OUTPUTS: "postgres,s3" }), (error: Error) => error instanceof ConfigError && /unknown output "s3"/.test(error.message));
  assert.throws(() => loadConfig({ HOTLEDGER_OUTPUTS: "jetstream" }), /needs NATS_URL/);
  assert.throws(() => loadConfig({ HOTLEDGER_OUTPUTS: "kafka" }), /needs KAFKA_BROKERS/);
});

/** A data directory whose shard 1 is a plain file: recovery throws (not a configuration error) after shard 0 opened. */
async function failedStart(directory: string): Promise<{ config: GatewayConfig; url: string | undefined }> {
  const data = join(directory, "data");
  mkdirSync(data, { recursive: true });
  writeFileSync(join(data, "shard-1"), "not a directory");
  const config = loadConfig({ HOTLEDGER_DATA: data, HOTLEDGER_PORT: "0", HOTLEDGER_SHARDS: "2", HOTLEDGER_WORKERS: "0", HOTLEDGER_OUTPUTS: "none" });
  const lines: string[] = [];
  await assert.rejects(startGateway(config, (line) => lines.push(line)));
  return { config, url: /(http:\/\/\S+)\/readyz/.exec(lines.join("\n"))?.[1] };
}

test("a start whose recovery fails leaves nothing behind: HTTP stops listening, the lock is released, a second stop is harmless", async () => {
  const directory = mkdtempSync(join(tmpdir(), "hotledger-failed-start-"));
  try {
    const { config, url } = await failedStart(directory);
    assert.ok(url !== undefined, "HTTP listened before recovery");
    assert.equal(await fetch(`${url}/healthz`).then(() => "answered", () => "refused"), "refused");
    rmSync(join(config.dataDirectory, "shard-1"));
    const running = await startGateway(config, () => {});
    await running.stop();
    await running.stop(); // the lock's descriptor is closed once (a second close could hit a reused descriptor)
    await startGateway(config, () => {}).then((again) => again.stop());
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
