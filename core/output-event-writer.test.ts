// Proves the hand-written OutputEvent encoder is protobuf: for every event of a real shard's workload and for edge
// cases (negative and near-2^53 int64s, zeros and absent optional fields, non-ASCII and long strings, no account
// changes, no account id), its bytes equal protobuf-es toBinary of outputEventToProto, one event and as batches,
// and protobuf-es fromBinary reads them back to that message. Numbers that are not safe integers are refused.
// The ResultBatch writer (NATS replies) is held to protobuf-es the same way, on the same events' results.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AssertionError, type Command, type OutputEvent } from "./index.ts";
import { OutputEventBatchSchema, OutputEventSchema, ResultBatchSchema } from "./gen/hotledger/v1/ledger_pb.ts";
import { writeOutputEvent, writeOutputEventBatch, writeResultBatch } from "./output-event-writer.ts";
import { outputEventToProto, resultToProto } from "./wire.ts";
import { batchEvents, workloadEvents } from "./testing/workload.ts";

const MAX = Number.MAX_SAFE_INTEGER;
/** Shard 7's events, stamped with epoch-millisecond times (full-length varints, as in use) moving 0-5 ms per record. */
const EVENTS_OPTIONS = { shard: 7, clockStartMs: 1_700_000_000_000 };

/** The hand-written bytes of `event` are protobuf-es's, and decode back to the same message. */
function assertLikeProtobufEs(event: OutputEvent): void {
  const message = outputEventToProto(event);
  const bytes = writeOutputEvent(event);
  assert.deepEqual(bytes, toBinary(OutputEventSchema, message), `${event.eventId}: the bytes protobuf-es writes`);
  assert.deepEqual(fromBinary(OutputEventSchema, bytes), message, `${event.eventId}: decodes back`);
}

function assertBatchLikeProtobufEs(events: readonly OutputEvent[]): void {
  const message = create(OutputEventBatchSchema, { events: events.map(outputEventToProto) });
  const bytes = writeOutputEventBatch(events);
  assert.deepEqual(bytes, toBinary(OutputEventBatchSchema, message), `batch of ${events.length}: the bytes protobuf-es writes`);
  assert.deepEqual(fromBinary(OutputEventBatchSchema, bytes), message, `batch of ${events.length}: decodes back`);
}

const workload = await workloadEvents({ ...EVENTS_OPTIONS, seed: 11, batches: 1500, prefix: "ord_01HZX3K9QW" });

/** Commands whose events reach the boundaries: overdraft, 2^53-1, zero and absent optional fields, duplicates. */
const boundaryCommands: Command[] = [
  { type: "openAccount", id: "open-od", partnerId: "p", accountId: "od", currency: "EUR", overdraftLimit: 1000 },
  { type: "openAccount", id: "open-max", partnerId: "p", accountId: "max", currency: "EUR", overdraftLimit: 0 },
  { type: "openAccount", id: "open-to", partnerId: "p", accountId: "to", currency: "EUR" },
  { type: "debit", id: "d-od", partnerId: "p", accountId: "od", amount: 300, currency: "EUR" },
  { type: "transfer", id: "t-od", partnerId: "p", fromAccountId: "od", toAccountId: "to", amount: 700 },
  { type: "credit", id: "c-max", partnerId: "p", accountId: "max", amount: MAX },
  { type: "credit", id: "c-overflow", partnerId: "p", accountId: "max", amount: 1 },
  { type: "hold", id: "h-max", partnerId: "p", accountId: "max", amount: MAX, expiresInMs: 60_000 },
  { type: "capture", id: "cap-max", partnerId: "p", holdId: "h-max" },
  { type: "debit", id: "d-max", partnerId: "p", accountId: "max", amount: MAX },
  { type: "release", id: "rel-none", partnerId: "p", holdId: "no-such-hold" },
  { type: "check", partnerId: "p", accountId: "od", amount: 1 },
  { type: "debit", id: "d-missing", partnerId: "p", accountId: "missing", amount: 1 },
  { type: "debit", id: "d-od", partnerId: "p", accountId: "od", amount: 300, currency: "EUR" },
  { type: "setOverdraftLimit", id: "sol", partnerId: "p", accountId: "to", overdraftLimit: 0 },
  { type: "freeze", id: "f", partnerId: "p", accountId: "to" },
  { type: "openAccount", id: "open-zero", partnerId: "p", accountId: "zero", currency: "EUR" },
  { type: "close", id: "close-zero", partnerId: "p", accountId: "zero" },
];
const boundary = await batchEvents([{ commands: boundaryCommands, atomic: false }], EVENTS_OPTIONS);

