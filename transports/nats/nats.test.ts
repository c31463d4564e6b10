// Proves the NATS transport's contract against the real nats-server at 127.0.0.1:4222 (override with NATS_URL): a
// RoutingGateway over two shards (in-memory journal and snapshot store), partners on different shards, requests made
// with a separate client connection on a subject unique to this run. Protobuf and JSON request/reply, atomic
// groups, every error header (unauthorized, forbidden, invalid_request, overloaded, unavailable, internal), bad
// messages that must not stop the subscription (a header block nats.js cannot parse, sent by a raw TCP client, among
// them), and two instances in one queue group sharing 50 requests.
// When the server is unreachable the suite is skipped with a message, except in CI (CI=true), where it fails.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect as connectTcp } from "node:net";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { OverloadedError, Shard, ShardMap, ShardUnavailableError, type Result } from "../../core/index.ts";
import {
  CommandBatchSchema,
  CommandSchema,
  CommandType,
  ResultBatchSchema,
  ResultCode,
} from "../../core/gen/hotledger/v1/ledger_pb.ts";
import { MemoryJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { hashKey, KeyRing } from "../auth.ts";
import { RoutingGateway, type Gateway } from "../gateway.ts";
import { startNatsTransport, type NatsTransport } from "./index.ts";
import { natsReachable, skipUnlessAvailable } from "../../runtime-tests/services.ts";

/** A protobuf command as written in the tests (unset fields at their defaults). */
type ProtoCommandInit = MessageInitShape<typeof CommandSchema>;

const SERVER = process.env.NATS_URL ?? "127.0.0.1:4222";
const REQUEST_TIMEOUT_MS = 5_000;
const A = "partner-a";
const B = "partner-b";
const KEYS = { a: "key-a", b: "key-b", internal: "key-internal" };
const keyRing = new KeyRing([
  { sha256: hashKey(KEYS.a), partnerId: A },
  { sha256: hashKey(KEYS.b), partnerId: B },
  { sha256: hashKey(KEYS.internal), internal: "ops" },
]);
const SIZES = { accountsMax: 1024, partnersMax: 16, holdsMax: 256, idempotencyCommandsMax: 8192, ringSlots: 2048 };
const RUN = randomBytes(6).toString("hex");
let subjects = 0;

/** A subject no other run (or other test of this run) uses. */
function uniqueSubject(): string {
  return `hotledger.test.${RUN}.${subjects++}.commands`;
}

const server = await natsReachable(SERVER);
const skip = skipUnlessAvailable(server.up, "nats-server is reachable",
  `nats-server at ${SERVER} is unreachable (${server.up ? "" : server.reason}); NATS transport tests skipped`);

/** Two real shards; partner A and partner B on different shards. */
async function openGateway(): Promise<{ gateway: Gateway; close(): Promise<void> }> {
  let now = 1_000;
  const shards = await Promise.all(
    [0, 1].map(() =>
      Shard.open({ ...SIZES, journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), clock: () => now++, snapshotEveryCommands: 1e9 }),
    ),
  );
  const map = new ShardMap({ shardCount: 2 });
  assert.notEqual(map.shardOf(A), map.shardOf(B), "the test partners must be on different shards");
  return {
    gateway: new RoutingGateway(shards, map),
    close: async () => {
      for (const shard of shards) await shard.close();
    },
  };
}

interface Harness {
  subject: string;
  gateway: Gateway;
  client: NatsConnection;
  logged: unknown[];
  stop(): Promise<void>;
}

/** A transport (or `instances` of them in one queue group) over `gateway` (default: two real shards), and a client. */
async function start(options: { gateway?: Gateway; instances?: number; wrap?: (gateway: Gateway, instance: number) => Gateway } = {}): Promise<Harness> {
  const opened = options.gateway === undefined ? await openGateway() : undefined;
  const gateway = options.gateway ?? (opened as { gateway: Gateway }).gateway;
  const subject = uniqueSubject();
  const queue = `hotledger-test-${RUN}`;
  const logged: unknown[] = [];
  const transports: NatsTransport[] = [];
  for (let i = 0; i < (options.instances ?? 1); i++) {
    const instanceGateway = options.wrap === undefined ? gateway : options.wrap(gateway, i);
    transports.push(await startNatsTransport({ servers: SERVER, gateway: instanceGateway, keys: keyRing, subject, queue, log: (_line, error) => logged.push(error) }));
  }
  const client = await connect({ servers: SERVER });
  return {
    subject,
    gateway,
    client,
    logged,
    stop: async () => {
      await client.close();
      for (const transport of transports) await transport.stop();
      await opened?.close();
    },
  };
}

