// Proves the HTTP transport's contract over a real server: a RoutingGateway over two durable shards (in-memory
// journal and snapshot store), partners routed to different shards, requests made with fetch. Every route and
// every status is exercised (200/201/400/401/403/404/409/413/422/500/503), partners cannot read or write each
// other, two keys of one partner both work, and bad or rejected input changes no balance; a fast-check property
// posts random bodies and checks that no reply is a 5xx and that balances move only under a 200 with ok results. A body
// the client cuts off is refused without an error logged, and a second app cannot listen on a port already taken.
// /metrics is read by a strict parser of the Prometheus text format written here (none is a dependency).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { limits, OverloadedError, RESULT_CODES, Shard, ShardMap, ShardUnavailableError, type Account, type Command, type Result } from "../../core/index.ts";
import { MemoryJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { hashKey, KeyRing } from "../auth.ts";
import { RoutingGateway, type Gateway, type OutputsView } from "../gateway.ts";
import { createHttpApp } from "./index.ts";

const A = "partner-a";
const B = "partner-b";
const KEYS = { a: "key-a-current", aNext: "key-a-next", b: "key-b", internal: "key-internal" };
const keyRing = new KeyRing([
  { sha256: hashKey(KEYS.a), partnerId: A },
  { sha256: hashKey(KEYS.aNext), partnerId: A },
  { sha256: hashKey(KEYS.b), partnerId: B },
  { sha256: hashKey(KEYS.internal), internal: "ops" },
]);
const SIZES = { accountsMax: 1024, partnersMax: 16, holdsMax: 256, idempotencyCommandsMax: 8192, ringSlots: 2048 };

interface Server {
  base: string;
  gateway: Gateway;
  stop(): Promise<void>;
}

interface Extra {
  bodyBytesMax?: number;
  logged?: unknown[];
  outputs?: OutputsView;
}

async function startWith(gateway: Gateway, extra: Extra = {}): Promise<Server> {
  const log = (line: string, error: unknown) => extra.logged?.push(error);
  const app = createHttpApp({ gateway, keys: keyRing, bodyBytesMax: extra.bodyBytesMax, log, outputs: extra.outputs })
    .listen({ hostname: "127.0.0.1", port: 0 });
  const port = app.server?.port;
  assert.ok(typeof port === "number" && port > 0);
  return { base: `http://127.0.0.1:${port}`, gateway, stop: async () => void (await app.stop()) };
}

/** A server over two real shards; partner A and partner B live on different shards. */
async function start(extra: Extra = {}): Promise<Server> {
  let now = 1_000;
  const shards = await Promise.all(
    [0, 1].map(() =>
      Shard.open({ ...SIZES, journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), clock: () => now++, snapshotEveryCommands: 1e9 }),
    ),
  );
  const map = new ShardMap({ shardCount: 2 });
  assert.notEqual(map.shardOf(A), map.shardOf(B), "the test partners must be on different shards");
  const server = await startWith(new RoutingGateway(shards, map), extra);
  return {
    ...server,
    stop: async () => {
      await server.stop();
      for (const shard of shards) await shard.close();
    },
  };
}

async function call(server: Server, method: string, path: string, key: string | undefined, body?: unknown) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  const response = await fetch(server.base + path, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === "" ? undefined : JSON.parse(text) };
}

/** Open A/a1, A/a2 (EUR) and B/b1 (EUR), credit A/a1 with 100. */
async function seed(server: Server): Promise<void> {
  for (const [partnerId, accountId] of [[A, "a1"], [A, "a2"], [B, "b1"]]) {
    const opened = await call(server, "POST", "/v1/accounts", KEYS.internal, { partnerId, accountId, currency: "EUR" });
    assert.equal(opened.status, 201);
  }
  const credited = await call(server, "POST", "/v1/credit", KEYS.a, { id: "seed", partnerId: A, accountId: "a1", amount: 100 });
  assert.equal(credited.status, 200);
}

async function balances(server: Server): Promise<(number | undefined)[]> {
  const accounts = await Promise.all([server.gateway.account(A, "a1"), server.gateway.account(A, "a2"), server.gateway.account(B, "b1")]);
  return accounts.flatMap((account) => [account?.balance, account?.held, account?.overdraftLimit, account === undefined ? undefined : account.seq]);
}

/** Send `head` over a plain socket and return the first line of the reply (fails after 3 s). */
function rawStatusLine(server: Server, head: string): Promise<string> {
  const url = new URL(server.base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(head));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no reply within 3 s"));
    }, 3000);
    socket.once("data", (data) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data.toString("latin1").split("\r\n")[0]);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

function stubGateway(overrides: Partial<Gateway>): Gateway {
  return {
    submit: async () => [],
    account: async () => undefined,
    storedResult: async () => undefined,
    ready: () => true,
    metrics: async () => [],
    ...overrides,
  };
}

const V1_ROUTES: [string, string][] = [
  ["POST", "/v1/commands"],
  ["POST", "/v1/accounts"],
  ["GET", `/v1/accounts/${A}/a1`],
  ["GET", `/v1/commands/${A}/seed`],
  ["POST", "/v1/credit"],
  ["POST", "/v1/debit"],
  ["POST", "/v1/transfer"],
  ["POST", "/v1/holds"],
  ["POST", "/v1/holds/capture"],
  ["POST", "/v1/holds/release"],
  ["POST", "/v1/check"],
  ["POST", `/v1/accounts/${A}/a1/freeze`],
  ["POST", `/v1/accounts/${A}/a1/unfreeze`],
  ["POST", `/v1/accounts/${A}/a1/close`],
  ["POST", `/v1/accounts/${A}/a1/overdraft-limit`],
];

