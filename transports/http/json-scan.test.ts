// Proves the `POST /v1/commands` fast path (json-scan.ts + core's writeScannedResultsJson) answers exactly as the
// slow path (JSON.parse, validation, Command and Result objects, JSON.stringify): two servers over identical fresh
// shards, one whose gateway offers `submitScanned` and one whose gateway does not, get the same generated bodies
// (valid and invalid, in the subset and out of it, duplicates, overdrafts, rejections) and must reply with the same
// status and the same bytes. Also: which bodies the scanner takes, and that the fast path is really taken.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Shard, ShardMap } from "../../core/index.ts";
import { MemoryJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { ScannedNumber, ScannedText, TEXT_FIELDS, NUMBER_FIELDS, ABSENT } from "../../core/command-batch-reader.ts";
import { hashKey, KeyRing } from "../auth.ts";
import { RoutingGateway, type Gateway } from "../gateway.ts";
import { createHttpApp } from "./index.ts";
import { scanJsonCommands } from "./json-scan.ts";

const A = "partner-a";
const B = "partner-b";
const KEYS = { a: "key-a", b: "key-b", internal: "key-internal" };
const keyRing = new KeyRing([
  { sha256: hashKey(KEYS.a), partnerId: A },
  { sha256: hashKey(KEYS.b), partnerId: B },
  { sha256: hashKey(KEYS.internal), internal: "ops" },
]);
const SIZES = { accountsMax: 256, partnersMax: 16, holdsMax: 256, idempotencyCommandsMax: 4096, ringSlots: 1024 };
const bytes = (text: string) => new TextEncoder().encode(text);

test("the scanner takes a plain batch in place: types, byte ranges and numbers", () => {
  const body = ' {"mode":"sync", "commands": [ {"type":"credit","id":"c-1","partnerId":"p","accountId":"a1","amount":250,"currency":"EUR"},\n' +
    '{"amount":7,"toAccountId":"a2","fromAccountId":"a1","partnerId":"p","id":"t-1","type":"transfer"},' +
    '{"type":"check","partnerId":"p","accountId":"a1","amount":999999999999999}], "atomic": false } ';
  const data = bytes(body);
  const scan = scanJsonCommands(data);
  assert.ok(scan !== undefined);
  assert.equal(scan.count, 3);
  assert.equal(scan.atomic, false);
  assert.deepEqual([...scan.types.subarray(0, 3)], [2, 4, 8]);
  const text = (k: number, field: number) => new TextDecoder().decode(data.subarray(scan.ranges[(k * TEXT_FIELDS + field) * 2], scan.ranges[(k * TEXT_FIELDS + field) * 2 + 1]));
  assert.deepEqual([text(0, ScannedText.id), text(0, ScannedText.partnerId), text(0, ScannedText.accountId), text(0, ScannedText.currency)], ["c-1", "p", "a1", "EUR"]);
  assert.deepEqual([text(1, ScannedText.accountId), text(1, ScannedText.toAccountId), text(1, ScannedText.holdId)], ["a1", "a2", ""]);
  assert.equal(text(2, ScannedText.id), "");
  assert.equal(scan.numbers[ScannedNumber.amount], 250);
  assert.equal(scan.numbers[NUMBER_FIELDS + ScannedNumber.amount], 7);
  assert.equal(scan.numbers[2 * NUMBER_FIELDS + ScannedNumber.amount], 999_999_999_999_999);
  assert.equal(scan.numbers[ScannedNumber.expiresInMs], ABSENT);
});

test("bodies outside the subset are left to the slow path", () => {
  const command = (fields: string) => `{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a",${fields}}]}`;
  const outside = [
    "",
    "[]",
    '{"commands":[]}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}],}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1},]}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}]} x',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}],"atomic":true}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}],"mode":"async"}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}],"extra":1}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}],"commands":[]}',
    '{"commands":[{"type":"freeze","id":"c","partnerId":"p","accountId":"a"}]}',
    '{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a"}]}',
    '\ufeff{"commands":[{"type":"credit","id":"c","partnerId":"p","accountId":"a","amount":1}]}',
    command('"amount":0'),
    command('"amount":-1'),
    command('"amount":1.0'),
    command('"amount":1e3'),
    command('"amount":01'),
    command('"amount":1000000000000000'),
    command('"amount":"1"'),
    command('"amount":null'),
    command('"amount":1,"amount":2'),
    command('"amount":1,"holdId":"h"'),
    command('"amount":1,"currency":""'),
    command('"amount":1,"currency":"\\u0045UR"'),
    command('"amount":1,"currency":"É"'),
    command('"amount":1,"note":"x"'),
    '{"commands":[{"type":"transfer","id":"c","partnerId":"p","accountId":"a","toAccountId":"b","amount":1}]}',
  ];
  for (const body of outside) assert.equal(scanJsonCommands(bytes(body)), undefined, body);
  assert.ok(scanJsonCommands(bytes(command('"amount":1'))) !== undefined);
});