/** Send `data` with optional key and content type; every request times out after REQUEST_TIMEOUT_MS. */
async function request(h: Harness, data: Uint8Array, key?: string, contentType?: string): Promise<Msg> {
  const hdrs = natsHeaders();
  if (key !== undefined) hdrs.set("Authorization", `Bearer ${key}`);
  if (contentType !== undefined) hdrs.set("Content-Type", contentType);
  return h.client.request(h.subject, data, { timeout: REQUEST_TIMEOUT_MS, headers: hdrs });
}

function proto(commands: ProtoCommandInit[], atomic = false): Uint8Array {
  return toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands, atomic }));
}

async function requestProto(h: Harness, commands: ProtoCommandInit[], key?: string, atomic = false) {
  const reply = await request(h, proto(commands, atomic), key);
  assert.equal(reply.headers?.get("Hotledger-Error") ?? "", "", `unexpected error reply: ${reply.headers?.get("Hotledger-Error-Message")}`);
  return fromBinary(ResultBatchSchema, reply.data).results;
}

async function requestJson(h: Harness, body: unknown, key?: string): Promise<Msg> {
  return request(h, new TextEncoder().encode(typeof body === "string" ? body : JSON.stringify(body)), key, "application/json");
}

/** The reply's error code and message; asserts the body is empty. */
function errorOf(reply: Msg): { code: string; message: string; retryAfter: string } {
  assert.equal(reply.data.length, 0, "an error reply has an empty body");
  return {
    code: reply.headers?.get("Hotledger-Error") ?? "",
    message: reply.headers?.get("Hotledger-Error-Message") ?? "",
    retryAfter: reply.headers?.get("Retry-After") ?? "",
  };
}

const open = (partnerId: string, accountId: string): ProtoCommandInit => ({
  type: CommandType.OPEN_ACCOUNT,
  id: `open:${accountId}`,
  partnerId,
  accountId,
  currency: "EUR",
});
const credit = (id: string, partnerId: string, accountId: string, amount: bigint): ProtoCommandInit => ({
  type: CommandType.CREDIT,
  id,
  partnerId,
  accountId,
  amount,
});

/** Open A/a1, A/a2, B/b1 and credit A/a1 with 100. */
async function seed(h: Harness): Promise<void> {
  const opened = await requestProto(h, [open(A, "a1"), open(A, "a2"), open(B, "b1")], KEYS.internal);
  assert.deepEqual(opened.map((r) => r.code), [ResultCode.OK, ResultCode.OK, ResultCode.OK]);
  const [credited] = await requestProto(h, [credit("seed", A, "a1", 100n)], KEYS.a);
  assert.equal(credited.code, ResultCode.OK);
}

/** Every command handled by `instance` is counted in `counts[instance]`. */
function counting(counts: number[]) {
  return (gateway: Gateway, instance: number): Gateway => ({
    submit: async (commands, options) => {
      counts[instance] += commands.length;
      return gateway.submit(commands, options);
    },
    account: (partnerId, accountId) => gateway.account(partnerId, accountId),
    storedResult: (partnerId, id) => gateway.storedResult(partnerId, id),
    ready: () => gateway.ready(),
    metrics: () => gateway.metrics(),
  });
}

/**
 * Publish to `subject` with reply subject `reply` as a raw client may (nats.js refuses to write such headers): the
 * header block `headerLines` (CRLF-terminated lines after `NATS/1.0`) and `payload`, over a TCP connection of its
 * own; resolves once the server has answered the PING after it (the message is routed).
 */
