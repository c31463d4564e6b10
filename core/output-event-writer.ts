/**
 * Writes `hotledger.v1.OutputEvent` and `OutputEventBatch` by hand, straight from the core's plain event objects:
 * the encoding the JetStream and Kafka sinks pay for every event. protobuf-es first builds message objects
 * (`create`, a BigInt per int64) and then walks them by reflection; writing the fields directly is ~3.6x faster
 * (measured in core/proto/README.md). The bytes are exactly protobuf-es `toBinary`'s of `outputEventToProto`
 * (core/wire.ts): fields in number order, proto3 defaults (0, "", false) left out, `optional` fields written
 * whenever set (0 included), sub-messages always written, strings as UTF-8, a negative int64 as a ten-byte varint.
 * output-event-writer.test.ts holds it to that.
 *
 * One pass: each sub-message's length prefix is reserved before its fields and written after them (moving the
 * fields when it took another size than reserved, which is rare). An earlier two-pass writer (size everything,
 * then write into a buffer of exactly that size) spent ~15% of the relay's samples in the sizing pass. Every field
 * number here is below 16, so every tag is one byte.
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

/**
 * Most bytes written between two checks for room: the numbers and message headers of an event or an account change
 * outside its strings (each string checks for itself), and the two bytes a length prefix may grow by.
 */
const FIXED_BYTES_MAX = 160;

/**
 * Writes fields into a buffer that grows as needed, in one pass. A sub-message's length is not known before its
 * fields are written, so `begin` reserves the bytes its length prefix most likely takes and `end` writes it,
 * moving the fields over when the prefix took another size (the bytes must be exactly protobuf-es's: no padded
 * varints).
 */
class Writer {
  bytes: Uint8Array;
  offset = 0;

  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }

  /** At least `count` bytes free after the offset. */
  room(count: number): void {
    if (this.offset + count <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(2 * this.bytes.length, this.offset + count));
    grown.set(this.bytes.subarray(0, this.offset));
    this.bytes = grown;
  }

  /** The bytes written: a view of the buffer, checked not to have run past it. */
  written(): Uint8Array {
    assert(this.offset <= this.bytes.length, "the writer stayed inside its buffer");
    return this.bytes.subarray(0, this.offset);
  }

  /** Starts a sub-message (or batch item) `field`, reserving `reserve` bytes for its length; returns where they are. */
  begin(field: number, reserve: number): number {
    this.bytes[this.offset++] = (field << 3) | LENGTH_DELIMITED;
    const at = this.offset;
    this.offset += reserve;
    return at;
  }

  /** Ends the sub-message begun at `at` with `reserve` bytes for its length: writes the length there. */
  end(at: number, reserve: number): void {
    const fieldsAt = at + reserve;
    const length = this.offset - fieldsAt;
    const size = varintSize(length);
    if (size !== reserve) {
      this.bytes.copyWithin(at + size, fieldsAt, this.offset);
      this.offset += size - reserve;
    }
    writeVarint(this.bytes, at, length);
  }

  /** An event's fields (its tag and length, in a batch, are the caller's). */
  event(event: OutputEvent): void {
    this.room(FIXED_BYTES_MAX);
    this.string(1, event.eventId);
    this.number(2, event.shard);
    this.number(3, event.seq);
    this.number(4, event.timeMs);
    const command = this.begin(5, 1);
    this.command(event.command);
    this.end(command, 1);
    const result = this.begin(6, 1);
    this.result(event.result);
    this.end(result, 1);
    for (let i = 0; i < event.accounts.length; i++) {
      this.room(FIXED_BYTES_MAX);
      const change = this.begin(7, 1);
      this.change(event.accounts[i]);
      this.end(change, 1);
    }
    this.string(8, event.accountId);
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

  /**
   * A string field. ASCII (every identifier the core accepts) is copied a char at a time behind a length prefix
   * of `text.length`; at the first other char the field is written again from its start through TextEncoder.
   */
  private string(field: number, text: string): void {
    if (text === "") return;
    // UTF-8 takes at most 3 bytes per UTF-16 unit; a prefix at most 5 bytes.
    this.room(6 + 3 * text.length + FIXED_BYTES_MAX);
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

/** Bytes a writer starts with per event (an event of the usual workload is ~120-200 bytes). */
const EVENT_BYTES_GUESS = 256;

/** One event as protobuf `OutputEvent` bytes. */
export function writeOutputEvent(event: OutputEvent): Uint8Array {
  const writer = new Writer(EVENT_BYTES_GUESS);
  writer.event(event);
  return writer.written();
}

/** Events as one protobuf `OutputEventBatch` (field 1: each event). An event's length takes 2 bytes when 128-16383. */
export function writeOutputEventBatch(events: readonly OutputEvent[]): Uint8Array {
  const writer = new Writer(events.length * EVENT_BYTES_GUESS);
  for (let i = 0; i < events.length; i++) {
    const at = writer.begin(1, 2);
    writer.event(events[i]);
    writer.end(at, 2);
  }
  return writer.written();
}

/**
 * The most bytes a Result's fields take when its id is at most 64 ASCII characters (every id the core accepts):
 * id 1 + 1 + 64, code 1 + 1, seq 1 + 8, balance, held and available 1 + 10 each, duplicate 1 + 1. Below 128, so
 * its length prefix is one byte.
 */
const RESULT_BYTES_MAX = 2 + KEY_BYTES_MAX + 2 + 9 + 3 * 11 + 2;
assert(RESULT_BYTES_MAX < 128, "a result's length fits one varint byte");

/**
 * Results as one protobuf `ResultBatch` (field 1: each result), the NATS transport's reply: the same `Result`
 * fields an event carries.
 */
export function writeResultBatch(results: readonly Result[]): Uint8Array {
  const writer = new Writer(results.length * (2 + RESULT_BYTES_MAX));
  for (let i = 0; i < results.length; i++) {
    writer.room(FIXED_BYTES_MAX);
    const at = writer.begin(1, 1);
    writer.result(results[i]);
    writer.end(at, 1);
  }
  return writer.written();
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