/** A real event with some fields replaced. */
function variant(overrides: Partial<OutputEvent>, base = workload.find((event) => event.accounts.length > 0)!): OutputEvent {
  return { ...base, ...overrides };
}

const change = workload.find((event) => event.accounts.length > 0)!.accounts[0];
/** Varint boundaries of int64: 7-bit steps, 32 bits, 2^53-1, and their negatives. */
const INT64S = [1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35, 2 ** 49, MAX];
const synthetic: OutputEvent[] = [
  variant({ eventId: "", shard: 0, seq: 0, timeMs: 0, accountId: "", accounts: [] }),
  variant({ accounts: INT64S.map((value) => ({ ...change, balance: value, held: value, available: -value, overdraftLimit: value, balanceDelta: -value, heldDelta: -value })) }),
  variant({ accounts: [{ ...change, balance: 0, held: 0, available: 0, overdraftLimit: 0, status: "active", balanceDelta: 0, heldDelta: 0 }] }),
  variant({ accounts: [{ ...change, status: "frozen" }, { ...change, status: "closed" }] }),
  variant({ shard: 2 ** 32 - 1, seq: MAX, timeMs: -1, result: { id: "r", status: "ok", code: "ok", seq: MAX, balance: -MAX, held: 0, available: MAX } }),
  variant({ result: { id: "", status: "rejected", code: "capacity_exceeded", seq: 1, duplicate: false } }),
  variant({ command: { type: "capture", id: "c", partnerId: "p", holdId: "h", amount: MAX }, accountId: "" }),
  variant({ command: { type: "openAccount", id: "o", partnerId: "p", accountId: "a", currency: "EUR", overdraftLimit: 0 } }),
  variant({ command: { type: "hold", id: "h", partnerId: "p", accountId: "a", amount: 1, expiresInMs: 0 } }),
  // Identifiers are ASCII by the core's rules, but the writer takes any text: UTF-8 of 2, 3 and 4 bytes a
  // character, and 128+ bytes (a two-byte length), also where the text is under 128 characters but not its bytes.
  variant({ eventId: "é:1", accountId: "kontø", accounts: [{ ...change, partnerId: "😀", accountId: "€".repeat(50), currency: "x".repeat(200) }] }),
  variant({ command: { type: "credit", id: "ид-1", partnerId: "p", accountId: "a".repeat(127) + "é", amount: 5, currency: "€" } }),
  // Length prefixes the one-pass writer reserved too short: an event over 16,383 bytes (three bytes in a batch), a
  // command message over 127 bytes (two).
  variant({ accounts: Array.from({ length: 1000 }, (_, i) => ({ ...change, balance: i })) }),
  variant({ command: { type: "credit", id: "i".repeat(64), partnerId: "p".repeat(64), accountId: "a".repeat(64), amount: 5 } }),
];