describe("http transport", () => {
  test("healthz and readyz", async () => {
    const server = await start();
    assert.deepEqual((await call(server, "GET", "/healthz", undefined)).body, { ok: true });
    assert.equal((await call(server, "GET", "/readyz", undefined)).status, 200);
    await server.stop();
    const notReady = await startWith(stubGateway({ ready: () => false }));
    assert.equal((await call(notReady, "GET", "/readyz", undefined)).status, 503);
    assert.equal((await call(notReady, "GET", "/nowhere", undefined)).status, 404);
    await notReady.stop();
  });

  test("401 on every /v1 route without a key, with an unknown key, or a malformed header; nothing changes", async () => {
    const server = await start();
    await seed(server);
    const before = await balances(server);
    for (const [method, path] of V1_ROUTES) {
      const body = method === "POST" ? { id: "x", partnerId: A, accountId: "a1", amount: 5 } : undefined;
      for (const key of [undefined, "guess", ""]) {
        const reply = await call(server, method, path, key, body);
        assert.equal(reply.status, 401, `${method} ${path} key=${key}`);
        assert.equal(reply.headers.get("www-authenticate"), 'Bearer realm="hotledger"');
        assert.equal(reply.body.error.code, "unauthorized");
        assert.equal(typeof reply.body.error.message, "string");
      }
    }
    for (const header of [`Basic ${KEYS.a}`, `Bearer  ${KEYS.a}`, `Bearer ${KEYS.a} x`, `Bearer\t${KEYS.a}`, "Bearer "]) {
      const malformed = await fetch(`${server.base}/v1/accounts/${A}/a1`, { headers: { authorization: header } });
      assert.equal(malformed.status, 401, header);
    }
    for (const scheme of ["Bearer", "bearer"]) {
      const good = await fetch(`${server.base}/v1/accounts/${A}/a1`, { headers: { authorization: `${scheme} ${KEYS.a}` } });
      assert.equal(good.status, 200, scheme);
    }
    assert.deepEqual(await balances(server), before);
    await server.stop();
  });

  test("accounts: 201 on open, 200 when identical, 409 when different, GET 200/404", async () => {
    const server = await start();
    const opened = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "x", currency: "EUR", overdraftLimit: 50 });
    assert.equal(opened.status, 201);
    assert.deepEqual(opened.body, {
      partnerId: A, accountId: "x", currency: "EUR", balance: 0, held: 0, available: 50, overdraftLimit: 50, status: "active", seq: 1,
    });
    const same = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "x", currency: "EUR", overdraftLimit: 50, id: "other" });
    assert.equal(same.status, 200);
    assert.deepEqual(same.body, opened.body);
    const retry = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "x", currency: "EUR", overdraftLimit: 50 });
    assert.equal(retry.status, 200, "a retry of the same open is 200");
    const changes = [{ currency: "USD", overdraftLimit: 50 }, { currency: "EUR" }, { currency: "EUR", overdraftLimit: 7 }];
    for (const [index, changed] of changes.entries()) {
      const conflict = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "x", id: `o${index + 2}`, ...changed });
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.error.code, "account_exists");
    }
    const got = await call(server, "GET", `/v1/accounts/${A}/x`, KEYS.a);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, opened.body);
    const missing = await call(server, "GET", `/v1/accounts/${A}/nope`, KEYS.a);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "account_not_found");
    const badPath = await call(server, "GET", `/v1/accounts/${A}/${"z".repeat(65)}`, KEYS.a);
    assert.equal(badPath.status, 400);
    assert.equal(badPath.body.error.path, "accountId");
    const badLimit = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "y", currency: "EUR", overdraftLimit: -1 });
    assert.equal(badLimit.status, 400);
    assert.equal(badLimit.body.error.path, "overdraftLimit");
    assert.equal(await server.gateway.account(A, "y"), undefined);
    await server.stop();
  });

  test("accounts without an id: any valid account id opens, a limit of 0 is the default, a conflict is account_exists, caller ids never collide", async () => {
    const server = await start();
    const longId = "l".repeat(64);
    const long = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: longId, currency: "EUR" });
    assert.equal(long.status, 201, "a 64-character account id opens (the id the route makes fits)");
    const explicitZero = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: longId, currency: "EUR", overdraftLimit: 0 });
    assert.equal(explicitZero.status, 200, "overdraftLimit 0 is the same account as no limit");
    const conflict = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: longId, currency: "USD" });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.error.code, "account_exists");
    // A caller's command whose id looks like one the route could make does not block the open.
    await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "w", currency: "EUR" });
    const credit = await call(server, "POST", "/v1/credit", KEYS.a, { id: "open:zz", partnerId: A, accountId: "w", amount: 5 });
    assert.equal(credit.status, 200);
    const zz = await call(server, "POST", "/v1/accounts", KEYS.a, { partnerId: A, accountId: "zz", currency: "EUR" });
    assert.equal(zz.status, 201);
    assert.equal((await server.gateway.account(A, "zz"))?.currency, "EUR");
    await server.stop();
  });

  test("POST /v1/commands: results in request order across partners, per-item rejections, stored results", async () => {
    const server = await start();
    await seed(server);
    const commands: Command[] = [
      { type: "credit", id: "c1", partnerId: B, accountId: "b1", amount: 10 },
      { type: "debit", id: "d1", partnerId: A, accountId: "a1", amount: 1000 },
      { type: "transfer", id: "t1", partnerId: A, fromAccountId: "a1", toAccountId: "a2", amount: 30 },
      { type: "check", partnerId: B, accountId: "b1", amount: 10 },
    ];
    const reply = await call(server, "POST", "/v1/commands", KEYS.internal, { commands });
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body.results.map((result: Result) => [result.id, result.code]), [
      ["c1", "ok"], ["d1", "insufficient_funds"], ["t1", "ok"], ["", "ok"],
    ]);
    assert.equal(reply.body.results[2].balance, 70);
    const stored = await call(server, "GET", `/v1/commands/${A}/d1`, KEYS.a);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.code, "insufficient_funds");
    const unknown = await call(server, "GET", `/v1/commands/${A}/never`, KEYS.a);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, "command_not_found");
    // An atomic group that fails applies nothing; an atomic group across partners is 400 before anything runs.
    const before = await balances(server);
    const failed = await call(server, "POST", "/v1/commands", KEYS.a, {
      atomic: true,
      commands: [
        { type: "credit", id: "g1", partnerId: A, accountId: "a2", amount: 5 },
        { type: "debit", id: "g2", partnerId: A, accountId: "a1", amount: 10_000 },
      ],
    });
    assert.equal(failed.status, 200);
    assert.deepEqual(failed.body.results.map((result: Result) => result.code), ["linked_failed", "insufficient_funds"]);
    assert.deepEqual(await balances(server), before);
    const across = await call(server, "POST", "/v1/commands", KEYS.internal, {
      atomic: true,
      commands: [
        { type: "credit", id: "x1", partnerId: A, accountId: "a1", amount: 5 },
        { type: "credit", id: "x2", partnerId: B, accountId: "b1", amount: 5 },
      ],
    });
    assert.equal(across.status, 400);
    assert.equal(across.body.error.code, "invalid_request");
    assert.equal(across.body.error.path, "commands[1].partnerId");
    assert.deepEqual(await balances(server), before);
    assert.equal((await call(server, "GET", `/v1/commands/${A}/x1`, KEYS.a)).status, 404, "nothing of it was stored");
    await server.stop();
  });

  test("shortcuts: 200 when ok, 422 on a rejection, 404 account_not_found, 409 id_reused", async () => {
    const server = await start();
    await seed(server);
    const ok = async (path: string, body: Record<string, unknown>) => {
      const reply = await call(server, "POST", path, KEYS.a, { partnerId: A, ...body });
      assert.equal(reply.status, 200, `${path} ${JSON.stringify(reply.body)}`);
      assert.equal(reply.body.code, "ok");
      return reply.body as Result;
    };
    assert.equal((await ok("/v1/credit", { id: "c", accountId: "a1", amount: 50, currency: "EUR" })).balance, 150);
    assert.equal((await ok("/v1/debit", { id: "d", accountId: "a1", amount: 20 })).balance, 130);
    assert.equal((await ok("/v1/transfer", { id: "t", fromAccountId: "a1", toAccountId: "a2", amount: 30 })).balance, 100);
    assert.equal((await ok("/v1/holds", { id: "h1", accountId: "a1", amount: 40, expiresInMs: 60_000 })).held, 40);
    assert.equal((await ok("/v1/holds/capture", { id: "cap", holdId: "h1", amount: 10 })).balance, 90);
    await ok("/v1/holds", { id: "h2", accountId: "a1", amount: 5 });
    assert.equal((await ok("/v1/holds/release", { id: "rel", holdId: "h2" })).held, 0);
    assert.equal((await ok("/v1/check", { accountId: "a1", amount: 90 })).available, 90);

    const rejected = await call(server, "POST", "/v1/debit", KEYS.a, { id: "big", partnerId: A, accountId: "a1", amount: 1000 });
    assert.equal(rejected.status, 422);
    assert.equal(rejected.body.code, "insufficient_funds");
    assert.equal(rejected.body.status, "rejected");
    const noHold = await call(server, "POST", "/v1/holds/release", KEYS.a, { id: "r2", partnerId: A, holdId: "h1" });
    assert.equal(noHold.status, 422);
    assert.equal(noHold.body.code, "hold_closed");
    const checkFails = await call(server, "POST", "/v1/check", KEYS.a, { partnerId: A, accountId: "a1", amount: 91 });
    assert.equal(checkFails.status, 422);
    const missing = await call(server, "POST", "/v1/credit", KEYS.a, { id: "m", partnerId: A, accountId: "ghost", amount: 1 });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "account_not_found");
    const reused = await call(server, "POST", "/v1/credit", KEYS.a, { id: "c", partnerId: A, accountId: "a1", amount: 51 });
    assert.equal(reused.status, 409);
    assert.equal(reused.body.code, "id_reused");
    const duplicate = await call(server, "POST", "/v1/credit", KEYS.a, { id: "c", partnerId: A, accountId: "a1", amount: 50, currency: "EUR" });
    assert.equal(duplicate.status, 200);
    assert.equal(duplicate.body.duplicate, true);
    assert.equal((await server.gateway.account(A, "a1"))?.balance, 90);
    await server.stop();
  });

  test("admin routes: internal key only; freeze, unfreeze, overdraft-limit, close; rejections as shortcuts", async () => {
    const server = await start();
    await seed(server);
    const admin = (key: string, suffix: string, body: unknown, account = "a2") =>
      call(server, "POST", `/v1/accounts/${A}/${account}/${suffix}`, key, body);
    for (const key of [KEYS.a, KEYS.b]) {
      const reply = await admin(key, "freeze", { id: "f" });
      assert.equal(reply.status, 403);
      assert.equal(reply.body.error.code, "forbidden");
    }
    assert.equal((await admin(KEYS.internal, "freeze", { id: "f1" })).status, 200);
    assert.equal((await server.gateway.account(A, "a2"))?.status, "frozen");
    const frozen = await call(server, "POST", "/v1/credit", KEYS.a, { id: "cf", partnerId: A, accountId: "a2", amount: 1 });
    assert.equal(frozen.status, 422);
    assert.equal(frozen.body.code, "account_frozen");
    assert.equal((await admin(KEYS.internal, "unfreeze", { id: "u1" })).status, 200);
    const limit = await admin(KEYS.internal, "overdraft-limit", { id: "l1", overdraftLimit: 25 });
    assert.equal(limit.status, 200);
    assert.equal(limit.body.available, 25);
    const overflow = await admin(KEYS.internal, "overdraft-limit", { id: "l2", overdraftLimit: 2 ** 53 - 1 }, "a1");
    assert.equal(overflow.status, 422);
    assert.equal(overflow.body.code, "amount_overflow");
    const nonzero = await admin(KEYS.internal, "close", { id: "cl1" }, "a1");
    assert.equal(nonzero.status, 422);
    assert.equal(nonzero.body.code, "close_nonzero");
    assert.equal((await admin(KEYS.internal, "close", { id: "cl2" })).status, 200);
    assert.equal((await server.gateway.account(A, "a2"))?.status, "closed");
    assert.equal((await admin(KEYS.internal, "freeze", { id: "f9" }, "ghost")).status, 404);
    assert.equal((await admin(KEYS.internal, "freeze", { id: "f1" }, "a1")).status, 409, "id f1 reused for another account");
    const badBody = await admin(KEYS.internal, "overdraft-limit", { id: "l3", overdraftLimit: 1.5 }, "a1");
    assert.equal(badBody.status, 400);
    assert.equal(badBody.body.error.path, "overdraftLimit");
    // Without an id the route makes one; freeze, unfreeze and close take no body at all.
    const bare = (suffix: string) =>
      fetch(`${server.base}/v1/accounts/${A}/a1/${suffix}`, { method: "POST", headers: { authorization: `Bearer ${KEYS.internal}` } });
    const frozenBare = await bare("freeze");
    assert.equal(frozenBare.status, 200);
    assert.equal((await frozenBare.json()).code, "ok");
    assert.equal((await bare("freeze")).status, 200, "freezing a frozen account again is ok");
    assert.equal((await server.gateway.account(A, "a1"))?.status, "frozen");
    assert.equal((await bare("unfreeze")).status, 200);
    const limitNoId = await admin(KEYS.internal, "overdraft-limit", { overdraftLimit: 10 }, "a1");
    assert.equal(limitNoId.status, 200);
    assert.equal((await server.gateway.account(A, "a1"))?.overdraftLimit, 10);
    const limitMissing = await admin(KEYS.internal, "overdraft-limit", {}, "a1");
    assert.equal(limitMissing.status, 400);
    assert.equal(limitMissing.body.error.path, "overdraftLimit");
    const limitEmpty = await fetch(`${server.base}/v1/accounts/${A}/a1/overdraft-limit`, { method: "POST", headers: { authorization: `Bearer ${KEYS.internal}` } });
    assert.equal(limitEmpty.status, 400, "overdraft-limit needs its body");
    // Admin commands through /v1/commands also need an internal key.
    const sneaky = await call(server, "POST", "/v1/commands", KEYS.a, {
      commands: [{ type: "setOverdraftLimit", id: "s", partnerId: A, accountId: "a1", overdraftLimit: 1_000_000 }],
    });
    assert.equal(sneaky.status, 403);
    assert.equal((await server.gateway.account(A, "a1"))?.overdraftLimit, 10);
    await server.stop();
  });

  test("partner isolation both ways; both keys of a partner work (rotation)", async () => {
    const server = await start();
    await seed(server);
    const before = await balances(server);
    const attempts: [string, string, string][] = [
      [KEYS.a, B, "b1"],
      [KEYS.aNext, B, "b1"],
      [KEYS.b, A, "a1"],
    ];
    for (const [key, partnerId, accountId] of attempts) {
      const forbidden = [
        await call(server, "GET", `/v1/accounts/${partnerId}/${accountId}`, key),
        await call(server, "GET", `/v1/commands/${partnerId}/seed`, key),
        await call(server, "POST", "/v1/credit", key, { id: "i1", partnerId, accountId, amount: 1 }),
        await call(server, "POST", "/v1/debit", key, { id: "i2", partnerId, accountId, amount: 1 }),
        await call(server, "POST", "/v1/accounts", key, { partnerId, accountId: "new", currency: "EUR" }),
        await call(server, "POST", "/v1/commands", key, { commands: [{ type: "debit", id: "i3", partnerId, accountId, amount: 1 }] }),
      ];
      for (const reply of forbidden) {
        assert.equal(reply.status, 403, JSON.stringify(reply.body));
        assert.equal(reply.body.error.code, "forbidden");
      }
    }
    // One own and one foreign command: the whole request is refused.
    const mixed = await call(server, "POST", "/v1/commands", KEYS.a, {
      commands: [
        { type: "credit", id: "own", partnerId: A, accountId: "a1", amount: 1 },
        { type: "debit", id: "foreign", partnerId: B, accountId: "b1", amount: 1 },
      ],
    });
    assert.equal(mixed.status, 403);
    assert.equal(mixed.body.error.path, "commands[1].partnerId");
    assert.deepEqual(await balances(server), before);
    assert.equal(await server.gateway.account(B, "new"), undefined);
    for (const key of [KEYS.a, KEYS.aNext]) {
      assert.equal((await call(server, "GET", `/v1/accounts/${A}/a1`, key)).status, 200);
      assert.equal((await call(server, "POST", "/v1/credit", key, { id: `rot-${key}`, partnerId: A, accountId: "a1", amount: 1 })).status, 200);
    }
    assert.equal((await server.gateway.account(A, "a1"))?.balance, 102);
    await server.stop();
  });

  test("400 invalid_request with the field path; nothing changes", async () => {
    const server = await start();
    await seed(server);
    const before = await balances(server);
    const credit = { id: "v", partnerId: A, accountId: "a1", amount: 5 };
    const cases: [string, unknown, string | undefined][] = [
      ["/v1/credit", "{not json", undefined],
      ["/v1/credit", "", undefined],
      ["/v1/credit", [credit], undefined],
      ["/v1/credit", { ...credit, extra: 1 }, "extra"],
      ["/v1/credit", { ...credit, type: "credit" }, "type"],
      ["/v1/credit", { ...credit, amount: 1.5 }, "amount"],
      ["/v1/credit", { ...credit, amount: 2 ** 53 }, "amount"],
      ["/v1/credit", `{"id":"v","partnerId":"${A}","accountId":"a1","amount":9007199254740993}`, "amount"],
      ["/v1/credit", { ...credit, amount: 0 }, "amount"],
      ["/v1/credit", { ...credit, amount: -5 }, "amount"],
      ["/v1/credit", { ...credit, amount: "5" }, "amount"],
      ["/v1/credit", { ...credit, currency: "eur" }, "currency"],
      ["/v1/credit", { partnerId: A, accountId: "a1", amount: 5 }, "id"],
      ["/v1/credit", { ...credit, accountId: "bad id" }, "accountId"],
      ["/v1/transfer", { id: "t", partnerId: A, fromAccountId: "a1", amount: 5 }, "toAccountId"],
      ["/v1/holds", { ...credit, expiresInMs: 0.5 }, "expiresInMs"],
      // Out of the core's range (1 ms..366 days): a 400 that uses up no id, not a 422 amount_invalid that does.
      ["/v1/holds", { ...credit, expiresInMs: 0 }, "expiresInMs"],
      ["/v1/holds", { ...credit, expiresInMs: 366 * 24 * 60 * 60 * 1000 + 1 }, "expiresInMs"],
      ["/v1/commands", { commands: Array.from({ length: 1001 }, (_, i) => ({ ...credit, type: "credit", id: `n${i}` })) }, "commands"],
      ["/v1/commands", { commands: [] }, "commands"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }], extra: true }, "extra"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }], atomic: "yes" }, "atomic"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { ...credit, type: "credit", id: "w", amount: 0.1 }] }, "commands[1].amount"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { ...credit, type: "mint" }] }, "commands[1].type"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { ...credit, type: "credit", id: "w", memo: "x" }] }, "commands[1].memo"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, "credit"] }, "commands[1]"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { ...credit, type: "credit", id: "w", accountId: "bad id" }] }, "commands[1].accountId"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { type: "debit", id: "w", partnerId: A, amount: 1 }] }, "commands[1].accountId"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { ...credit, type: "debit" }], atomic: true }, "commands[1].id"],
      ["/v1/commands", { commands: [{ ...credit, type: "credit" }, { type: "check", partnerId: A, accountId: "a1", amount: 1 }], atomic: true }, "commands[1].type"],
      ["/v1/accounts", { partnerId: A, accountId: "n", currency: "EUR", overdraftLimit: 2 ** 53 }, "overdraftLimit"],
      ["/v1/accounts", { partnerId: A, accountId: "n" }, "currency"],
    ];
    for (const [path, body, errorPath] of cases) {
      const reply = await call(server, "POST", path, KEYS.a, body);
      assert.equal(reply.status, 400, `${path} ${JSON.stringify(body)?.slice(0, 120)} -> ${JSON.stringify(reply.body)}`);
      assert.equal(reply.body.error.code, "invalid_request");
      assert.equal(typeof reply.body.error.message, "string");
      assert.equal(reply.body.error.path, errorPath, JSON.stringify(reply.body));
    }
    assert.deepEqual(await balances(server), before);
    assert.equal((await call(server, "GET", `/v1/commands/${A}/v`, KEYS.a)).status, 404, "no invalid command was stored");
    await server.stop();
  });

  test("413 for a body over bodyBytesMax, by Content-Length and by the bytes that arrive", async () => {
    const server = await start({ bodyBytesMax: 1024 });
    await seed(server);
    const before = await balances(server);
    const big = JSON.stringify({ id: "big", partnerId: A, accountId: "a1", amount: 5, currency: "EUR", pad: "x".repeat(2000) });
    const declared = await call(server, "POST", "/v1/credit", KEYS.a, big);
    assert.equal(declared.status, 413);
    assert.equal(declared.body.error.code, "payload_too_large");
    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 256) controller.enqueue(bytes.slice(i, i + 256));
        controller.close();
      },
    });
    const streamed = await fetch(`${server.base}/v1/commands`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEYS.a}`, "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    assert.equal(streamed.status, 413);
    // A declared length over the limit is refused before any of the body is read (here: none is ever sent).
    const early = await rawStatusLine(server, `POST /v1/credit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.a}\r\nContent-Length: 5000\r\n\r\n`);
    assert.match(early, /^HTTP\/1\.1 413/);
    const exact = JSON.stringify({ id: "fits", partnerId: A, accountId: "a1", amount: 5 });
    assert.equal((await call(server, "POST", "/v1/credit", KEYS.a, exact.padEnd(1024, " "))).status, 200, "exactly the limit is allowed");
    assert.equal((await call(server, "POST", "/v1/credit", KEYS.a, exact.padEnd(1025, " "))).status, 413);
    assert.equal((await balances(server))[0], (before[0] as number) + 5);
    await server.stop();
  });

  test("503 overloaded / unavailable with Retry-After; 500 internal leaks nothing and is logged", async () => {
    const credit = { id: "c", partnerId: A, accountId: "a1", amount: 5 };
    const overloaded = await startWith(stubGateway({ submit: async () => { throw new OverloadedError("ring full"); } }));
    for (const [path, body] of [["/v1/credit", credit], ["/v1/commands", { commands: [{ ...credit, type: "credit" }] }]] as const) {
      const reply = await call(overloaded, "POST", path, KEYS.a, body);
      assert.equal(reply.status, 503);
      assert.equal(reply.body.error.code, "overloaded");
      assert.equal(reply.headers.get("retry-after"), "1");
    }
    await overloaded.stop();
    const unavailable = await startWith(stubGateway({ submit: async () => { throw new ShardUnavailableError("disk", 2500); } }));
    const down = await call(unavailable, "POST", "/v1/credit", KEYS.a, credit);
    assert.equal(down.status, 503);
    assert.equal(down.body.error.code, "unavailable");
    assert.equal(down.headers.get("retry-after"), "3");
    await unavailable.stop();
    const logged: unknown[] = [];
    const broken = await startWith(
      stubGateway({ account: async (): Promise<Account | undefined> => { throw new Error("secret path /var/db leaked"); } }),
      { logged },
    );
    const failed = await call(broken, "GET", `/v1/accounts/${A}/a1`, KEYS.a);
    assert.equal(failed.status, 500);
    assert.deepEqual(failed.body, { error: { code: "internal", message: "internal error" } });
    assert.equal(logged.length, 1);
    await broken.stop();
  });

  test("property: random bodies never give a 5xx and move balances only under a 200 with ok results", async () => {
    const server = await start();
    await seed(server);
    // Mostly well-formed commands over the seeded accounts, some of them mutated: a field replaced by a wrong
    // value (float, 2^53, string, null...), a field dropped, or an unknown field added.
    const account = fc.constantFrom("a1", "a2", "b1", "ghost");
    const amount = fc.integer({ min: 1, max: 150 });
    const base = { id: fc.string({ minLength: 1, maxLength: 6, unit: fc.constantFrom("a", "b", "c", "1", "2") }), partnerId: fc.constantFrom(A, B) };
    const command = fc.oneof(
      fc.record({ type: fc.constantFrom("credit", "debit"), ...base, accountId: account, amount }),
      fc.record({ type: fc.constant("transfer"), ...base, fromAccountId: account, toAccountId: account, amount }),
      fc.record({ type: fc.constant("hold"), ...base, accountId: account, amount }),
      fc.record({ type: fc.constantFrom("capture", "release"), ...base, holdId: fc.constantFrom("aa", "ab", "ba") }),
      fc.record({ type: fc.constant("check"), partnerId: base.partnerId, accountId: account, amount }),
    );
    const wrong = fc.oneof(
      fc.double(),
      fc.constantFrom(2 ** 53, 2 ** 53 - 1, 0, -1, 1.5, 1e300, "5", null, true, [], {}, "bad id", "x".repeat(65)),
      fc.jsonValue(),
    );
    const mutation = fc.oneof(
      { weight: 12, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("replace"), index: fc.nat(), value: wrong }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop"), index: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("add"), name: fc.string({ maxLength: 8 }), value: wrong }) },
    );
    const mutate = ([row, change]: [Record<string, unknown>, typeof mutation extends fc.Arbitrary<infer M> ? M : never]) => {
      const copy: Record<string, unknown> = { ...row };
      const names = Object.keys(copy);
      if (change === null) return copy;
      if (change.kind === "add") copy[change.name] = change.value;
      else if (change.kind === "drop") delete copy[names[change.index % names.length]];
      else copy[names[change.index % names.length]] = (change as { value: unknown }).value;
      return copy;
    };
    const mutated = fc.tuple(command, mutation).map(mutate);
    const creditLike = fc.record({ ...base, accountId: account, amount }).map((row) => ({ type: "credit", ...row }));
    const commandsBody = fc.oneof(
      { weight: 6, arbitrary: fc.record({ commands: fc.array(mutated, { minLength: 1, maxLength: 4 }), atomic: fc.boolean() }, { requiredKeys: ["commands"] }) },
      { weight: 1, arbitrary: fc.jsonValue() },
      { weight: 1, arbitrary: fc.string().map((text) => ({ raw: text })) },
    );
    const creditBody = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(creditLike, mutation).map(mutate).map(({ type: _type, ...fields }) => fields) },
      { weight: 1, arbitrary: fc.jsonValue() },
    );
    const request = fc.oneof(
      fc.tuple(fc.constant("/v1/commands"), commandsBody),
      fc.tuple(fc.constant("/v1/credit"), creditBody),
    );
    await fc.assert(
      fc.asyncProperty(request, fc.constantFrom(KEYS.a, KEYS.internal), async ([path, input], key) => {
        const before = await balances(server);
        const sent = typeof input === "object" && input !== null && "raw" in input && Object.keys(input).length === 1 ? String(input.raw) : JSON.stringify(input);
        const reply = await call(server, "POST", path, key, sent);
        assert.ok(reply.status < 500, `${reply.status} ${JSON.stringify(reply.body)}`);
        assert.ok([200, 400, 403, 404, 409, 422].includes(reply.status), `unexpected status ${reply.status}`);
        const after = await balances(server);
        const balancesMoved = JSON.stringify(after.filter((_, i) => i % 4 !== 3)) !== JSON.stringify(before.filter((_, i) => i % 4 !== 3));
        if (balancesMoved) {
          assert.equal(reply.status, 200);
          const results: Result[] = path === "/v1/commands" ? reply.body.results : [reply.body];
          assert.ok(results.some((result) => result.status === "ok" && result.duplicate !== true), JSON.stringify(reply.body));
        }
        if (reply.status !== 200) assert.deepEqual(after, before, "a non-200 reply changed nothing");
      }),
      { numRuns: 200, seed: 20261122 },
    );
    await server.stop();
  });
});

/** Per-bucket commit counts (not cumulative) from {bound: count}. */
function commitBuckets(counts: Record<number, number>): Float64Array {
  return Float64Array.from(limits.COMMIT_MS_BUCKETS, (bound) => counts[bound] ?? 0);
}

test("GET /metrics: Prometheus text with results by code, journal records, commit time and ring occupancy", async () => {
  const metricsApp = createHttpApp({ gateway: stubGateway({
    metrics: async () => [{ resultsByCode: Float64Array.from(RESULT_CODES, (_, code) => (code === 0 ? 7 : code === 1 ? 2 : 0)), records: 3, recordCommands: 9, commitMsSum: 12_008, commitMsBuckets: commitBuckets({ 1: 1, 10: 1 }), ringOccupancy: 4, lastSequenced: 9, lastApplied: 8, ringSlots: 8192 }],
  }), keys: new KeyRing([]) }).listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const response = await fetch(`http://127.0.0.1:${metricsApp.server?.port}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /text\/plain/);
    const text = await response.text();
    assert.match(text, /^hotledger_results_total\{shard="0",code="ok"\} 7$/m);
    assert.match(text, /^hotledger_last_sequence\{shard="0"\} 9$/m);
    assert.match(text, /^hotledger_last_applied\{shard="0"\} 8$/m);
    assert.match(text, /^hotledger_results_total\{shard="0",code="insufficient_funds"\} 2$/m);
    assert.match(text, /^hotledger_journal_records_total\{shard="0"\} 3$/m);
    assert.match(text, /^hotledger_journal_record_commands_total\{shard="0"\} 9$/m);
    // A histogram: cumulative buckets; the commit slower than the last bound (12 s) is only in +Inf and the count.
    assert.match(text, /^# TYPE hotledger_journal_commit_milliseconds histogram$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_bucket\{shard="0",le="1"\} 1$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_bucket\{shard="0",le="5"\} 1$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_bucket\{shard="0",le="10"\} 2$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_bucket\{shard="0",le="10000"\} 2$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_bucket\{shard="0",le="\+Inf"\} 3$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_sum\{shard="0"\} 12008$/m);
    assert.match(text, /^hotledger_journal_commit_milliseconds_count\{shard="0"\} 3$/m);
    assert.match(text, /^hotledger_ring_occupancy\{shard="0"\} 4$/m);
    assert.match(text, /^# TYPE hotledger_results_total counter$/m);
  } finally {
    await metricsApp.stop();
  }
});

