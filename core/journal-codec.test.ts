// Proves the hand-written journal record is a faithful form of the .proto JournalRecord: the same commands
// encoded both ways decode to the same commands (field by field), a record round-trips through the ring
// unchanged, and damaged records (bad version, bad type, broken group, bad length, trailing bytes) are refused;
// decoded in pieces (as a replay does) a record gives the same slots, never splits an atomic group, and a damaged
// one is refused before any piece is written.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { COMMAND_TYPES, RingBuffer, translateCommand, type Command } from "./index.ts";
import { CommandSchema, JournalRecordSchema, type Command as ProtoCommand } from "./gen/hotledger/v1/ledger_pb.ts";
import { decodeRecordInto, encodeRecord, JournalRecordError, readCommand, readRecordHeader, RecordDecoder, recordBytesMax } from "./journal-codec.ts";

const COMMANDS: Command[] = [
  { type: "openAccount", id: "o1", partnerId: "p", accountId: "a", currency: "EUR" },
  { type: "openAccount", id: "o2", partnerId: "p", accountId: "b:2", currency: "USDC123", overdraftLimit: 500 },
  { type: "credit", id: "c1", partnerId: "p", accountId: "a", amount: 2 ** 53 - 1, currency: "EUR" },
  { type: "debit", id: "d1", partnerId: "p", accountId: "a", amount: 1.5 },
  { type: "transfer", id: "t1", partnerId: "p", fromAccountId: "a", toAccountId: "b:2", amount: 7 },
  { type: "hold", id: "h1", partnerId: "p", accountId: "a", amount: 9, expiresInMs: 60_000 },
  { type: "hold", id: "h2", partnerId: "p", accountId: "a", amount: 9 },
  { type: "capture", id: "k1", partnerId: "p", holdId: "h1", amount: 3 },
  { type: "capture", id: "k2", partnerId: "p", holdId: "h2" },
  { type: "release", id: "r1", partnerId: "p", holdId: "h1" },
  { type: "check", partnerId: "p", accountId: "a", amount: 1 },
  { type: "check", id: "x1", partnerId: "p", accountId: "a", amount: 1 },
  { type: "setOverdraftLimit", id: "s1", partnerId: "p", accountId: "a", overdraftLimit: 0 },
  { type: "freeze", id: "f1", partnerId: "p", accountId: "a" },
  { type: "unfreeze", id: "u1", partnerId: "p", accountId: "a" },
  { type: "close", id: "z1", partnerId: "p", accountId: "b:2" },
  { type: "credit", id: "i".repeat(64), partnerId: "P".repeat(64), accountId: "A".repeat(64), amount: 1 },
];

/** The .proto form of a plain command. */
function toProto(command: Command): ProtoCommand {
  const c = command as unknown as Record<string, unknown>;
  const int = (value: unknown) => (value === undefined ? undefined : BigInt(Math.trunc(value as number)));
  return create(CommandSchema, {
    type: COMMAND_TYPES.indexOf(command.type),
    id: (c.id as string) ?? "",
    partnerId: command.partnerId,
    accountId: ((c.accountId ?? c.fromAccountId) as string) ?? "",
    toAccountId: (c.toAccountId as string) ?? "",
    holdId: (c.holdId as string) ?? "",
    amount: int(c.amount),
    currency: (c.currency as string) ?? "",
    overdraftLimit: int(c.overdraftLimit),
    expiresInMs: int(c.expiresInMs),
  });
}

function encode(commands: Command[], groups: number[] = commands.map(() => 1)) {
  let size = 64;
  while (size < commands.length + 1) size *= 2;
  const ring = new RingBuffer(size);
  let k = 0;
  for (const size of groups) {
    for (let i = 0; i < size; i++, k++) {
      translateCommand(ring, (k + 1) & ring.mask, commands[k], k);
      ring.groupSize[(k + 1) & ring.mask] = i === 0 ? size : 0;
    }
  }
  const out = new Uint8Array(recordBytesMax(commands.length));
  const length = encodeRecord(ring, 1, commands.length, 1_700_000_000_000, out);
  return out.slice(0, length);
}

