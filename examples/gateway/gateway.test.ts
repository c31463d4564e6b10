// Proves `npm start` works end to end: the gateway process prints a curl line that really works (run with curl),
// SIGTERM drains and exits 0, and after a restart on the same data every balance and the idempotency window are
// still there (a retried credit is answered as a duplicate). Real processes, real HTTP on loopback.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

/** Start the gateway; resolve with its output lines once it printed the listening line (bounded: 30 s). */
function start(env: Record<string, string>): Promise<{ child: ChildProcessWithoutNullStreams; lines: string[] }> {
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
      const ready = env.HOTLEDGER_CONFIG ? lines.some((line) => line.includes("listening on")) : lines.some((line) => line.includes("/entries"));
      if (ready) {
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

test("a restart keeps balances and the idempotency window; graceful shutdown loses nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
  const config = join(directory, "config.json");
  writeFileSync(config, JSON.stringify({ keys: [{ sha256: hashKey("test-key"), partnerId: "shop" }] }));
  const env = { HOTLEDGER_CONFIG: config, HOTLEDGER_DATA: join(directory, "restart") };
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

test("bad configuration stops the start with the setting's name and exit code 2, after closing what it opened", { timeout: TEST_TIMEOUT_MS }, () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ HOTLEDGER_SHARDS: "1e1" }, /bad configuration: HOTLEDGER_SHARDS/],
    [{ HOTLEDGER_OUTPUTS: "none", NATS_URL: "127.0.0.1:1" }, /bad configuration: NATS_URL 127\.0\.0\.1:1: cannot start the NATS transport/],
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
  }
});