/** One sample of the Prometheus text format, as parsed by `parsePrometheusText`. */
interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict parser of the Prometheus text exposition format 0.0.4: a family's HELP and TYPE come before its samples and
 * at most once; a family's lines are one group; metric and label names use their character sets; label values
 * escape only `\\`, `\"` and `\n`; no series twice; counters are >= 0; a histogram has, per label set, `_bucket`s
 * with `le` ascending and cumulative up to `+Inf`, a `_sum`, and a `_count` equal to the `+Inf` bucket. Throws naming
 * the line; returns the families by name with their type and samples.
 */
function parsePrometheusText(text: string): Map<string, { type: string; samples: PrometheusSample[] }> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const families = new Map<string, { type: string; typed: boolean; help: boolean; samples: PrometheusSample[] }>();
  const done = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  const family = (name: string, where: string) => {
    if (current !== name) {
      if (current !== undefined) done.add(current);
      assert.ok(!done.has(name), `${where}: the lines of ${name} are not one group`);
      current = name;
    }
    const found = families.get(name) ?? { type: "untyped", typed: false, help: false, samples: [] };
    families.set(name, found);
    return found;
  };
  const number = (value: string, where: string) => {
    if (value === "+Inf") return Infinity;
    if (value === "-Inf") return -Infinity;
    if (value === "NaN") return Number.NaN;
    assert.match(value, /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/, `${where}: a number`);
    return Number(value);
  };
  text.slice(0, -1).split("\n").forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line)}`;
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (comment !== null) {
      const [, kind, name, rest] = comment;
      const entry = family(name, where);
      assert.equal(entry.samples.length, 0, `${where}: ${kind} after the family's samples`);
      if (kind === "HELP") {
        assert.ok(!entry.help, `${where}: a second HELP`);
        assert.doesNotMatch(rest.replace(/\\[\\n]/g, ""), /\\/, `${where}: HELP escapes only \\\\ and \\n`);
        entry.help = true;
      } else {
        assert.ok(!entry.typed && ["counter", "gauge", "histogram", "summary", "untyped"].includes(rest), `${where}: one known TYPE`);
        entry.type = rest;
        entry.typed = true;
      }
      return;
    }
    assert.ok(!line.startsWith("#") || !/^# (HELP|TYPE)/.test(line), `${where}: a malformed HELP or TYPE`);
    if (line === "" || line.startsWith("#")) return;
    const head = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?/.exec(line);
    assert.ok(head !== null, `${where}: a metric name`);
    const name = head[1];
    const labels: Record<string, string> = {};
    let at = head[0].length;
    while (head[2] !== undefined && line[at] !== "}") {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
      assert.ok(label !== null && !label[1].startsWith("__") && !(label[1] in labels), `${where}: a label name at ${at}`);
      at += label[0].length;
      let value = "";
      for (;;) {
        const character = line[at];
        assert.ok(character !== undefined, `${where}: an unterminated label value`);
        at++;
        if (character === '"') break;
        if (character !== "\\") {
          value += character;
          continue;
        }
        const escaped = ({ "\\": "\\", '"': '"', n: "\n" } as Record<string, string>)[line[at]];
        assert.ok(escaped !== undefined, `${where}: a label value escapes only \\\\, \\" and \\n`);
        value += escaped;
        at++;
      }
      labels[label[1]] = value;
      if (line[at] === ",") at++;
      else assert.equal(line[at], "}", `${where}: , or } after a label at ${at}`);
    }
    if (head[2] !== undefined) at++;
    const tail = /^ (\S+)( -?\d+)?$/.exec(line.slice(at));
    assert.ok(tail !== null, `${where}: one value (and maybe a timestamp) after the labels`);
    const value = number(tail[1], where);
    const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
    const histogram = base !== undefined && families.get(base)?.type === "histogram";
    const entry = family(histogram ? base : name, where);
    assert.ok(entry.typed, `${where}: TYPE before the samples`);
    if (entry.type === "histogram") assert.ok(histogram && (!name.endsWith("_bucket") || "le" in labels), `${where}: a histogram's _bucket{le}, _sum or _count`);
    if (entry.type === "counter") assert.ok(value >= 0, `${where}: a counter is >= 0`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!series.has(key), `${where}: a series twice`);
    series.add(key);
    entry.samples.push({ name, labels, value });
  });
  for (const [name, { type, samples }] of families) {
    if (type !== "histogram") continue;
    const groups = new Map<string, { bounds: number[]; counts: number[]; sum?: number; count?: number }>();
    for (const { name: sampleName, labels, value } of samples) {
      const { le, ...rest } = labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      const group = groups.get(key) ?? { bounds: [], counts: [] };
      groups.set(key, group);
      if (sampleName.endsWith("_bucket")) {
        group.bounds.push(number(le, `${name}${key} le`));
        group.counts.push(value);
      } else if (sampleName.endsWith("_sum")) group.sum = value;
      else group.count = value;
    }
    for (const [key, { bounds, counts, sum, count }] of groups) {
      assert.ok(sum !== undefined && count !== undefined && bounds.length > 0, `${name}${key}: buckets, _sum and _count`);
      for (let i = 1; i < bounds.length; i++) assert.ok(bounds[i] > bounds[i - 1] && counts[i] >= counts[i - 1], `${name}${key}: le ascending, counts cumulative`);
      assert.equal(bounds[bounds.length - 1], Infinity, `${name}${key}: the last bucket is +Inf`);
      assert.equal(counts[counts.length - 1], count, `${name}${key}: _count is the +Inf bucket`);
    }
  }
  return families;
}