describe("journal record codec", () => {
  test("decodes to the same commands as the protobuf JournalRecord of the same batch", () => {
    const integral = COMMANDS.filter((command) => !("amount" in command) || Number.isInteger(command.amount));
    const record = encode(integral);
    const header = readRecordHeader(record);
    assert.deepEqual(header, { firstSequence: 1, timeMs: 1_700_000_000_000, commandCount: integral.length });
    const ring = new RingBuffer(64);
    decodeRecordInto(record, header, ring, 1);
    const decoded = integral.map((_, k) => readCommand(ring, (k + 1) & ring.mask));
    const proto = fromBinary(
      JournalRecordSchema,
      toBinary(JournalRecordSchema, create(JournalRecordSchema, {
        firstSequence: 1n,
        timeMs: 1_700_000_000_000n,
        groupSizes: integral.map(() => 1),
        commands: integral.map(toProto),
      })),
    );
    assert.deepEqual(decoded.map(toProto), proto.commands);
    assert.deepEqual(decoded, integral);
  });

  test("round-trips every command as written, non-integer amounts included (the ledger rejects those later)", () => {
    const record = encode(COMMANDS);
    const ring = new RingBuffer(64);
    decodeRecordInto(record, readRecordHeader(record), ring, 5);
    assert.deepEqual(COMMANDS.map((_, k) => readCommand(ring, (5 + k) & ring.mask)), COMMANDS);
    assert.deepEqual(encode(COMMANDS), record, "encoding is deterministic");
  });

  test("skip: the first commands are parsed but not written (a record that straddles a snapshot)", () => {
    const record = encode(COMMANDS);
    const ring = new RingBuffer(64);
    decodeRecordInto(record, readRecordHeader(record), ring, 10, 3);
    assert.deepEqual(readCommand(ring, 10), COMMANDS[3]);
  });

  test("in pieces: the same slots as whole, groups never split, skip honoured", () => {
    const groups = [1, 3, 1, 1, 4, 2, 1, 1, 2, 1];
    const record = encode(COMMANDS, groups);
    const header = readRecordHeader(record);
    const starts = new Set(groups.map((_, g) => groups.slice(0, g).reduce((a, b) => a + b, 0)));
    for (const skip of [0, 1, 4]) {
      for (const max of [1, 2, 3, 5, 100]) {
        const ring = new RingBuffer(64);
        const decoder = new RecordDecoder();
        decoder.start(record, header, skip);
        let written = 0;
        for (let piece = 0; piece < COMMANDS.length && written < COMMANDS.length - skip; piece++) {
          const count = decoder.decode(ring, 1 + written, max);
          assert.ok(count >= 1, `a piece writes something (skip ${skip}, max ${max})`);
          written += count;
          assert.ok(written === COMMANDS.length - skip || starts.has(skip + written), `piece ends at a group boundary (skip ${skip}, max ${max})`);
        }
        assert.equal(written, COMMANDS.length - skip);
        assert.deepEqual(COMMANDS.slice(skip).map((_, k) => readCommand(ring, (1 + k) & ring.mask)), COMMANDS.slice(skip));
        assert.deepEqual(COMMANDS.slice(skip).map((_, k) => ring.groupSize[(1 + k) & ring.mask]), COMMANDS.slice(skip).map((_, k) => (starts.has(skip + k) ? groups[[...starts].indexOf(skip + k)] : 0)));
      }
    }
  });

  test("in pieces: a record damaged anywhere is refused by start, before any slot is written", () => {
    const record = encode(COMMANDS);
    const damaged = new Uint8Array([...record, 0]);
    const ring = new RingBuffer(64);
    const decoder = new RecordDecoder();
    assert.throws(() => decoder.start(damaged, readRecordHeader(damaged), 0), JournalRecordError);
    assert.equal(ring.type[1], 0, "nothing written");
  });

  test("refuses damaged records", () => {
    const record = encode(COMMANDS.slice(0, 4), [1, 3]);
    const header = readRecordHeader(record);
    const ring = new RingBuffer(64);
    const damaged = (offset: number, value: number) => {
      const copy = record.slice();
      copy[offset] = value;
      return copy;
    };
    assert.throws(() => readRecordHeader(damaged(0, 9)), JournalRecordError);
    assert.throws(() => decodeRecordInto(damaged(24, 99), header, ring, 1), JournalRecordError, "unknown type");
    assert.throws(() => decodeRecordInto(damaged(26, 0), header, ring, 1), JournalRecordError, "a group's first command with size 0");
    assert.throws(() => decodeRecordInto(damaged(28, 200), header, ring, 1), JournalRecordError, "an id longer than 64");
    assert.throws(() => decodeRecordInto(new Uint8Array([...record, 0]), header, ring, 1), JournalRecordError, "trailing byte");
    assert.throws(() => decodeRecordInto(record.subarray(0, record.length - 1), header, ring, 1), JournalRecordError, "truncated");
    // Whole and checksummed, but not what an engine writes: refused before the ledger sees it.
    const refused = (commands: Command[], groups: number[], message: RegExp) => {
      const bad = encode(commands, groups);
      assert.throws(() => decodeRecordInto(bad, readRecordHeader(bad), new RingBuffer(2048), 1), message);
    };
    const credit = (id: string, partnerId: string): Command => ({ type: "credit", id, partnerId, accountId: "a", amount: 1 });
    refused([credit("c1", "p"), credit("c2", "q")], [2], /command 1 is of another partner than its atomic group/);
    refused(Array.from({ length: 1001 }, (_, k) => credit(`c${k}`, "p")), [1001], /a group of 1001 commands, over 1000/);
    assert.throws(() => decodeRecordInto(damaged(28, 0), header, ring, 1), /command 0 has no id/);
  });
});