async function rawPublish(subject: string, reply: string, headerLines: string, payload: string): Promise<void> {
  const [host, port] = SERVER.replace(/^nats:\/\//, "").split(":");
  const socket = connectTcp(Number(port ?? 4222), host);
  try {
    await new Promise<void>((resolve, reject) => {
      let received = "";
      socket.on("error", reject);
      socket.on("data", (chunk) => {
        received += chunk.toString("latin1");
        if (received.includes("PONG\r\n")) resolve();
        else if (received.includes("-ERR")) reject(new Error(`nats-server refused the raw message: ${received}`));
      });
      const headerBlock = `NATS/1.0\r\n${headerLines}\r\n`;
      const size = Buffer.byteLength(headerBlock) + Buffer.byteLength(payload);
      socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n`);
      socket.write(`HPUB ${subject} ${reply} ${Buffer.byteLength(headerBlock)} ${size}\r\n${headerBlock}${payload}\r\nPING\r\n`);
    });
  } finally {
    socket.destroy();
  }
}

function stubGateway(submit: Gateway["submit"]): Gateway {
  return { submit, account: async () => undefined, storedResult: async () => undefined, ready: () => true, metrics: async () => [] };
}

describe("NATS transport", { skip }, () => {
  test("protobuf request/reply: open accounts, credit, results decoded", async () => {
    const h = await start();
    try {
      const opened = await requestProto(h, [open(A, "a1"), open(B, "b1")], KEYS.internal);
      assert.equal(opened.length, 2);
      assert.deepEqual(opened.map((r) => [r.id, r.code, r.balance, r.duplicate]), [
        ["open:a1", ResultCode.OK, 0n, false],
        ["open:b1", ResultCode.OK, 0n, false],
      ]);
      const [credited] = await requestProto(h, [credit("c1", A, "a1", 100n)], KEYS.a);
      assert.equal(credited.id, "c1");
      assert.equal(credited.code, ResultCode.OK);
      assert.equal(typeof credited.seq, "bigint");
      assert.ok(credited.seq > 0n);
      assert.equal(credited.balance, 100n);
      assert.equal(credited.held, 0n);
      assert.equal(credited.available, 100n);
      assert.equal(credited.duplicate, false);
      const [again] = await requestProto(h, [credit("c1", A, "a1", 100n)], KEYS.a);
      assert.equal(again.duplicate, true);
      assert.equal(again.seq, credited.seq);
      const [missing] = await requestProto(h, [credit("c2", A, "nope", 5n)], KEYS.a);
      assert.equal(missing.code, ResultCode.ACCOUNT_NOT_FOUND);
      assert.equal(missing.balance, undefined, "absent fields stay absent");
      // A transfer: account_id is the source.
      const [moved] = await requestProto(h, [{ type: CommandType.OPEN_ACCOUNT, id: "o2", partnerId: A, accountId: "a2", currency: "EUR" }], KEYS.a);
      assert.equal(moved.code, ResultCode.OK);
      const [transfer] = await requestProto(h, [{ type: CommandType.TRANSFER, id: "t1", partnerId: A, accountId: "a1", toAccountId: "a2", amount: 40n }], KEYS.a);
      assert.equal(transfer.code, ResultCode.OK);
      assert.equal(transfer.balance, 60n);
      assert.equal((await h.gateway.account(A, "a2"))?.balance, 40);
    } finally {
      await h.stop();
    }
  });

  test("JSON request/reply", async () => {
    const h = await start();
    try {
      await seed(h);
      const reply = await requestJson(h, { commands: [{ type: "debit", id: "d1", partnerId: A, accountId: "a1", amount: 30 }] }, KEYS.a);
      assert.equal(reply.headers?.get("Hotledger-Error") ?? "", "");
      const body = JSON.parse(new TextDecoder().decode(reply.data)) as { results: Result[] };
      assert.equal(body.results.length, 1);
      assert.equal(body.results[0].code, "ok");
      assert.equal(body.results[0].balance, 70);
      // Content-Type with parameters is still JSON.
      const withCharset = await request(
        h,
        new TextEncoder().encode(JSON.stringify({ commands: [{ type: "check", partnerId: A, accountId: "a1", amount: 1000 }] })),
        KEYS.a,
        "application/json; charset=utf-8",
      );
      assert.equal(JSON.parse(new TextDecoder().decode(withCharset.data)).results[0].code, "insufficient_funds");
    } finally {
      await h.stop();
    }
  });

  test("atomic group: all or nothing; one partner only", async () => {
    const h = await start();
    try {
      await seed(h);
      const failed = await requestProto(h, [credit("g1", A, "a2", 10n), { type: CommandType.DEBIT, id: "g2", partnerId: A, accountId: "a1", amount: 1000n }], KEYS.a, true);
      assert.deepEqual(failed.map((r) => r.code), [ResultCode.LINKED_FAILED, ResultCode.INSUFFICIENT_FUNDS]);
      assert.equal((await h.gateway.account(A, "a2"))?.balance, 0, "nothing of a failed group applies");
      const applied = await requestProto(h, [credit("g3", A, "a2", 10n), { type: CommandType.DEBIT, id: "g4", partnerId: A, accountId: "a1", amount: 10n }], KEYS.a, true);
      assert.deepEqual(applied.map((r) => r.code), [ResultCode.OK, ResultCode.OK]);
      assert.equal((await h.gateway.account(A, "a2"))?.balance, 10);
      assert.equal((await h.gateway.account(A, "a1"))?.balance, 90);
      const mixed = errorOf(await request(h, proto([credit("g5", A, "a1", 1n), credit("g6", B, "b1", 1n)], true), KEYS.internal));
      assert.equal(mixed.code, "invalid_request");
      const jsonMixed = errorOf(
        await requestJson(h, { atomic: true, commands: [{ type: "credit", id: "g7", partnerId: A, accountId: "a1", amount: 1 }, { type: "credit", id: "g8", partnerId: B, accountId: "b1", amount: 1 }] }, KEYS.internal),
      );
      assert.equal(jsonMixed.code, "invalid_request");
      assert.equal((await h.gateway.account(B, "b1"))?.balance, 0);
    } finally {
      await h.stop();
    }
  });

  test("unauthorized: no key, unknown key, not a bearer header", async () => {
    const h = await start();
    try {
      await seed(h);
      const body = proto([credit("u1", A, "a1", 5n)]);
      for (const key of [undefined, "not-a-key", ""]) {
        const error = errorOf(await request(h, body, key));
        assert.equal(error.code, "unauthorized", `key ${key}`);
        assert.match(error.message, /Authorization/);
      }
      const hdrs = natsHeaders();
      hdrs.set("Authorization", `Basic ${KEYS.a}`);
      const basic = await h.client.request(h.subject, body, { timeout: REQUEST_TIMEOUT_MS, headers: hdrs });
      assert.equal(errorOf(basic).code, "unauthorized");
      // Two Authorization headers, even with a valid key first, are refused: not the first one taken.
      const twice = natsHeaders();
      twice.append("Authorization", `Bearer ${KEYS.a}`);
      twice.append("Authorization", "Bearer not-a-key");
      assert.equal(errorOf(await h.client.request(h.subject, body, { timeout: REQUEST_TIMEOUT_MS, headers: twice })).code, "unauthorized");
      // Unauthenticated JSON too, and nothing moved.
      assert.equal(errorOf(await requestJson(h, { commands: [] })).code, "unauthorized");
      assert.equal((await h.gateway.account(A, "a1"))?.balance, 100);
    } finally {
      await h.stop();
    }
  });

  test("forbidden: partner key on another partner, admin commands with a partner key", async () => {
    const h = await start();
    try {
      await seed(h);
      const other = errorOf(await request(h, proto([credit("f1", A, "a1", 5n)]), KEYS.b));
      assert.equal(other.code, "forbidden");
      assert.match(other.message, /partner-a/);
      const oneOfMany = errorOf(await request(h, proto([credit("f2", B, "b1", 5n), credit("f3", A, "a1", 5n)]), KEYS.b));
      assert.equal(oneOfMany.code, "forbidden", "one foreign command refuses the whole request");
      assert.equal((await h.gateway.account(B, "b1"))?.balance, 0);
      for (const type of [CommandType.FREEZE, CommandType.UNFREEZE, CommandType.CLOSE]) {
        assert.equal(errorOf(await request(h, proto([{ type, id: `adm${type}`, partnerId: A, accountId: "a1" }]), KEYS.a)).code, "forbidden");
      }
      const limit = proto([{ type: CommandType.SET_OVERDRAFT_LIMIT, id: "lim", partnerId: A, accountId: "a1", overdraftLimit: 50n }]);
      assert.equal(errorOf(await request(h, limit, KEYS.a)).code, "forbidden");
      const jsonFreeze = { commands: [{ type: "freeze", id: "jf", partnerId: A, accountId: "a1" }] };
      assert.equal(errorOf(await requestJson(h, jsonFreeze, KEYS.a)).code, "forbidden");
      // The same admin commands with the internal key.
      const [limited] = await requestProto(h, [{ type: CommandType.SET_OVERDRAFT_LIMIT, id: "lim", partnerId: A, accountId: "a1", overdraftLimit: 50n }], KEYS.internal);
      assert.equal(limited.code, ResultCode.OK);
      assert.equal((await h.gateway.account(A, "a1"))?.overdraftLimit, 50);
      const [frozen] = await requestProto(h, [{ type: CommandType.FREEZE, id: "fz", partnerId: A, accountId: "a1" }], KEYS.internal);
      assert.equal(frozen.code, ResultCode.OK);
      assert.equal((await h.gateway.account(A, "a1"))?.status, "frozen");
    } finally {
      await h.stop();
    }
  });

  test("invalid_request: bad payloads and out-of-range numbers; amount 0 reaches the core; the subscription survives", async () => {
    const h = await start();
    try {
      await seed(h);
      const bad: [string, Uint8Array, string?][] = [
        ["malformed protobuf", new Uint8Array([0xff, 0xff, 0xff, 0xff])],
        ["truncated protobuf", proto([credit("x", A, "a1", 5n)]).subarray(0, 10)],
        ["empty batch", new Uint8Array(0)],
        ["amount 2^53", proto([credit("x", A, "a1", 2n ** 53n)])],
        ["amount int64 max", proto([credit("x", A, "a1", 2n ** 63n - 1n)])],
        ["negative amount", proto([credit("x", A, "a1", -5n)])],
        ["overdraft limit 2^53", proto([{ ...open(A, "a9"), overdraftLimit: 2n ** 53n }])],
        ["unspecified type", proto([{ type: CommandType.UNSPECIFIED, id: "x", partnerId: A, accountId: "a1" }])],
        ["unknown type", proto([{ type: 99 as CommandType, id: "x", partnerId: A, accountId: "a1" }])],
        ["missing amount", proto([{ type: CommandType.CREDIT, id: "x", partnerId: A, accountId: "a1" }])],
        ["missing id", proto([credit("", A, "a1", 5n)])],
        ["field of another type", proto([{ ...credit("x", A, "a1", 5n), holdId: "h1" }])],
        ["bad identifier", proto([credit("x y", A, "a1", 5n)])],
        ["malformed JSON", new TextEncoder().encode("{not json"), "application/json"],
        ["JSON amount 0", new TextEncoder().encode(JSON.stringify({ commands: [{ type: "credit", id: "x", partnerId: A, accountId: "a1", amount: 0 }] })), "application/json"],
        ["JSON unknown field", new TextEncoder().encode(JSON.stringify({ commands: [{ type: "credit", id: "x", partnerId: A, accountId: "a1", amount: 1, extra: 1 }] })), "application/json"],
        ["JSON sent as protobuf", new TextEncoder().encode(JSON.stringify({ commands: [] }))],
        ["JSON with the HTTP-only mode", new TextEncoder().encode(JSON.stringify({ mode: "async", commands: [{ type: "credit", id: "m", partnerId: A, accountId: "a1", amount: 1 }] })), "application/json"],
      ];
      for (const [name, data, contentType] of bad) {
        const error = errorOf(await request(h, data, KEYS.a, contentType));
        assert.equal(error.code, "invalid_request", `${name}: ${error.message}`);
        assert.notEqual(error.message, "", name);
      }
      assert.equal((await h.gateway.account(A, "a1"))?.balance, 100, "no invalid request changed a balance");
      // The boundary: 2^53-1 passes the transport (the core then answers it), 0 reaches the core as amount_invalid.
      const [zero] = await requestProto(h, [credit("z0", A, "a1", 0n)], KEYS.a);
      assert.equal(zero.code, ResultCode.AMOUNT_INVALID);
      const [max] = await requestProto(h, [credit("zmax", A, "a2", 2n ** 53n - 1n)], KEYS.a);
      assert.equal(max.code, ResultCode.OK);
      assert.equal(max.balance, 2n ** 53n - 1n);
      // Still serving after the bad messages.
      const [ok] = await requestProto(h, [credit("after", A, "a1", 1n)], KEYS.a);
      assert.equal(ok.balance, 101n);
      assert.deepEqual(h.logged, [], "client errors are not logged as internal");
    } finally {
      await h.stop();
    }
  });

  test("a header block nats.js cannot parse (from a raw client) is invalid_request; the process and the subscription survive", async () => {
    const h = await start();
    try {
      await seed(h);
      const inbox = `${h.subject}.raw-reply`;
      const replies = h.client.subscribe(inbox, { max: 2, timeout: REQUEST_TIMEOUT_MS });
      await h.client.flush();
      // A space in a header name; a bare LF inside the Authorization value.
      await rawPublish(h.subject, inbox, "Bad Key: x\r\n", "x");
      await rawPublish(h.subject, inbox, `Authorization: Bearer ${KEYS.a}\nx\r\n`, "x");
      const received: Msg[] = [];
      for await (const reply of replies) received.push(reply);
      assert.deepEqual(received.map((reply) => errorOf(reply).code), ["invalid_request", "invalid_request"]);
      assert.match(errorOf(received[0]).message, /headers are malformed/);
      const [ok] = await requestProto(h, [credit("after-raw", A, "a1", 1n)], KEYS.a);
      assert.equal(ok.balance, 101n);
      assert.deepEqual(h.logged, [], "bad input is not logged as internal");
    } finally {
      await h.stop();
    }
  });

  test("overloaded, unavailable, internal: error headers with Retry-After", async () => {
    let failure: Error = new OverloadedError("ring full");
    const gateway = stubGateway(async () => {
      throw failure;
    });
    const h = await start({ gateway });
    try {
      const body = proto([credit("e1", A, "a1", 5n)]);
      const overloaded = errorOf(await request(h, body, KEYS.a));
      assert.deepEqual([overloaded.code, overloaded.retryAfter], ["overloaded", "1"]);
      failure = new ShardUnavailableError("disk", 2500);
      const unavailable = errorOf(await request(h, body, KEYS.a));
      assert.deepEqual([unavailable.code, unavailable.retryAfter], ["unavailable", "3"]);
      failure = new Error("secret internals");
      const internal = errorOf(await request(h, body, KEYS.a));
      assert.deepEqual([internal.code, internal.retryAfter], ["internal", ""]);
      assert.doesNotMatch(internal.message, /secret/);
      assert.equal(h.logged.length, 1, "the unexpected error is logged");
      // JSON requests get the same error headers.
      assert.equal(errorOf(await requestJson(h, { commands: [{ type: "credit", id: "e2", partnerId: A, accountId: "a1", amount: 1 }] }, KEYS.a)).code, "internal");
    } finally {
      await h.stop();
    }
  });

  test("one-partner protobuf batches take the scanned fast path; atomic, mixed, admin and refused ones are decoded, with the same answers", async () => {
    const counts = { scanned: 0, decoded: 0 };
    let failure: Error | undefined;
    const h = await start({
      wrap: (gateway) => ({
        ...counting([0])(gateway, 0),
        submit: (commands, options) => {
          counts.decoded += commands.length;
          return gateway.submit(commands, options);
        },
        submitScanned: (partnerId, scan) => {
          if (failure !== undefined) throw failure;
          const results = gateway.submitScanned?.(partnerId, scan);
          counts.scanned += scan.count;
          return results;
        },
      }),
    });
    try {
      await seed(h);
      assert.deepEqual(counts, { scanned: 1, decoded: 3 }, "the seed: opens of two partners decoded, one credit scanned");
      const batch: ProtoCommandInit[] = [
        credit("f1", A, "a1", 10n),
        { type: CommandType.DEBIT, id: "f2", partnerId: A, accountId: "a1", amount: 30n },
        { type: CommandType.TRANSFER, id: "f3", partnerId: A, accountId: "a1", toAccountId: "a2", amount: 5n },
        { type: CommandType.HOLD, id: "h1", partnerId: A, accountId: "a1", amount: 20n, expiresInMs: 60_000n },
        { type: CommandType.CAPTURE, id: "f4", partnerId: A, holdId: "h1", amount: 15n },
        { type: CommandType.CHECK, partnerId: A, accountId: "a1", amount: 1_000n },
        { type: CommandType.DEBIT, id: "f5", partnerId: A, accountId: "a1", amount: 1_000n },
      ];
      const results = await requestProto(h, batch, KEYS.a);
      assert.deepEqual(results.map((r) => [r.id, ResultCode[r.code], r.balance, r.held]), [
        ["f1", "OK", 110n, 0n],
        ["f2", "OK", 80n, 0n],
        ["f3", "OK", 75n, 0n],
        ["h1", "OK", 75n, 20n],
        ["f4", "OK", 60n, 0n],
        ["", "INSUFFICIENT_FUNDS", 60n, 0n],
        ["f5", "INSUFFICIENT_FUNDS", 60n, 0n],
      ]);
      assert.deepEqual(counts, { scanned: 8, decoded: 3 });
      const again = await requestProto(h, batch.slice(0, 2), KEYS.a);
      assert.deepEqual(again.map((r) => [r.id, r.duplicate, r.seq]), results.slice(0, 2).map((r) => [r.id, true, r.seq]));
      assert.equal(counts.scanned, 10);
      // Decoded: atomic, two partners, an admin command, and a batch the shard refused on the fast path (having
      // published nothing), which then gets the decoded path's error.
      await requestProto(h, [credit("g1", A, "a1", 1n), credit("g2", A, "a2", 1n)], KEYS.a, true);
      await requestProto(h, [credit("m1", A, "a1", 1n), credit("m2", B, "b1", 1n)], KEYS.internal);
      await requestProto(h, [{ type: CommandType.FREEZE, id: "z1", partnerId: B, accountId: "b1" }], KEYS.internal);
      assert.deepEqual(counts, { scanned: 10, decoded: 8 });
      const refused = errorOf(await request(h, proto([credit("ok1", A, "a1", 1n), credit("x y", A, "a1", 1n)]), KEYS.a));
      assert.equal(refused.code, "invalid_request");
      assert.match(refused.message, /commands\[1\]\.id/);
      assert.equal((await h.gateway.account(A, "a1"))?.balance, 62, "the refused batch changed nothing");
      // The shard's own errors on the fast path are the usual error replies.
      failure = new OverloadedError("ring full");
      assert.deepEqual(errorOf(await request(h, proto([credit("o1", A, "a1", 1n)]), KEYS.a)).code, "overloaded");
      failure = new ShardUnavailableError("disk", 1000);
      assert.deepEqual(errorOf(await request(h, proto([credit("o2", A, "a1", 1n)]), KEYS.a)).code, "unavailable");
    } finally {
      await h.stop();
    }
  });

  test("two instances in one queue group share 50 requests, each answered exactly once", async () => {
    const counts = [0, 0];
    const opened = await openGateway();
    const h = await start({ gateway: opened.gateway, instances: 2, wrap: counting(counts) });
    try {
      await seed(h);
      counts[0] = 0;
      counts[1] = 0;
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => requestProto(h, [credit(`q${i}`, A, "a2", 1n)], KEYS.a)));
      assert.equal(replies.length, 50);
      for (const [i, results] of replies.entries()) {
        assert.equal(results.length, 1);
        assert.equal(results[0].id, `q${i}`);
        assert.equal(results[0].code, ResultCode.OK);
        assert.equal(results[0].duplicate, false, "no request was handled twice");
      }
      assert.equal(counts[0] + counts[1], 50, `each request handled once (per instance: ${counts})`);
      assert.ok(counts[0] > 0 && counts[1] > 0, `both instances served (per instance: ${counts})`);
      assert.equal((await h.gateway.account(A, "a2"))?.balance, 50);
    } finally {
      await h.stop();
      await opened.close();
    }
  });
});