test("GET /metrics is strict Prometheus text: names, escaped label values (sink names are any string), histograms, no series twice, counters that only grow", async () => {
  const sinks = ["postgres", 'pg "eu"', "back\\slash", "two\nlines", "shop.eu:1"].map((name, index) => ({
    name, shard: index % 2, cursor: 7, lagEvents: 3, delivered: 7 + index, failures: index, lastError: null,
  }));
  const server = await start({ outputs: { status: () => sinks, history: null } });
  try {
    const scrape = async () => {
      const response = await fetch(`${server.base}/metrics`);
      assert.equal(response.status, 200);
      return parsePrometheusText(await response.text());
    };
    const before = await scrape();
    await seed(server);
    const after = await scrape();
    for (const name of ["hotledger_output_cursor", "hotledger_output_lag_events", "hotledger_output_delivered_total", "hotledger_output_failures_total"]) {
      assert.deepEqual(after.get(name)?.samples.map(({ labels }) => labels), sinks.map((sink) => ({ shard: String(sink.shard), sink: sink.name })), name);
    }
    assert.deepEqual(after.get("hotledger_journal_commit_milliseconds")?.samples.filter((sample) => sample.labels.le === "+Inf").length, 2, "one histogram per shard");
    // Every counter (and histogram series) of the first scrape is in the second, and none went down.
    for (const [name, { type, samples }] of before) {
      if (type !== "counter" && type !== "histogram") continue;
      for (const sample of samples) {
        const later = after.get(name)?.samples.find((other) => other.name === sample.name && JSON.stringify(other.labels) === JSON.stringify(sample.labels));
        assert.ok(later !== undefined && later.value >= sample.value, `${sample.name}${JSON.stringify(sample.labels)} only grows`);
      }
    }
    assert.ok((after.get("hotledger_results_total")?.samples.reduce((total, sample) => total + sample.value, 0) ?? 0) >= 4, "the seed's results are counted");
  } finally {
    await server.stop();
  }
});

