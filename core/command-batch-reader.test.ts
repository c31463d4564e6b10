// Proves the hand-written CommandBatch reader reads what protobuf-es reads: on generated batches (every field,
// absent and present, unknown and negative types, ASCII and non-ASCII strings, int64s across the varint sizes and
// past 2^53 or below 0), on messages that merge two commands (the last scalar wins), with unknown fields of every
// wire type, and on every truncation of a batch (both refuse, or both read the same). Int64s outside 0..2^53-1 are
// NaN, for the caller to refuse.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CommandBatchSchema, CommandSchema, type Command as ProtoCommand } from "./gen/hotledger/v1/ledger_pb.ts";
import { readCommandBatch, scanCommandBatch, WireFormatError, type WireCommand } from "./command-batch-reader.ts";
import { COMMAND_TYPES } from "./codes.ts";
import { InvalidCommandError } from "./errors.ts";
import { translateCommand, translateScanned } from "./event-translator.ts";
import { FIELD_COUNT, FIELD_OFFSET, RingBuffer } from "./ring-buffer.ts";
import type { Command } from "./types.ts";

const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** What the reader must give for protobuf-es's reading of a command. */
function expected(command: ProtoCommand): WireCommand {
  const number = (value: bigint | undefined) => (value === undefined ? undefined : value >= 0n && value <= MAX ? Number(value) : Number.NaN);
  return {
    type: command.type,
    id: command.id,
    partnerId: command.partnerId,
    accountId: command.accountId,
    toAccountId: command.toAccountId,
    holdId: command.holdId,
    currency: command.currency,
    amount: number(command.amount),
    overdraftLimit: number(command.overdraftLimit),
    expiresInMs: number(command.expiresInMs),
  };
}

/** The reader and protobuf-es agree on `bytes`: both refuse them, or both read the same batch. */
function assertLikeProtobufEs(bytes: Uint8Array): void {
  let reference;
  try {
    reference = fromBinary(CommandBatchSchema, bytes);
  } catch {
    assert.throws(() => readCommandBatch(bytes, 1 << 20), WireFormatError, "protobuf-es refuses these bytes: so does the reader");
    return;
  }
  for (const ascii of [undefined, byCharCodes]) {
    const batch = readCommandBatch(bytes, 1 << 20, ascii);
    assert.equal(batch.atomic, reference.atomic);
    assert.deepEqual(batch.commands, reference.commands.map(expected));
  }
}

/** An AsciiDecoder of its own (a transport may pass one): the reader must give the same strings with it. */
const byCharCodes = (bytes: Uint8Array, start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end));

const int64 = fc.oneof(
  fc.constantFrom(0n, 1n, 127n, 128n, 2n ** 31n - 1n, 2n ** 32n, MAX, MAX + 1n, 2n ** 63n - 1n, -1n, -(2n ** 63n)),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);
const text = fc.oneof(fc.constant(""), fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/), fc.string({ maxLength: 80, unit: "grapheme" }));
const command = fc.record({
  type: fc.oneof(fc.integer({ min: 0, max: 13 }), fc.constantFrom(99, -1, 2 ** 31 - 1)),
  id: text,
  // Partners repeat across a batch's commands, and differ at the same length: the reader reuses the last one's string.
  partnerId: fc.oneof(text, fc.constantFrom("", "p1", "p2", "partner-1", "partner-2")),
  accountId: text,
  toAccountId: text,
  holdId: text,
  currency: text,
  amount: fc.option(int64, { nil: undefined }),
  overdraftLimit: fc.option(int64, { nil: undefined }),
  expiresInMs: fc.option(int64, { nil: undefined }),
});
const batch = fc.record({ commands: fc.array(command, { maxLength: 12 }), atomic: fc.boolean() });

function encode(value: { commands: object[]; atomic: boolean }): Uint8Array {
  return toBinary(CommandBatchSchema, create(CommandBatchSchema, value as never));
}

