// Proves `npm start` works end to end: the gateway process prints a curl line that really works (run with curl),
// SIGTERM drains and exits 0, and after a restart on the same data every balance and the idempotency window are
// still there (a retried credit is answered as a duplicate). It also proves the start's edges: a data directory
// has one writer at a time, a port in use or an unusable setting stops the start with a message before anything is
// written, /readyz answers 503 while a big journal replays, and a SIGTERM then still ends in a clean stop. Real
// processes, real HTTP on loopback.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashKey } from "../../transports/auth.ts";

const root = new URL("../../", import.meta.url).pathname;
const directory = mkdtempSync(join(tmpdir(), "hotledger-gateway-test-"));
const children: ChildProcessWithoutNullStreams[] = [];
after(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(directory, { recursive: true, force: true });
});

/**
 * Start the gateway; resolve with its output lines once `ready` holds for them (default: it printed the listening
 * line, and the history curl line when it makes demo keys), bounded: 30 s.
 */
function start(
  env: Record<string, string>,
  ready: (lines: string[]) => boolean = (lines) =>
    env.HOTLEDGER_CONFIG ? lines.some((line) => line.includes("listening on")) : lines.some((line) => line.includes("/entries")),
): Promise<{ child: ChildProcessWithoutNullStreams; lines: string[] }> {
  const child = spawn(process.execPath, ["examples/gateway/index.ts"], {
    cwd: root,
    env: { ...process.env, HOTLEDGER_DATA: join(directory, "data"), HOTLEDGER_PORT: "0", HOTLEDGER_SHARDS: "2", ...env },
  });
  children.push(child);
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${lines.join("\n")}`)), 30_000);
    let buffered = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      lines.push(...parts);
      if (ready(lines)) {
        clearTimeout(timer);
        resolve({ child, lines });
      }
    });
    child.stderr.on("data", (chunk: Buffer) => lines.push(`stderr: ${chunk}`));
    child.on("exit", (code) => reject(new Error(`gateway exited ${code}: ${lines.join("\n")}`)));
  });
}

function stop(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}

/** Run one printed curl line with the real curl. */
function curl(line: string): unknown {
  const run = spawnSync("bash", ["-c", line.trim()], { encoding: "utf8", timeout: 10_000 });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout);
}

/** Each test starts real gateway processes (and PGlite, seconds on a busy machine). */
const TEST_TIMEOUT_MS = 60_000;

test("the printed curl lines work against npm start's gateway", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { child, lines } = await start({});
  const curls = lines.filter((line) => line.trim().startsWith("curl "));
  assert.equal(curls.length, 3, lines.join("\n"));
  const opened = curl(curls[0]) as { accountId: string; balance: number };
  assert.equal(opened.accountId, "wallet:alice");
  const credited = curl(curls[1]) as { code: string; balance: number; seq: number };
  assert.equal(credited.code, "ok");
  assert.equal(credited.balance, 10_000);
  // The third line reads the history from the PGlite projection the default outputs keep under ./data: it answers
  // 503 while PGlite starts and has the entry once the relay delivered it.
  let page: { entries?: { seq: number; amount: number; balanceAfter: number; commandId: string }[] } = {};
  for (let attempt = 0; attempt < 300 && (page.entries?.length ?? 0) === 0; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    page = curl(curls[2]) as typeof page;
  }
  assert.deepEqual(page.entries?.map(({ seq, amount, balanceAfter, commandId }) => ({ seq, amount, balanceAfter, commandId })), [
    { seq: credited.seq, amount: 10_000, balanceAfter: 10_000, commandId: "topup-1" },
  ]);
  assert.equal(await stop(child), 0, "SIGTERM drains and exits 0");
});

// Both ways of running shards: in the gateway's thread (the default below 4 cores, as here) and on worker threads.
for (const workers of ["0", "1"]) {
  test(`a restart keeps balances and the idempotency window; graceful shutdown loses nothing (HOTLEDGER_WORKERS=${workers})`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const config = join(directory, "config.json");
    writeFileSync(config, JSON.stringify({ keys: [{ sha256: hashKey("test-key"), partnerId: "shop" }] }));
    const env = { HOTLEDGER_CONFIG: config, HOTLEDGER_DATA: join(directory, `restart-${workers}`), HOTLEDGER_WORKERS: workers };
    const urlOf = (lines: string[]) => lines.find((line) => line.includes("listening on"))?.split("listening on ")[1]?.trim() ?? "";
    const call = async (url: string, path: string, body: unknown) => {
      const response = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { Authorization: "Bearer test-key", "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const first = await start(env);
    const url = urlOf(first.lines);
    assert.equal((await call(url, "/v1/accounts", { partnerId: "shop", accountId: "a", currency: "EUR" })).status, 201);
    const credits = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call(url, "/v1/credit", { id: `c${i}`, partnerId: "shop", accountId: "a", amount: i + 1 })),
    );
    assert.ok(credits.every((credit) => credit.status === 200));
    assert.equal(await stop(first.child), 0);
    const second = await start(env);
    const again = urlOf(second.lines);
    const account = await fetch(`${again}/v1/accounts/shop/a`, { headers: { Authorization: "Bearer test-key" } });
    assert.equal(((await account.json()) as { balance: number }).balance, (50 * 51) / 2);
    const retry = await call(again, "/v1/credit", { id: "c7", partnerId: "shop", accountId: "a", amount: 8 });
    assert.equal(retry.status, 200);
    assert.equal(retry.body.duplicate, true);
    assert.equal(await stop(second.child), 0);
  });
}

test("bad configuration stops the start with the setting's name and exit code 2, after closing what it opened", { timeout: TEST_TIMEOUT_MS }, () => {
  const aFile = join(directory, "a-file");
  writeFileSync(aFile, "");
  const cases: [Record<string, string>, RegExp][] = [
    [{ HOTLEDGER_SHARDS: "1e1" }, /bad configuration: HOTLEDGER_SHARDS/],
    [{ HOTLEDGER_OUTPUTS: "none", NATS_URL: "127.0.0.1:1" }, /bad configuration: NATS_URL 127\.0\.0\.1:1: cannot start the NATS transport/],
    // A typo would otherwise start with the default, and the data directory would keep 4 shards for good.
    [{ HOTLEDGER_SHRADS: "8" }, /bad configuration: unknown setting HOTLEDGER_SHRADS/],
    [{ HOTLEDGER_DATA: `${join(directory, "bad-config")} ` }, /bad configuration: HOTLEDGER_DATA must not start or end with whitespace/],
    [{ HOTLEDGER_HOST: " 127.0.0.1" }, /bad configuration: HOTLEDGER_HOST must not start or end with whitespace/],
    [{ HOTLEDGER_OUTPUTS: "none", HOTLEDGER_DATA: join(aFile, "data") }, /bad configuration: HOTLEDGER_DATA .*a-file\/data: cannot/],
  ];
  for (const [env, message] of cases) {
    const run = spawnSync(process.execPath, ["examples/gateway/index.ts"], {
      cwd: root,
      env: { ...process.env, HOTLEDGER_DATA: join(directory, "bad-config"), HOTLEDGER_PORT: "0", HOTLEDGER_SHARDS: "2", ...env },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(run.status, 2, `${JSON.stringify(env)}: ${run.stderr}`);
    assert.match(run.stderr, message);
    assert.doesNotMatch(run.stderr, STACK_TRACE, "a message, not a stack trace");
  }
});

/** A line of a stack trace, as the runtime prints an uncaught error. */
const STACK_TRACE = /^\s+at /m;

/** The URL in the listening line. */
function urlOf(lines: string[]): string {
  return lines.find((line) => line.includes("listening on"))?.split("listening on ")[1]?.trim() ?? "";
}

/** POST a JSON body with a bearer key; the status and parsed body. */
async function post(url: string, key: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** An account's balance, read with `key`. */
async function balanceOf(url: string, key: string, partnerId: string, accountId: string): Promise<number> {
  const response = await fetch(`${url}/v1/accounts/${partnerId}/${accountId}`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(response.status, 200);
  return ((await response.json()) as { balance: number }).balance;
}

/** How the child ends; listen before signalling it. */
function exitOf(child: ChildProcessWithoutNullStreams): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  child.removeAllListeners("exit");
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
}

/** Run a gateway that is expected to refuse to start, to its exit; bounded: one that starts anyway is killed after 20 s. */
function runToExit(env: Record<string, string>) {
  return spawnSync(process.execPath, ["examples/gateway/index.ts"], {
    cwd: root,
    env: { ...process.env, HOTLEDGER_PORT: "0", HOTLEDGER_SHARDS: "2", HOTLEDGER_OUTPUTS: "none", ...env },
    encoding: "utf8",
    timeout: 20_000,
    killSignal: "SIGKILL",
  });
}

/** Listen on `port` (0: any) of `host`; the server, or undefined when the host cannot be listened on. */
function listenOn(host: string, port: number): Promise<Server | undefined> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(undefined));
    server.listen(port, host, () => resolve(server));
  });
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = await listenOn("127.0.0.1", 0);
  assert.ok(server !== undefined);
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  await new Promise((resolve) => server.close(resolve));
  return address.port;
}

/** A configuration with one internal key ("ops-key"), written once. */
function opsConfig(): string {
  const path = join(directory, "ops.json");
  writeFileSync(path, JSON.stringify({ shards: 2, pinned: { p0: 0, p1: 1 }, keys: [{ sha256: hashKey("ops-key"), internal: "ops" }] }));
  return path;
}

test("a second gateway on a data directory in use is refused (two writers would corrupt its journals); the lock ends with the process", { timeout: TEST_TIMEOUT_MS }, async () => {
  const env = { HOTLEDGER_CONFIG: opsConfig(), HOTLEDGER_DATA: join(directory, "locked"), HOTLEDGER_OUTPUTS: "none" };
  const first = await start(env);
  // HOTLEDGER_PORT=0: the second has a port of its own, so only the data directory is shared.
  const second = runToExit(env);
  assert.equal(second.status, 2, `${second.stdout}\n${second.stderr}`);
  assert.match(second.stderr, /bad configuration: HOTLEDGER_DATA .*locked is in use by another gateway/);
  assert.doesNotMatch(second.stderr, STACK_TRACE);
  const url = urlOf(first.lines);
  assert.equal((await post(url, "ops-key", "/v1/accounts", { partnerId: "p0", accountId: "a", currency: "EUR" })).status, 201);
  assert.equal((await post(url, "ops-key", "/v1/credit", { id: "c1", partnerId: "p0", accountId: "a", amount: 5 })).status, 200);
  // Killed, not stopped: the kernel drops the lock with the process, so a crash leaves nothing stale behind.
  const killed = exitOf(first.child);
  first.child.kill("SIGKILL");
  await killed;
  const third = await start(env);
  assert.equal(await balanceOf(urlOf(third.lines), "ops-key", "p0", "a"), 5);
  assert.equal(await stop(third.child), 0);
});

test("a port in use stops the start with a message and exit code 2 before the data directory is touched", { timeout: TEST_TIMEOUT_MS }, async () => {
  const env = { HOTLEDGER_CONFIG: opsConfig(), HOTLEDGER_OUTPUTS: "none" };
  const other = await listenOn("127.0.0.1", 0);
  assert.ok(other !== undefined);
  const gateway = await start({ ...env, HOTLEDGER_DATA: join(directory, "port-owner") });
  try {
    // Any listener, and another gateway: both gateways listening would split the connections between two ledgers.
    const ports = [String((other.address() as { port: number }).port), new URL(urlOf(gateway.lines)).port];
    for (const port of ports) {
      const data = join(directory, `port-${port}`);
      const run = runToExit({ ...env, HOTLEDGER_DATA: data, HOTLEDGER_PORT: port });
      assert.equal(run.status, 2, `port ${port}: ${run.stdout}\n${run.stderr}`);
      assert.match(run.stderr, new RegExp(`bad configuration: HOTLEDGER_HOST/HOTLEDGER_PORT 127\\.0\\.0\\.1:${port}: cannot listen`));
      assert.doesNotMatch(run.stderr, STACK_TRACE);
      assert.equal(existsSync(data), false, "nothing created on disk");
    }
  } finally {
    other.close();
    assert.equal(await stop(gateway.child), 0);
  }
});

/** Credits the replay fixture holds per shard (partner p<shard>, account "a"): replaying them takes a moment. */
const REPLAY_COMMANDS = [200_000, 800_000];

let replayFixture: Promise<{ data: string; env: Record<string, string> }> | undefined;

/**
 * A data directory whose journals hold REPLAY_COMMANDS credits and no snapshot after them, made once and copied by
 * each test: the gateway that wrote them was killed (a graceful stop would snapshot, leaving nothing to replay).
 */
function replayed(): Promise<{ data: string; env: Record<string, string> }> {
  replayFixture ??= (async () => {
    const data = join(directory, "replay-fixture");
    const env = {
      HOTLEDGER_CONFIG: opsConfig(),
      HOTLEDGER_OUTPUTS: "none",
      HOTLEDGER_SNAPSHOT_EVERY_COMMANDS: String(1e12),
      HOTLEDGER_SNAPSHOT_EVERY_MS: String(7 * 24 * 60 * 60 * 1000),
    };
    const { child, lines } = await start({ ...env, HOTLEDGER_DATA: data });
    const url = urlOf(lines);
    for (const [shard, count] of REPLAY_COMMANDS.entries()) {
      const partnerId = `p${shard}`;
      assert.equal((await post(url, "ops-key", "/v1/accounts", { partnerId, accountId: "a", currency: "EUR" })).status, 201);
      let next = 0;
      const producer = async () => {
        while (next < count) {
          const first = next;
          next += 1000;
          const commands = Array.from({ length: 1000 }, (_, i) => ({ type: "credit", id: `f${first + i}`, partnerId, accountId: "a", amount: 1 }));
          assert.equal((await post(url, "ops-key", "/v1/commands", { commands })).status, 200);
        }
      };
      await Promise.all([producer(), producer(), producer(), producer()]);
    }
    const killed = exitOf(child);
    child.kill("SIGKILL");
    await killed;
    return { data, env };
  })();
  return replayFixture;
}

/** A copy of the replay fixture in a directory of its own. */
async function replayCopy(name: string): Promise<Record<string, string>> {
  const { data, env } = await replayed();
  cpSync(data, join(directory, name), { recursive: true });
  return { ...env, HOTLEDGER_DATA: join(directory, name) };
}

test("while a big journal replays, /healthz is 200, /readyz 503 and commands 503 with Retry-After; then /readyz 200", { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
  const env = await replayCopy("readyz");
  const port = await freePort();
  const started = start({ ...env, HOTLEDGER_PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  const whileRecovering: { readyz: number; healthz: number; account: number; retryAfter: string | null }[] = [];
  let ready = false;
  // Bounded: 30 s of polls 10 ms apart (refused connections while the process starts).
  for (let attempt = 0; attempt < 3000 && !ready; attempt++) {
    const readyz = await fetch(`${url}/readyz`).catch(() => undefined);
    if (readyz?.status === 200) ready = true;
    else if (readyz?.status === 503 && whileRecovering.length === 0) {
      const healthz = await fetch(`${url}/healthz`);
      const account = await fetch(`${url}/v1/accounts/p1/a`, { headers: { Authorization: "Bearer ops-key" } });
      whileRecovering.push({ readyz: readyz.status, healthz: healthz.status, account: account.status, retryAfter: account.headers.get("retry-after") });
    } else await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const { child } = await started;
  assert.ok(ready, "ready in the end");
  assert.equal(whileRecovering.length, 1, "/readyz answered 503 while the shards recovered");
  assert.deepEqual(whileRecovering[0], { readyz: 503, healthz: 200, account: 503, retryAfter: "1" });
  assert.equal(await balanceOf(url, "ops-key", "p0", "a"), REPLAY_COMMANDS[0]);
  assert.equal(await balanceOf(url, "ops-key", "p1", "a"), REPLAY_COMMANDS[1]);
  assert.equal(await stop(child), 0);
});

test("SIGTERM while the shards recover: the gateway stops cleanly once they are open (exit 0, snapshot), and loses nothing", { timeout: 2 * TEST_TIMEOUT_MS }, async () => {
  const env = await replayCopy("sigterm-recovering");
  // Shard 0 holds the smaller journal: when it is recovered, shard 1 is still replaying.
  const { child, lines } = await start(env, (lines) => lines.some((line) => line.startsWith("shard 0: shard recovered")));
  const exited = exitOf(child);
  child.kill("SIGTERM");
  assert.deepEqual(await exited, { code: 0, signal: null }, lines.join("\n"));
  assert.ok(lines.some((line) => line.includes("SIGTERM while starting")), lines.join("\n"));
  assert.equal(lines.some((line) => line.includes("listening on")), false, "never announced as serving");
  const again = await start(env);
  // The stop snapshotted what was replayed: this start replays nothing.
  assert.equal(again.lines.filter((line) => / shard recovered: .* replayed 0 commands/.test(line)).length, 2, again.lines.join("\n"));
  const url = urlOf(again.lines);
  assert.equal(await balanceOf(url, "ops-key", "p0", "a"), REPLAY_COMMANDS[0]);
  assert.equal(await balanceOf(url, "ops-key", "p1", "a"), REPLAY_COMMANDS[1]);
  assert.equal(await stop(again.child), 0);
});

/** A listener on the IPv6 loopback, when the machine has one (containers often do not), closed at once. */
const ipv6Loopback = await listenOn("::1", 0);
ipv6Loopback?.close();

test("the printed curl lines work when the gateway listens on an IPv6 address", { timeout: TEST_TIMEOUT_MS, skip: ipv6Loopback === undefined }, async () => {
  const env = { HOTLEDGER_HOST: "::1", HOTLEDGER_OUTPUTS: "none", HOTLEDGER_DATA: join(directory, "ipv6") };
  const { child, lines } = await start(env, (lines) => lines.some((line) => line.includes("/v1/credit")));
  const curls = lines.filter((line) => line.trim().startsWith("curl "));
  assert.equal(curls.length, 2, lines.join("\n"));
  assert.equal((curl(curls[0]) as { accountId: string }).accountId, "wallet:alice");
  assert.equal((curl(curls[1]) as { balance: number }).balance, 10_000);
  assert.equal(await stop(child), 0);
});