test("POST /v1/commands mode async: 202 {accepted, ids} once durable; results readable afterwards", async () => {
  const shards = [
    await Shard.open({ journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), accountsMax: 64, partnersMax: 8, holdsMax: 16, idempotencyCommandsMax: 1024, ringSlots: 64 }),
  ];
  const gateway = new RoutingGateway(shards, new ShardMap({ shardCount: 1 }));
  const app = createHttpApp({ gateway, keys: new KeyRing([{ sha256: hashKey("k"), partnerId: "p" }]) }).listen({ hostname: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${app.server?.port}`;
  const post = (body: unknown) =>
    fetch(`${base}/v1/commands`, { method: "POST", headers: { Authorization: "Bearer k", "Content-Type": "application/json" }, body: JSON.stringify(body) });
  try {
    await post({ commands: [{ type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR" }] });
    const response = await post({ mode: "async", commands: [{ type: "credit", id: "c1", partnerId: "p", accountId: "a", amount: 5 }] });
    assert.equal(response.status, 202);
    assert.deepEqual(await response.json(), { accepted: 1, ids: ["c1"] });
    await post({ commands: [{ type: "check", partnerId: "p", accountId: "a", amount: 1 }] });
    const stored = await fetch(`${base}/v1/commands/p/c1`, { headers: { Authorization: "Bearer k" } });
    assert.equal(stored.status, 200);
    assert.equal(((await stored.json()) as { balance: number }).balance, 5);
    const bad = await post({ mode: "later", commands: [{ type: "credit", id: "c2", partnerId: "p", accountId: "a", amount: 5 }] });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { path: string } }).error.path, "mode");
  } finally {
    await app.stop();
    await shards[0].close();
  }
});

test("history and outputs: GET entries pages from the projection (400/404/501), GET /v1/outputs internal only, lag in /metrics", async () => {
  const asked: unknown[] = [];
  const sinks = [{ name: "postgres", shard: 1, cursor: 7, lagEvents: 3, delivered: 7, failures: 1, lastError: "boom" }];
  const outputs: OutputsView = {
    status: () => sinks,
    history: {
      entries: async (partnerId, accountId, page) => {
        asked.push({ partnerId, accountId, ...page });
        return { entries: [{ seq: 4, amount: 100, balanceAfter: 100 }], next: null };
      },
    },
  };
  const server = await start({ outputs });
  const bare = await start();
  try {
    await seed(server);
    const page = await call(server, "GET", `/v1/accounts/${A}/a1/entries?after=3&limit=2`, KEYS.a);
    assert.equal(page.status, 200);
    assert.deepEqual(page.body, { entries: [{ seq: 4, amount: 100, balanceAfter: 100 }], next: null });
    assert.equal((await call(server, "GET", `/v1/accounts/${A}/a1/entries`, KEYS.a)).status, 200);
    assert.deepEqual(asked, [{ partnerId: A, accountId: "a1", after: 3, limit: 2 }, { partnerId: A, accountId: "a1", after: 0, limit: 100 }]);
    for (const [query, path] of [["limit=0", "limit"], ["limit=1001", "limit"], ["after=-1", "after"], ["after=1.5", "after"], ["limit=x", "limit"]]) {
      const bad = await call(server, "GET", `/v1/accounts/${A}/a1/entries?${query}`, KEYS.a);
      assert.equal(bad.status, 400, query);
      assert.equal(bad.body.error.path, path, query);
    }
    assert.equal((await call(server, "GET", `/v1/accounts/${A}/nope/entries`, KEYS.a)).body.error.code, "account_not_found");
    assert.equal((await call(server, "GET", `/v1/accounts/${A}/a1/entries`, KEYS.b)).status, 403);
    assert.equal((await call(server, "GET", `/v1/accounts/${A}/a1/entries`, undefined)).status, 401);
    assert.equal(asked.length, 2, "refused requests never reach the projection");
    const none = await call(bare, "GET", `/v1/accounts/${A}/a1/entries`, KEYS.a);
    assert.deepEqual([none.status, none.body.error.code], [501, "history_unavailable"]);

    assert.equal((await call(server, "GET", "/v1/outputs", KEYS.a)).status, 403);
    assert.deepEqual((await call(server, "GET", "/v1/outputs", KEYS.internal)).body, { sinks });
    assert.deepEqual((await call(bare, "GET", "/v1/outputs", KEYS.internal)).body, { sinks: [] });
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    assert.match(metrics, /^hotledger_output_lag_events\{shard="1",sink="postgres"\} 3$/m);
    assert.match(metrics, /^hotledger_output_failures_total\{shard="1",sink="postgres"\} 1$/m);
  } finally {
    await server.stop();
    await bare.stop();
  }
});

test("a body cut off by the client is a refused request, not an internal error: nothing logged, nothing submitted", async () => {
  const logged: unknown[] = [];
  const submitted: unknown[] = [];
  const gateway = stubGateway({
    submit: async (commands) => {
      submitted.push(commands);
      return [];
    },
  });
  const app = createHttpApp({ gateway, keys: keyRing, log: (_line, error) => logged.push(error) }).listen({ hostname: "127.0.0.1", port: 0 });
  const server = app.server;
  const port = server?.port;
  assert.ok(server !== null && server !== undefined && typeof port === "number");
  /** Wait (bounded) until the server has `count` requests in flight. */
  const inFlight = async (count: number) => {
    for (let attempt = 0; attempt < 400 && server.pendingRequests !== count; attempt++) await sleep(5);
    assert.equal(server.pendingRequests, count);
  };
  try {
    // The same cut, framed both ways: chunked (read here, chunk by chunk) and with Content-Length (the runtime's reader).
    for (const framing of ["Transfer-Encoding: chunked\r\n\r\n40\r\n", "Content-Length: 64\r\n\r\n"]) {
      const socket = connect(port, "127.0.0.1");
      socket.on("error", () => {});
      socket.write(`POST /v1/credit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.a}\r\n${framing}{"id":"cut","partnerId":"${A}"`);
      await inFlight(1);
      socket.destroy();
      await inFlight(0);
    }
    assert.deepEqual(logged, [], "a client that goes away mid-body is not logged as an unexpected error");
    assert.deepEqual(submitted, []);
  } finally {
    await app.stop();
  }
});

test("the app listens exclusively: a second app on a port already taken fails instead of sharing its traffic", async () => {
  const first = createHttpApp({ gateway: stubGateway({}), keys: keyRing }).listen({ hostname: "127.0.0.1", port: 0 });
  let second: ReturnType<typeof createHttpApp> | undefined;
  try {
    const port = first.server?.port;
    assert.ok(typeof port === "number" && port > 0);
    // With SO_REUSEPORT (Elysia's default) both would listen and the kernel would split requests between two ledgers.
    assert.throws(() => {
      second = createHttpApp({ gateway: stubGateway({}), keys: keyRing }).listen({ hostname: "127.0.0.1", port });
    }, /in use/);
  } finally {
    await second?.stop();
    await first.stop();
  }
});
