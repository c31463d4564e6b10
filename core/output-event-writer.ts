/**
 * Writes `hotledger.v1.OutputEvent` and `OutputEventBatch` by hand, straight from the core's plain event objects:
 * the encoding the JetStream and Kafka sinks pay for every event. protobuf-es first builds message objects
 * (`create`, a BigInt per int64) and then walks them by reflection; writing the fields directly is ~3.6x faster
 * (measured in core/proto/README.md). The bytes are exactly protobuf-es `toBinary`'s of `outputEventToProto`
 * (core/wire.ts): fields in number order, proto3 defaults (0, "", false) left out, `optional` fields written
 * whenever set (0 included), sub-messages always written, strings as UTF-8, a negative int64 as a ten-byte varint.
 * output-event-writer.test.ts holds it to that.
 *
 * Two passes: the first sizes every message, keeping the sizes in one typed array in the order the second pass
 * writes their length prefixes; the second writes into one buffer of exactly that size. Every field number here
 * is below 16, so every tag is one byte.
 */
import { assert } from "./assert.ts";
import { KEY_BYTES_MAX } from "./limits.ts";
import { Code, Status, Type, type CommandType } from "./codes.ts";
import type { AccountChange, OutputEvent } from "./outputs.ts";
import type { Result } from "./types.ts";
import type { RingBuffer } from "./ring-buffer.ts";
import { ScannedText, TEXT_FIELDS, type ScannedBatch } from "./command-batch-reader.ts";
import { varintSize, writeVarint } from "./varint.ts";

const VARINT = 0;
const LENGTH_DELIMITED = 2;
/** Sizes kept per event besides one per account change: the event's, its command's and its result's. */
const SIZES_PER_EVENT = 3;

const utf8 = new TextEncoder();

/** Any command's fields, as `commandToProto` flattens them into the one `Command` message. */
interface FlatCommand {
  type: CommandType;
  id?: string;
  partnerId: string;
  accountId?: string;
  fromAccountId?: string;
  toAccountId?: string;
  holdId?: string;
  amount?: number;
  currency?: string;
  overdraftLimit?: number;
  expiresInMs?: number;
}

/** `account_id` of the Command message: a transfer's source, else the command's account ("" for none). */
function commandAccountId(command: FlatCommand): string {
  return (command.type === "transfer" ? command.fromAccountId : command.accountId) ?? "";
}

/** UTF-8 bytes of `text`: nearly always its length, since identifiers and currencies are ASCII by the core's rules. */
function utf8Bytes(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return utf8.encode(text).length;
  }
  return text.length;
}

// Sizes of one field each, tag included, by the rules the Writer writes them by.
function stringSize(text: string): number {
  if (text === "") return 0;
  const bytes = utf8Bytes(text);
  return 1 + varintSize(bytes) + bytes;
}
const numberSize = (value: number) => (value === 0 ? 0 : 1 + varintSize(value));
const optionalSize = (value: number | undefined) => (value === undefined ? 0 : 1 + varintSize(value));
const messageSize = (bytes: number) => 1 + varintSize(bytes) + bytes;

function commandSize(command: FlatCommand): number {
  return numberSize(Type[command.type]) + stringSize(command.id ?? "") + stringSize(command.partnerId)
    + stringSize(commandAccountId(command)) + stringSize(command.toAccountId ?? "") + stringSize(command.holdId ?? "")
    + optionalSize(command.amount) + stringSize(command.currency ?? "") + optionalSize(command.overdraftLimit)
    + optionalSize(command.expiresInMs);
}

function resultSize(result: Result): number {
  return stringSize(result.id) + numberSize(Code[result.code]) + numberSize(result.seq) + optionalSize(result.balance)
    + optionalSize(result.held) + optionalSize(result.available) + numberSize(result.duplicate === true ? 1 : 0);
}

function changeSize(change: AccountChange): number {
  return stringSize(change.partnerId) + stringSize(change.accountId) + stringSize(change.currency) + numberSize(change.balance)
    + numberSize(change.held) + numberSize(change.available) + numberSize(change.overdraftLimit) + numberSize(Status[change.status])
    + numberSize(change.balanceDelta) + numberSize(change.heldDelta);
}

/**
 * Sizes `event` into `sizes` from `at`: the event's size, its command's, its result's, then each account change's,
 * the order `Writer.event` reads them in. Returns the index after them.
 */
function sizeEvent(event: OutputEvent, sizes: Uint32Array, at: number): number {
  const commandBytes = commandSize(event.command);
  const resultBytes = resultSize(event.result);
  let bytes = stringSize(event.eventId) + numberSize(event.shard) + numberSize(event.seq) + numberSize(event.timeMs)
    + messageSize(commandBytes) + messageSize(resultBytes) + stringSize(event.accountId);
  for (let i = 0; i < event.accounts.length; i++) {
    const changeBytes = changeSize(event.accounts[i]);
    sizes[at + SIZES_PER_EVENT + i] = changeBytes;
    bytes += messageSize(changeBytes);
  }
  sizes[at] = bytes;
  sizes[at + 1] = commandBytes;
  sizes[at + 2] = resultBytes;
  return at + SIZES_PER_EVENT + event.accounts.length;
}