/** A length-delimited field `field` (< 16: a one-byte tag) holding `payload`, by hand. */
function delimited(field: number, payload: Uint8Array): Uint8Array {
  const length: number[] = [];
  let size = payload.length;
  while (size > 0x7f) {
    length.push((size & 0x7f) | 0x80);
    size >>>= 7;
  }
  length.push(size);
  return new Uint8Array([(field << 3) | 2, ...length, ...payload]);
}

describe("CommandBatch reader", () => {
  test("generated batches: the same commands as protobuf-es", () => {
    fc.assert(fc.property(batch, (value) => assertLikeProtobufEs(encode(value))), { numRuns: 500 });
  });

  test("a command written twice in one message merges, the last value winning, as protobuf-es reads it", () => {
    fc.assert(
      fc.property(command, command, (first, second) => {
        const payload = new Uint8Array([...toBinary(CommandSchema, create(CommandSchema, first as never)), ...toBinary(CommandSchema, create(CommandSchema, second as never))]);
        assertLikeProtobufEs(delimited(1, payload));
      }),
      { numRuns: 200 },
    );
  });

  test("unknown fields of every wire type are skipped, in the batch and in a command", () => {
    const one = toBinary(CommandSchema, create(CommandSchema, { type: 2, id: "c1", partnerId: "p", accountId: "a", amount: 5n }));
    const unknown = new Uint8Array([
      (11 << 3) | 0, 0x96, 0x01, // varint 150
      (12 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, // fixed64
      (13 << 3) | 5, 1, 2, 3, 4, // fixed32
      ...delimited(14, new Uint8Array([9, 9, 9])),
      0x80 | ((20 << 3) & 0x7f) | 0, 20 >>> 4, 0x07, // a two-byte tag: field 20, varint 7
    ]);
    const bytes = new Uint8Array([...unknown, ...delimited(1, new Uint8Array([...unknown, ...one, ...unknown])), ...unknown, (2 << 3) | 0, 1]);
    assertLikeProtobufEs(bytes);
    const read = readCommandBatch(bytes, 10);
    assert.equal(read.commands.length, 1);
    assert.equal(read.commands[0].amount, 5);
    assert.equal(read.atomic, true);
  });

  test("every truncation of a batch: refused by both, or read the same by both", () => {
    const bytes = encode({
      commands: [
        { type: 2, id: "ord-1", partnerId: "shop", accountId: "wallet:alice", amount: 12_345n, currency: "EUR" },
        { type: 4, id: "ord-2", partnerId: "shop", accountId: "wallet:alice", toAccountId: "wallet:bob", amount: MAX },
        { type: 5, id: "h-1", partnerId: "shop", accountId: "wallet:bob", amount: 1n, expiresInMs: 60_000n },
      ],
      atomic: true,
    });
    for (let end = 0; end < bytes.length; end++) assertLikeProtobufEs(bytes.subarray(0, end));
  });

  test("malformed bytes are refused with WireFormatError", () => {
    const cases: [string, number[]][] = [
      ["a varint of eleven bytes", [(1 << 3) | 0, ...new Array(10).fill(0xff), 0x01]],
      ["a group (wire type 3)", [(1 << 3) | 3]],
      ["field number 0", [0x00, 0x01]],
      ["commands with a varint wire type", [(1 << 3) | 0, 0x01]],
      ["a length past the end", [(1 << 3) | 2, 0x05, 0x01]],
      ["a Command string with a varint wire type", [(1 << 3) | 2, 0x02, (2 << 3) | 0, 0x01]],
      ["an amount with a length-delimited wire type", [(1 << 3) | 2, 0x03, (7 << 3) | 2, 0x01, 0x00]],
    ];
    for (const [name, bytes] of cases) {
      assert.throws(() => readCommandBatch(new Uint8Array(bytes), 10), WireFormatError, name);
    }
  });

  test("more commands than the caller allows are refused while reading", () => {
    const bytes = encode({ commands: Array.from({ length: 5 }, (_, i) => ({ type: 2, id: `c${i}` })), atomic: false });
    assert.equal(readCommandBatch(bytes, 5).commands.length, 5);
    assert.throws(() => readCommandBatch(bytes, 4), /more than 4 commands/);
  });
});

// The fast path's translator (bytes of a scanned batch straight into a slot) against the object path's
// (translateCommand of the same command as a plain object): both refuse, or both write the same slot.
describe("translateScanned", () => {
  const identifier = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/), fc.constantFrom("", "x y", "é", "a".repeat(65)));
  const currency = fc.oneof(fc.constantFrom("EUR", "USD", "ABC123456789"), fc.constantFrom("", "eu", "EURO!", "ABCDEFGHIJKLM"));
  const number = fc.oneof(fc.constant(undefined), fc.constantFrom(0n, 1n, 5000n, MAX), fc.bigInt({ min: 0n, max: MAX }));
  const fastCommand = fc.record({
    type: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constantFrom(0, 13, -1)),
    id: identifier,
    partnerId: identifier,
    accountId: identifier,
    toAccountId: fc.oneof(fc.constant(""), identifier),
    holdId: fc.oneof(fc.constant(""), identifier),
    currency: fc.oneof(fc.constant(""), currency),
    amount: number,
    overdraftLimit: number,
    expiresInMs: number,
  });

  /** A WireCommand as the object path has it: "" and undefined absent, a transfer's account as its source. */
  function asCommand(wire: WireCommand): Command {
    const type = COMMAND_TYPES[wire.type] ?? wire.type;
    const row: Record<string, unknown> = { type };
    for (const name of ["id", "partnerId", "toAccountId", "holdId", "currency"] as const) if (wire[name] !== "") row[name] = wire[name];
    if (wire.accountId !== "") row[type === "transfer" ? "fromAccountId" : "accountId"] = wire.accountId;
    for (const name of ["amount", "overdraftLimit", "expiresInMs"] as const) if (wire[name] !== undefined) row[name] = wire[name];
    return row as unknown as Command;
  }

  /** Slot 0 of `ring` as plain values (text: each field's words up to its length). */
  function slot(ring: RingBuffer) {
    const lengths = Array.from(ring.fieldLength.subarray(0, FIELD_COUNT));
    const text = lengths.map((length, field) => Array.from(ring.textWords.subarray(FIELD_OFFSET[field] / 4, FIELD_OFFSET[field] / 4 + Math.ceil(length / 4))));
    return { type: ring.type[0], flags: ring.flags[0], lengths, text, amount: ring.amount[0], expiresInMs: ring.expiresInMs[0] };
  }

  /** What translating does with one command: the slot written, or the error class thrown. */
  function outcome(write: (ring: RingBuffer) => void) {
    const ring = new RingBuffer(2);
    try {
      write(ring);
    } catch (error) {
      assert.ok(error instanceof InvalidCommandError, `only InvalidCommandError is thrown, got ${error}`);
      return "refused";
    }
    return slot(ring);
  }

  test("generated commands: the same slot as translateCommand, or both refuse", () => {
    let written = 0;
    fc.assert(
      fc.property(fc.array(fastCommand, { minLength: 1, maxLength: 6 }), (commands) => {
        const bytes = encode({ commands, atomic: false });
        const scan = scanCommandBatch(bytes, 100);
        const wire = readCommandBatch(bytes, 100).commands;
        for (let k = 0; k < scan.count; k++) {
          const scanned = outcome((ring) => translateScanned(ring, 0, scan, k, k));
          assert.deepEqual(scanned, outcome((ring) => translateCommand(ring, 0, asCommand(wire[k]), k)), JSON.stringify(wire[k]));
          if (scanned !== "refused") written++;
        }
      }),
      { numRuns: 1000 },
    );
    assert.ok(written > 100, `enough commands were valid to compare slots (${written})`);
  });
});