describe("output event writer", () => {
  test("every event of a real workload: the bytes protobuf-es writes, one by one and in batches", () => {
    assert.ok(workload.length > 6000, `a large enough workload (${workload.length})`);
    assert.ok(workload.some((event) => event.accounts.length >= 2), "events with several account changes");
    assert.ok(workload.some((event) => event.accounts.some((change) => change.balanceDelta < 0)), "negative deltas");
    assert.ok(workload.some((event) => event.result.duplicate === true), "duplicates");
    for (const event of workload) assertLikeProtobufEs(event);
    for (const size of [7, 5000]) {
      for (let start = 0; start < workload.length; start += size) assertBatchLikeProtobufEs(workload.slice(start, start + size));
    }
  });

  test("boundaries from real commands: overdraft below zero, 2^53-1 balances and holds, rejections, a check without id", () => {
    assert.equal(boundary.length, boundaryCommands.length);
    const covered = new Set([...workload, ...boundary].map((event) => event.command.type));
    assert.equal(covered.size, 12, `with the workload, every command type (${[...covered].join(", ")})`);
    const byId = new Map(boundary.map((event) => [event.command.id, event]));
    assert.equal(byId.get("t-od")!.accounts.find((change) => change.accountId === "od")!.balance, -1000, "a balance below zero");
    assert.equal(byId.get("c-max")!.result.balance, MAX);
    assert.equal(byId.get("c-overflow")!.result.code, "amount_overflow");
    assert.equal(byId.get("h-max")!.result.available, 0, "an optional 0");
    assert.equal(byId.get("rel-none")!.accountId, "", "no account id");
    assert.equal(byId.get(undefined)!.result.id, "", "a check without id");
    assert.equal(byId.get("d-missing")!.result.balance, undefined, "absent optional fields");
    assert.equal(boundary.filter((event) => event.result.duplicate === true).length, 1);
    assert.equal(byId.get("close-zero")!.accounts[0].status, "closed");
    for (const event of boundary) assertLikeProtobufEs(event);
    assertBatchLikeProtobufEs(boundary);
  });

  test("synthetic edge cases: int64 varint boundaries, zeros, all statuses, non-ASCII and long strings", () => {
    assert.ok(writeOutputEvent(synthetic.at(-2)!).length > 16_383, "an event whose length takes three bytes");
    for (const event of synthetic) assertLikeProtobufEs(event);
    assertBatchLikeProtobufEs(synthetic);
  });

  test("result batches (NATS replies): the bytes protobuf-es writes, for every result of the workload and the edges", () => {
    const results = [...workload, ...boundary, ...synthetic].map((event) => event.result);
    for (const size of [1, 100, 1000]) {
      for (let start = 0; start < results.length; start += size) {
        const chunk = results.slice(start, start + size);
        const message = create(ResultBatchSchema, { results: chunk.map(resultToProto) });
        const bytes = writeResultBatch(chunk);
        assert.deepEqual(bytes, toBinary(ResultBatchSchema, message), `results ${start}..${start + chunk.length}`);
        assert.deepEqual(fromBinary(ResultBatchSchema, bytes), message);
      }
    }
    assert.equal(writeResultBatch([]).length, 0);
  });

  test("results at the size limits, and ids the core never makes (long, not ASCII), are written as protobuf-es writes them", () => {
    const big = { status: "rejected" as const, code: "insufficient_funds" as const, seq: MAX, balance: -MAX, held: -MAX, available: -MAX, duplicate: true };
    const ids = ["x".repeat(64), "é".repeat(64), "\u{1F600}".repeat(32), "é".repeat(65), "x".repeat(65), "a\ud800b", ""];
    for (const id of ids) {
      for (const chunk of [[{ ...big, id }], [{ ...big, id: "y".repeat(64) }, { ...big, id }, { ...big, id: "z" }]]) {
        const message = create(ResultBatchSchema, { results: chunk.map(resultToProto) });
        assert.deepEqual(writeResultBatch(chunk), toBinary(ResultBatchSchema, message), `id ${JSON.stringify(id)} in ${chunk.length}`);
      }
    }
  });

  test("an empty batch is empty, as protobuf-es writes it", () => {
    assert.equal(writeOutputEventBatch([]).length, 0);
    assertBatchLikeProtobufEs([]);
  });

  test("a lone surrogate is written as protobuf-es writes it (U+FFFD)", () => {
    const event = variant({ accountId: "a\ud800b" });
    assert.deepEqual(writeOutputEvent(event), toBinary(OutputEventSchema, outputEventToProto(event)));
    assert.equal(fromBinary(OutputEventSchema, writeOutputEvent(event)).accountId, "a\ufffdb");
  });

  test("numbers that are not safe integers are refused, never written rounded", () => {
    for (const value of [0.5, -1.5, Number.NaN, Infinity, 2 ** 53, -(2 ** 53)]) {
      const event = variant({ accounts: [{ ...change, balanceDelta: value }] });
      assert.throws(() => writeOutputEvent(event), AssertionError, String(value));
      assert.throws(() => writeOutputEventBatch([event]), AssertionError, String(value));
    }
  });
});