/** A gateway without the fast path: every request takes JSON.parse and the object path. */
function slowGateway(gateway: Gateway): Gateway {
  return {
    submit: (commands, options) => gateway.submit(commands, options),
    account: (partnerId, accountId) => gateway.account(partnerId, accountId),
    storedResult: (partnerId, id) => gateway.storedResult(partnerId, id),
    ready: () => gateway.ready(),
    metrics: () => gateway.metrics(),
  };
}

async function server(fast: boolean, counter: { fast: number }) {
  let now = 1_000;
  const shards = await Promise.all(
    [0, 1].map(() => Shard.open({ ...SIZES, journal: new MemoryJournal(), snapshots: new MemorySnapshotStore(), clock: () => now++, snapshotEveryCommands: 1e9 })),
  );
  const routing = new RoutingGateway(shards, new ShardMap({ shardCount: 2 }));
  const gateway: Gateway = fast
    ? Object.assign(slowGateway(routing), {
        submitScanned: ((partnerId, scan, write) => {
          counter.fast++;
          return routing.submitScanned(partnerId, scan, write);
        }) satisfies Gateway["submitScanned"],
      })
    : slowGateway(routing);
  const app = createHttpApp({ gateway, keys: keyRing, log: () => {} }).listen({ hostname: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${app.server?.port}`;
  return {
    post: async (key: string, body: string) => {
      const response = await fetch(`${base}/v1/commands`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body });
      return { status: response.status, type: response.headers.get("content-type"), text: await response.text() };
    },
    stop: async () => {
      await app.stop();
      for (const shard of shards) await shard.close();
    },
  };
}

/** A JSON value's text as a generated body holds it: usually valid for its field, sometimes not. */
const idText = fc.oneof(
  { weight: 60, arbitrary: fc.integer({ min: 1, max: 25 }).map((n) => `"c${n}"`) },
  { weight: 1, arbitrary: fc.constantFrom('""', '"bad id"', `"${"x".repeat(65)}"`, '"c\\u0031"', "7", "null") },
);
const accountText = fc.oneof(
  { weight: 60, arbitrary: fc.constantFrom('"a1"', '"a2"', '"a3"', '"od"') },
  { weight: 1, arbitrary: fc.constantFrom('"nope"', '""', '"é"', "1") },
);
const amountText = fc.oneof(
  { weight: 60, arbitrary: fc.integer({ min: 1, max: 3000 }).map(String) },
  { weight: 4, arbitrary: fc.constantFrom("0", "-5", "1.5", "1e3", "01", '"10"', "9007199254740991", "9007199254740992", "123456789012345", "1000000000000000") },
);
const currencyText = fc.oneof({ weight: 30, arbitrary: fc.constant('"EUR"') }, { weight: 1, arbitrary: fc.constantFrom('"USD"', '"eu"', '""') });
const partnerText = fc.oneof({ weight: 40, arbitrary: fc.constant(`"${A}"`) }, { weight: 1, arbitrary: fc.constantFrom(`"${B}"`, '"bad partner"') });

/** A command as [key, value text] pairs for its type, with an optional field or two, sometimes one wrong. */
const command = fc
  .record({
    type: fc.oneof(
      { weight: 30, arbitrary: fc.constantFrom("credit", "credit", "debit", "debit", "transfer", "hold", "capture", "release", "check", "openAccount") },
      { weight: 1, arbitrary: fc.constantFrom("freeze", "bogus") },
    ),
    id: idText,
    partner: partnerText,
    account: accountText,
    to: accountText,
    amount: amountText,
    currency: currencyText,
    hold: idText,
    expires: fc.integer({ min: 0, max: 100_000 }).map(String),
    limit: fc.integer({ min: 0, max: 5_000 }).map(String),
    optional: fc.boolean(),
    drop: fc.integer({ min: -100, max: 5 }),
    extra: fc.oneof({ weight: 30, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(["note", '"x"'], ["amount", "5"], ["holdId", '"c1"']) }),
  })
  .map((c) => {
    const fields: [string, string][] = [["type", `"${c.type}"`], ["id", c.id], ["partnerId", c.partner]];
    if (c.type === "transfer") fields.push(["fromAccountId", c.account], ["toAccountId", c.to], ["amount", c.amount]);
    else if (c.type === "capture" || c.type === "release") {
      fields.push(["holdId", c.hold]);
      if (c.type === "capture" && c.optional) fields.push(["amount", c.amount]);
    } else if (c.type === "openAccount") {
      fields.push(["accountId", c.account], ["currency", c.currency]);
      if (c.optional) fields.push(["overdraftLimit", c.limit]);
    } else {
      fields.push(["accountId", c.account]);
      if (c.type !== "freeze") fields.push(["amount", c.amount]);
      if ((c.type === "credit" || c.type === "debit") && c.optional) fields.push(["currency", c.currency]);
      if (c.type === "hold" && c.optional) fields.push(["expiresInMs", c.expires]);
    }
    if (c.type === "check" && !c.optional) fields.splice(1, 1);
    if (c.drop >= 0 && c.drop < fields.length) fields.splice(c.drop, 1);
    if (c.extra !== undefined) fields.push(c.extra as [string, string]);
    return fields;
  });

/** Join tokens with generated whitespace (JSON's four kinds, or none). */
const spacing = fc.array(fc.constantFrom("", "", "", " ", "\n", "\t", "\r\n  "), { minLength: 64, maxLength: 64 });

const body = fc
  .record({
    commands: fc.array(fc.tuple(command, fc.boolean()), { minLength: 1, maxLength: 6 }),
    top: fc.oneof(
      { weight: 10, arbitrary: fc.constantFrom([], [], [["atomic", "false"]], [["mode", '"sync"']]) },
      { weight: 1, arbitrary: fc.constantFrom([["atomic", "true"]], [["mode", '"async"']], [["extra", "1"]]) },
    ),
    spaces: spacing,
    empty: fc.integer({ min: 0, max: 40 }),
  })
  .map(({ commands, top, spaces, empty }) => {
    let s = 0;
    const w = () => spaces[s++ % spaces.length];
    const object = (pairs: readonly (readonly [string, string])[]) => `{${pairs.map(([k, v]) => `${w()}"${k}"${w()}:${w()}${v}${w()}`).join(",")}}`;
    const list = commands.map(([fields, reversed]) => object(reversed ? [...fields].reverse() : fields));
    const text = object([["commands", `[${list.join(`,${w()}`)}]`], ...(top as unknown as [string, string][])]);
    return empty === 0 ? '{"commands":[]}' : text;
  });

const keyOf = fc.constantFrom(KEYS.a, KEYS.a, KEYS.a, KEYS.a, KEYS.internal, KEYS.b);

test("fast and slow paths answer every generated body with the same status and bytes", async () => {
  const counter = { fast: 0 };
  const fast = await server(true, counter);
  const slow = await server(false, { fast: 0 });
  let requests = 0;
  try {
    // The same accounts on both: a1..a3 funded, "od" with an overdraft limit (balances go negative).
    const seedBody = JSON.stringify({
      commands: [
        ...["a1", "a2", "a3"].map((accountId) => ({ type: "openAccount", id: `open-${accountId}`, partnerId: A, accountId, currency: "EUR" })),
        { type: "openAccount", id: "open-od", partnerId: A, accountId: "od", currency: "EUR", overdraftLimit: 10_000 },
        ...["a1", "a2", "a3"].map((accountId) => ({ type: "credit", id: `fund-${accountId}`, partnerId: A, accountId, amount: 5_000 })),
      ],
    });
    for (const target of [fast, slow]) assert.equal((await target.post(KEYS.internal, seedBody)).status, 200);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(body, keyOf), { minLength: 1, maxLength: 8 }), async (requestsOf) => {
        for (const [text, key] of requestsOf) {
          requests++;
          const [a, b] = [await fast.post(key, text), await slow.post(key, text)];
          assert.deepEqual(a, b, text);
        }
      }),
      { numRuns: 150, seed: 20261206 },
    );
  } finally {
    await fast.stop();
    await slow.stop();
  }
  // The property is only worth something if both paths ran: the generated bodies are mostly in the subset.
  assert.ok(counter.fast > requests / 10, `fast path taken ${counter.fast} times for ${requests} requests`);
  assert.ok(counter.fast < requests, "some bodies went the slow way");
});

test("the fast path's reply: negative balances, duplicates and rejections, as JSON.stringify writes them", async () => {
  const counter = { fast: 0 };
  const fast = await server(true, counter);
  try {
    await fast.post(KEYS.a, JSON.stringify({ commands: [{ type: "openAccount", id: "o", partnerId: A, accountId: "od", currency: "EUR", overdraftLimit: 500 }] }));
    const before = counter.fast;
    const batch = JSON.stringify({
      commands: [
        { type: "debit", id: "d1", partnerId: A, accountId: "od", amount: 300 },
        { type: "debit", id: "d1", partnerId: A, accountId: "od", amount: 300 },
        { type: "debit", id: "d2", partnerId: A, accountId: "od", amount: 300 },
        { type: "check", partnerId: A, accountId: "od", amount: 1 },
        { type: "credit", id: "d1", partnerId: A, accountId: "od", amount: 1 },
      ],
    });
    const reply = await fast.post(KEYS.a, batch);
    assert.equal(counter.fast, before + 1, "took the fast path");
    assert.equal(reply.status, 200);
    assert.equal(reply.type, "application/json");
    const results = [
      { id: "d1", status: "ok", code: "ok", seq: 2, balance: -300, held: 0, available: 200 },
      { id: "d1", status: "ok", code: "ok", seq: 2, balance: -300, held: 0, available: 200, duplicate: true },
      { id: "d2", status: "rejected", code: "insufficient_funds", seq: 4, balance: -300, held: 0, available: 200 },
      { id: "", status: "ok", code: "ok", seq: 5, balance: -300, held: 0, available: 200 },
      { id: "d1", status: "rejected", code: "id_reused", seq: 6 },
    ];
    assert.equal(reply.text, JSON.stringify({ results }));
  } finally {
    await fast.stop();
  }
});