/** Writes fields into one buffer sized by the first pass. */
class Writer {
  offset = 0;

  constructor(readonly bytes: Uint8Array) {}

  /** An event (its tag and length are the caller's) whose sizes start at `sizes[at]`; returns the index after them. */
  event(event: OutputEvent, sizes: Uint32Array, at: number): number {
    this.string(1, event.eventId);
    this.number(2, event.shard);
    this.number(3, event.seq);
    this.number(4, event.timeMs);
    this.messageHeader(5, sizes[at + 1]);
    this.command(event.command);
    this.messageHeader(6, sizes[at + 2]);
    this.result(event.result);
    for (let i = 0; i < event.accounts.length; i++) {
      this.messageHeader(7, sizes[at + SIZES_PER_EVENT + i]);
      this.change(event.accounts[i]);
    }
    this.string(8, event.accountId);
    return at + SIZES_PER_EVENT + event.accounts.length;
  }

  messageHeader(field: number, bytes: number): void {
    this.bytes[this.offset++] = (field << 3) | LENGTH_DELIMITED;
    this.offset = writeVarint(this.bytes, this.offset, bytes);
  }

  private command(command: FlatCommand): void {
    this.number(1, Type[command.type]);
    this.string(2, command.id ?? "");
    this.string(3, command.partnerId);
    this.string(4, commandAccountId(command));
    this.string(5, command.toAccountId ?? "");
    this.string(6, command.holdId ?? "");
    this.optional(7, command.amount);
    this.string(8, command.currency ?? "");
    this.optional(9, command.overdraftLimit);
    this.optional(10, command.expiresInMs);
  }

  result(result: Result): void {
    this.string(1, result.id);
    this.number(2, Code[result.code]);
    this.number(3, result.seq);
    this.optional(4, result.balance);
    this.optional(5, result.held);
    this.optional(6, result.available);
    this.number(7, result.duplicate === true ? 1 : 0);
  }

  private change(change: AccountChange): void {
    this.string(1, change.partnerId);
    this.string(2, change.accountId);
    this.string(3, change.currency);
    this.number(4, change.balance);
    this.number(5, change.held);
    this.number(6, change.available);
    this.number(7, change.overdraftLimit);
    this.number(8, Status[change.status]);
    this.number(9, change.balanceDelta);
    this.number(10, change.heldDelta);
  }

  /** A string field; ASCII is copied a char at a time while checking, anything else goes through TextEncoder. */
  private string(field: number, text: string): void {
    if (text === "") return;
    const bytes = this.bytes;
    bytes[this.offset++] = (field << 3) | LENGTH_DELIMITED;
    const start = this.offset;
    let offset = writeVarint(bytes, start, text.length);
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) {
        const encoded = utf8.encode(text);
        offset = writeVarint(bytes, start, encoded.length);
        bytes.set(encoded, offset);
        this.offset = offset + encoded.length;
        return;
      }
      bytes[offset++] = code;
    }
    this.offset = offset;
  }

  /** An int64, uint64, uint32, enum or bool field (proto3: 0 is not written). */
  private number(field: number, value: number): void {
    if (value === 0) return;
    this.bytes[this.offset++] = (field << 3) | VARINT;
    this.offset = writeVarint(this.bytes, this.offset, value);
  }

  /** An `optional int64` field: written whenever set, 0 included. */
  private optional(field: number, value: number | undefined): void {
    if (value === undefined) return;
    this.bytes[this.offset++] = (field << 3) | VARINT;
    this.offset = writeVarint(this.bytes, this.offset, value);
  }
}

/** One event as protobuf `OutputEvent` bytes. */
export function writeOutputEvent(event: OutputEvent): Uint8Array {
  const sizes = new Uint32Array(SIZES_PER_EVENT + event.accounts.length);
  sizeEvent(event, sizes, 0);
  const writer = new Writer(new Uint8Array(sizes[0]));
  writer.event(event, sizes, 0);
  assert(writer.offset === writer.bytes.length, "the writing pass wrote what the sizing pass sized");
  return writer.bytes;
}

/**
 * The most bytes a Result's fields take when its id is at most 64 ASCII characters (every id the core accepts):
 * id 1 + 1 + 64, code 1 + 1, seq 1 + 8, balance, held and available 1 + 10 each, duplicate 1 + 1. Below 128, so
 * its length prefix is one byte, known to be one byte before the fields are written.
 */
const RESULT_BYTES_MAX = 2 + KEY_BYTES_MAX + 2 + 9 + 3 * 11 + 2;
assert(RESULT_BYTES_MAX < 128, "a result's length fits one varint byte");

/**
 * Results as one protobuf `ResultBatch` (field 1: each result), the NATS transport's reply: the same `Result`
 * fields an event carries. One pass: each result's one-byte length is written after its fields. A result longer
 * than that (a long non-ASCII id: never one the core made) sends the whole batch through the sizing pass instead.
 */
