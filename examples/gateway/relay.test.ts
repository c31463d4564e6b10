// Proves the separate relay process (`bun examples/gateway/relay.ts`) ends the way a supervisor needs: SIGTERM while
// it is still starting (its sink's server unreachable, the start retried) stops it and exits 0, and a relay that
// stops for good (here: the journal no longer holds the sequences its sink needs, a segment was deleted) ends the
// process with exit code 1 and the reason, instead of leaving it running with only the lag to show. Real processes.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Shard } from "../../core/index.ts";
import { FileJournal } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { loadConfig } from "./config.ts";
import { shardDirectories } from "./outputs.ts";

const root = new URL("../../", import.meta.url).pathname;
const directory = mkdtempSync(join(tmpdir(), "hotledger-relay-test-"));
const children: ChildProcessWithoutNullStreams[] = [];
after(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(directory, { recursive: true, force: true });
});

/** Bounds: the line a test waits for (PGlite takes seconds to start on a busy machine), the exit after it. */
const LINE_WAIT_MS = 30_000;
const EXIT_WAIT_MS = 30_000;
const TEST_TIMEOUT_MS = 90_000;

/** The relay process with `env` on top of a clean one (no server of the test machine's environment). */
function startRelay(env: Record<string, string>): { child: ChildProcessWithoutNullStreams; output: () => string } {
  const base = { ...process.env };
  for (const name of ["DATABASE_URL", "NATS_URL", "KAFKA_BROKERS", "HOTLEDGER_CONFIG", "HOTLEDGER_OUTPUTS"]) delete base[name];
  const child = spawn(process.execPath, ["examples/gateway/relay.ts"], { cwd: root, env: { ...base, HOTLEDGER_SHARDS: "1", ...env } });
  children.push(child);
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += `stderr: ${chunk}`));
  return { child, output: () => output };
}

/** Resolves once the output matches `pattern`; rejects after LINE_WAIT_MS or when the process exits first. */
async function waitForOutput(relay: ReturnType<typeof startRelay>, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + LINE_WAIT_MS;
  while (!pattern.test(relay.output())) {
    if (relay.child.exitCode !== null || relay.child.signalCode !== null) throw new Error(`relay exited before ${pattern}:\n${relay.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${LINE_WAIT_MS} ms:\n${relay.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The exit code, or the signal's name, or "still running" after EXIT_WAIT_MS. */
function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode!);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("still running"), EXIT_WAIT_MS);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal ?? "unknown");
    });
  });
}

test("SIGTERM while the relay is still starting (its sink's server unreachable): it stops and exits 0", { timeout: TEST_TIMEOUT_MS }, async () => {
  const relay = startRelay({ HOTLEDGER_DATA: join(directory, "starting"), HOTLEDGER_OUTPUTS: "jetstream", NATS_URL: "127.0.0.1:1" });
  await waitForOutput(relay, /outputs: start failed \(attempt 1\)/);
  relay.child.kill("SIGTERM");
  assert.equal(await exitOf(relay.child), 0, relay.output());
  assert.match(relay.output(), /hotledger relay: SIGTERM, stopping/);
  assert.doesNotMatch(relay.output(), /hotledger relay: running/);
});

test("a relay that stops for good ends the process with exit code 1 and the reason", { timeout: TEST_TIMEOUT_MS }, async () => {
  // A shard whose journal's first segment is gone: the relay's sink (a new PGlite projection, cursor 0) needs
  // sequence 1, which no snapshot and no journal holds any more.
  const data = join(directory, "gone");
  const env = { HOTLEDGER_DATA: data, HOTLEDGER_OUTPUTS: "postgres" };
  const config = loadConfig({ ...env, HOTLEDGER_SHARDS: "1" });
  const directories = shardDirectories(config, 0);
  const shard = await Shard.open({
    journal: await FileJournal.open({ directory: directories.journal, fsync: "batch", segmentBytesMax: 1 }),
    snapshots: await FileSnapshotStore.open({ directory: directories.snapshots }),
    accountsMax: config.accountsMax,
    idempotencyCommandsMax: config.idempotencyCommandsMax,
  });
  await shard.submit([{ type: "openAccount", id: "open-1", partnerId: "shop", accountId: "a", currency: "EUR" }]);
  for (let i = 1; i <= 3; i++) await shard.submit([{ type: "credit", id: `credit-${i}`, partnerId: "shop", accountId: "a", amount: i }]);
  await shard.close();
  const segments = readdirSync(directories.journal).filter((name) => !name.startsWith(".")).sort();
  assert.ok(segments.length >= 2, `one segment per record (${segments.join(", ")})`);
  rmSync(join(directories.journal, segments[0]));

  const relay = startRelay(env);
  const exit = await exitOf(relay.child);
  assert.equal(exit, 1, `exits 1 (got ${exit}):\n${relay.output()}`);
  assert.match(relay.output(), /stderr: hotledger relay: the relay of shard 0 stopped for good, exiting: JournalCorruptError: .*segments were deleted/);
});