export function writeResultBatch(results: readonly Result[]): Uint8Array {
  // The slack: one id of up to 64 characters that are not ASCII (3 UTF-8 bytes each at most) fits before the check.
  const writer = new Writer(new Uint8Array(results.length * (2 + RESULT_BYTES_MAX) + 2 * KEY_BYTES_MAX));
  const bytes = writer.bytes;
  for (let i = 0; i < results.length; i++) {
    if (results[i].id.length > KEY_BYTES_MAX) return writeResultBatchSized(results);
    bytes[writer.offset] = (1 << 3) | LENGTH_DELIMITED;
    const lengthAt = writer.offset + 1;
    writer.offset += 2;
    writer.result(results[i]);
    const length = writer.offset - lengthAt - 1;
    if (length > RESULT_BYTES_MAX) return writeResultBatchSized(results);
    bytes[lengthAt] = length;
  }
  return bytes.subarray(0, writer.offset);
}

/**
 * The ResultBatch of a scanned batch's commands, published from sequence `first` and applied: written straight
 * from the ring's result columns and the request's id bytes, the bytes `writeResultBatch` writes for the same
 * results (a test holds them equal). Every id the translator accepted is at most 64 ASCII characters.
 */
export function writeScannedResults(ring: RingBuffer, first: number, scan: ScannedBatch): Uint8Array {
  const out = new Uint8Array(scan.count * (2 + RESULT_BYTES_MAX));
  const source = scan.bytes;
  const ranges = scan.ranges;
  // One local offset and no method calls: this runs for every command of a fast-path request.
  let o = 0;
  for (let k = 0; k < scan.count; k++) {
    const index = (first + k) & ring.mask;
    out[o] = (1 << 3) | LENGTH_DELIMITED;
    const lengthAt = o + 1;
    o += 2;
    const idStart = ranges[(k * TEXT_FIELDS + ScannedText.id) * 2];
    const idEnd = ranges[(k * TEXT_FIELDS + ScannedText.id) * 2 + 1];
    if (idEnd > idStart) {
      out[o++] = (1 << 3) | LENGTH_DELIMITED;
      out[o++] = idEnd - idStart;
      for (let i = idStart; i < idEnd; i++) out[o++] = source[i];
    }
    const code = ring.code[index];
    if (code !== 0) {
      out[o++] = (2 << 3) | VARINT;
      o = writeVarint(out, o, code);
    }
    const seq = ring.resultSeq[index];
    if (seq !== 0) {
      out[o++] = (3 << 3) | VARINT;
      o = writeVarint(out, o, seq);
    }
    if (!Number.isNaN(ring.balance[index])) {
      out[o++] = (4 << 3) | VARINT;
      o = writeVarint(out, o, ring.balance[index]);
      out[o++] = (5 << 3) | VARINT;
      o = writeVarint(out, o, ring.held[index]);
      out[o++] = (6 << 3) | VARINT;
      o = writeVarint(out, o, ring.available[index]);
    }
    if (ring.duplicate[index] !== 0) {
      out[o++] = (7 << 3) | VARINT;
      out[o++] = 1;
    }
    const length = o - lengthAt - 1;
    assert(length <= RESULT_BYTES_MAX && idEnd - idStart <= KEY_BYTES_MAX, "a scanned command's result fits one length byte");
    out[lengthAt] = length;
  }
  return out.subarray(0, o);
}

/** `writeResultBatch` for any results: a sizing pass, then the writing pass. */
function writeResultBatchSized(results: readonly Result[]): Uint8Array {
  const sizes = new Uint32Array(results.length);
  let total = 0;
  for (let i = 0; i < results.length; i++) {
    sizes[i] = resultSize(results[i]);
    total += messageSize(sizes[i]);
  }
  const writer = new Writer(new Uint8Array(total));
  for (let i = 0; i < results.length; i++) {
    writer.messageHeader(1, sizes[i]);
    writer.result(results[i]);
  }
  assert(writer.offset === total, "the writing pass wrote what the sizing pass sized");
  return writer.bytes;
}

/** Events as one protobuf `OutputEventBatch` (field 1: each event). */
export function writeOutputEventBatch(events: readonly OutputEvent[]): Uint8Array {
  let sizeCount = 0;
  for (let i = 0; i < events.length; i++) sizeCount += SIZES_PER_EVENT + events[i].accounts.length;
  const sizes = new Uint32Array(sizeCount);
  let total = 0;
  for (let i = 0, at = 0; i < events.length; i++) {
    const next = sizeEvent(events[i], sizes, at);
    total += messageSize(sizes[at]);
    at = next;
  }
  const writer = new Writer(new Uint8Array(total));
  for (let i = 0, at = 0; i < events.length; i++) {
    writer.messageHeader(1, sizes[at]);
    at = writer.event(events[i], sizes, at);
  }
  assert(writer.offset === total, "the writing pass wrote what the sizing pass sized");
  return writer.bytes;
}
