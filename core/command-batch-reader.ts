/**
 * Reads `hotledger.v1.CommandBatch` (core/proto/hotledger/v1/ledger.proto) by hand, for the NATS transport, which
 * decodes one for every request. protobuf-es builds a message object per command and a BigInt per int64 on the way
 * (fromBinary was ~20% of the gateway's samples under batch100); this reads the fields straight into plain objects
 * with numbers. command-batch-reader.test.ts holds it to protobuf-es on generated batches.
 *
 * Protobuf rules kept: fields in any order, the last of a repeated scalar wins, unknown fields are skipped by wire
 * type, a known field with the wrong wire type or bytes that end inside a field are errors (WireFormatError).
 * Groups (wire types 3 and 4, deprecated) are refused. Strings are UTF-8 (invalid sequences become U+FFFD, which no
 * identifier accepts). An int64 that is not in 0..2^53-1 is read as NaN: the caller refuses it with the field's
 * name (negative values included: no amount, limit or duration may be negative).
 */
import { asciiString } from "./key-table.ts";

/** A command as it came on the wire: strings "" and numbers undefined where the field was absent. */
export interface WireCommand {
  /** The CommandType number as sent (possibly unknown). */
  type: number;
  id: string;
  partnerId: string;
  accountId: string;
  toAccountId: string;
  holdId: string;
  currency: string;
  /** undefined: absent; NaN: not in 0..2^53-1. */
  amount: number | undefined;
  overdraftLimit: number | undefined;
  expiresInMs: number | undefined;
}

export interface WireCommandBatch {
  commands: WireCommand[];
  atomic: boolean;
}

/** Bytes that are not a CommandBatch. */
export class WireFormatError extends Error {
  override name = "WireFormatError";
}

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
const TWO_POW_32 = 2 ** 32;
/** 2^53 split as high * 2^32: a value is safe when its high part is below this. */
const SAFE_HIGH_LIMIT = 2 ** 21;

const utf8 = new TextDecoder("utf-8");

/**
 * Makes a string of the ASCII bytes `[start, end)` of `bytes`. The default is core's (a Web TextDecoder over a
 * subarray, ~150 ns for an id on Bun); a transport may pass a faster one of its runtime, such as Node's and Bun's
 * `Buffer.prototype.latin1Slice` (~55 ns: no subarray, no decoder call).
 */
export type AsciiDecoder = (bytes: Uint8Array, start: number, end: number) => string;

/** A cursor over the bytes; every read checks the end. */
class Reader {
  offset: number;
  /** The high 32 bits of the last varint read by `varint64`. */
  high = 0;

  constructor(
    readonly bytes: Uint8Array,
    start: number,
    /** Where the reader stops (moved per command by a batch's command reader). */
    public end: number,
  ) {
    this.offset = start;
  }

  /** A varint's low 32 bits (unsigned); the high bits go to `high`. At most ten bytes. */
  varint64(): number {
    const bytes = this.bytes;
    // Most varints here (tags, lengths, small values) are one byte.
    if (this.offset < this.end && bytes[this.offset] < 0x80) {
      this.high = 0;
      return bytes[this.offset++];
    }
    let low = 0;
    let high = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.offset >= this.end) throw new WireFormatError(`the bytes end inside a varint at ${this.offset}`);
      const byte = bytes[this.offset++];
      if (shift < 28) low |= (byte & 0x7f) << shift;
      else if (shift === 28) {
        low |= (byte & 0x0f) << 28;
        high = (byte & 0x7f) >>> 4;
      } else high |= (byte & 0x7f) << (shift - 32);
      if (byte < 0x80) {
        this.high = high >>> 0;
        return low >>> 0;
      }
    }
    throw new WireFormatError(`a varint longer than ten bytes at ${this.offset}`);
  }

  /** A varint as an int32/enum value (the low 32 bits, signed, as protobuf reads an int32). */
  int32(): number {
    return this.varint64() | 0;
  }

  /** An int64 as a number in 0..2^53-1, else NaN. */
  safeInt64(): number {
    const low = this.varint64();
    return this.high < SAFE_HIGH_LIMIT ? this.high * TWO_POW_32 + low : Number.NaN;
  }

  /** The bounds of a length-delimited field's contents; moves past them. */
  delimited(): number {
    const length = this.varint64();
    if (this.high !== 0 || length > this.end - this.offset) throw new WireFormatError(`a length of ${length} past the end at ${this.offset}`);
    const start = this.offset;
    this.offset += length;
    return start;
  }

  /** Skip a field of `wireType` (an unknown field). */
  skip(wireType: number): void {
    if (wireType === VARINT) this.varint64();
    else if (wireType === LENGTH_DELIMITED) this.delimited();
    else if (wireType === FIXED64 || wireType === FIXED32) {
      const size = wireType === FIXED64 ? 8 : 4;
      if (size > this.end - this.offset) throw new WireFormatError(`the bytes end inside a fixed field at ${this.offset}`);
      this.offset += size;
    } else throw new WireFormatError(`wire type ${wireType} at ${this.offset} (groups are not supported)`);
  }
}

/** The next tag: field number << 3 | wire type (a number, not a pair: this runs for every field). */
function tag(reader: Reader): number {
  const value = reader.varint64();
  if (reader.high !== 0 || value >>> 3 === 0) throw new WireFormatError(`a bad tag at ${reader.offset}`);
  return value;
}

function expect(wireType: number, want: number, field: string): void {
  if (wireType !== want) throw new WireFormatError(`${field} has wire type ${wireType}, not ${want}`);
}

/**
 * A CommandBatch read in place: every command's fields as byte ranges of the request and numbers, no strings and no
 * objects. The NATS transport's fast path hands it to a shard, whose translator copies the bytes straight into ring
 * slots (`translateScanned`); `readCommandBatch` makes WireCommands of it for everything else.
 */
export interface ScannedBatch {
  readonly bytes: Uint8Array;
  readonly count: number;
  readonly atomic: boolean;
  /** The CommandType number of each command as sent (0 when absent). */
  readonly types: Int32Array;
  /**
   * Per command, TEXT_FIELDS (start, end) pairs of `bytes` in ScannedText order; start === end: absent or "" (proto3
   * does not tell them apart). The last occurrence of a field wins, as protobuf reads a merged message.
   */
  readonly ranges: Int32Array;
  /** Per command, NUMBER_FIELDS values in ScannedNumber order: -1 absent, NaN outside 0..2^53-1, else the value. */
  readonly numbers: Float64Array;
}

/** The string fields of a scanned command, in `ranges` order (by proto field number). */
export const ScannedText = { id: 0, partnerId: 1, accountId: 2, toAccountId: 3, holdId: 4, currency: 5 } as const;
export const TEXT_FIELDS = 6;
/** The int64 fields of a scanned command, in `numbers` order. */
export const ScannedNumber = { amount: 0, overdraftLimit: 1, expiresInMs: 2 } as const;
export const NUMBER_FIELDS = 3;
/** A number field that was not sent. */
export const ABSENT = -1;

/** Proto field number -> ScannedText index (-1: not a string field). */
const TEXT_OF_FIELD = [-1, -1, 0, 1, 2, 3, 4, -1, 5, -1, -1];
/** Proto field number -> ScannedNumber index (-1: not an int64 field). */
const NUMBER_OF_FIELD = [-1, -1, -1, -1, -1, -1, -1, 0, -1, 1, 2];

/** Read command `k` of `scan` from the reader's bytes (its offset and end set to the command's). */
function scanCommand(reader: Reader, scan: ScannedBatch, k: number): void {
  const ranges = scan.ranges;
  const numbers = scan.numbers;
  const textBase = k * TEXT_FIELDS * 2;
  const numberBase = k * NUMBER_FIELDS;
  numbers[numberBase] = ABSENT;
  numbers[numberBase + 1] = ABSENT;
  numbers[numberBase + 2] = ABSENT;
  // Ends: every pass moves the reader forward or throws.
  while (reader.offset < reader.end) {
    const key = tag(reader);
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 1) {
      expect(wireType, VARINT, "Command.type");
      scan.types[k] = reader.int32();
    } else if (field < TEXT_OF_FIELD.length && TEXT_OF_FIELD[field] >= 0) {
      expect(wireType, LENGTH_DELIMITED, `Command field ${field}`);
      const start = reader.delimited();
      const at = textBase + TEXT_OF_FIELD[field] * 2;
      ranges[at] = start;
      ranges[at + 1] = reader.offset;
    } else if (field < NUMBER_OF_FIELD.length && NUMBER_OF_FIELD[field] >= 0) {
      expect(wireType, VARINT, `Command field ${field}`);
      numbers[numberBase + NUMBER_OF_FIELD[field]] = reader.safeInt64();
    } else reader.skip(wireType);
  }
}

/**
 * Scan a CommandBatch in place (see ScannedBatch). Throws WireFormatError for bytes that are not one, or for more
 * than `commandsMax` commands.
 */
export function scanCommandBatch(bytes: Uint8Array, commandsMax: number): ScannedBatch {
  // Pass 1: the batch's own fields; counts the commands so the columns are allocated once, at their size.
  const reader = new Reader(bytes, 0, bytes.length);
  let count = 0;
  let atomic = false;
  // Ends: every pass moves the reader forward or throws.
  while (reader.offset < reader.end) {
    const key = tag(reader);
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 1) {
      expect(wireType, LENGTH_DELIMITED, "CommandBatch.commands");
      reader.delimited();
      if (count === commandsMax) throw new WireFormatError(`more than ${commandsMax} commands`);
      count++;
    } else if (field === 2) {
      expect(wireType, VARINT, "CommandBatch.atomic");
      atomic = reader.varint64() !== 0 || reader.high !== 0;
    } else reader.skip(wireType);
  }
  const scan: ScannedBatch = {
    bytes,
    count,
    atomic,
    types: new Int32Array(count),
    ranges: new Int32Array(count * TEXT_FIELDS * 2),
    numbers: new Float64Array(count * NUMBER_FIELDS),
  };
  // Pass 2: each command, by one reader moved over each command's bytes (pass 1 checked the framing).
  const commandReader = new Reader(bytes, 0, 0);
  reader.offset = 0;
  for (let k = 0; k < count; ) {
    const key = tag(reader);
    if (key >>> 3 !== 1) {
      reader.skip(key & 7);
      continue;
    }
    commandReader.offset = reader.delimited();
    commandReader.end = reader.offset;
    scanCommand(commandReader, scan, k++);
  }
  return scan;
}

/** The string of text field `field` of scanned command `k` (UTF-8; `ascii` makes the ASCII ones). */
export function scannedText(scan: ScannedBatch, k: number, field: number, ascii: AsciiDecoder = asciiString): string {
  const at = (k * TEXT_FIELDS + field) * 2;
  return textOf(scan.bytes, scan.ranges[at], scan.ranges[at + 1], ascii);
}

/** The string of the UTF-8 bytes `[start, end)`. */
function textOf(bytes: Uint8Array, start: number, end: number, ascii: AsciiDecoder): string {
  for (let i = start; i < end; i++) {
    if (bytes[i] >= 0x80) return utf8.decode(bytes.subarray(start, end));
  }
  return start === end ? "" : ascii(bytes, start, end);
}

/** A scanned number as WireCommand has it: undefined when absent. */
const sent = (value: number) => (value === ABSENT ? undefined : value);

function sameBytes(bytes: Uint8Array, start: number, end: number, otherStart: number, otherEnd: number): boolean {
  if (end - start !== otherEnd - otherStart) return false;
  for (let i = 0; i < end - start; i++) if (bytes[start + i] !== bytes[otherStart + i]) return false;
  return true;
}

/**
 * Decode a CommandBatch, making strings with `ascii` (core's TextDecoder by default). Throws WireFormatError for bytes
 * that are not one, or for more than `commandsMax` commands. A batch's commands are mostly of one partner: its
 * string is made once and reused while the next command's bytes are the same.
 */
export function readCommandBatch(bytes: Uint8Array, commandsMax: number, ascii: AsciiDecoder = asciiString): WireCommandBatch {
  return readScannedBatch(scanCommandBatch(bytes, commandsMax), ascii);
}

/** The commands of a scanned batch as WireCommands (strings made with `ascii`, the partner's once while it repeats). */
export function readScannedBatch(scan: ScannedBatch, ascii: AsciiDecoder = asciiString): WireCommandBatch {
  const { bytes, ranges, numbers } = scan;
  const commands = new Array<WireCommand>(scan.count);
  let partnerStart = 0;
  let partnerEnd = 0;
  let partner = "";
  for (let k = 0; k < scan.count; k++) {
    const start = ranges[(k * TEXT_FIELDS + ScannedText.partnerId) * 2];
    const end = ranges[(k * TEXT_FIELDS + ScannedText.partnerId) * 2 + 1];
    if (!sameBytes(bytes, start, end, partnerStart, partnerEnd)) {
      partner = textOf(bytes, start, end, ascii);
      partnerStart = start;
      partnerEnd = end;
    }
    const n = k * NUMBER_FIELDS;
    commands[k] = {
      type: scan.types[k],
      id: scannedText(scan, k, ScannedText.id, ascii),
      partnerId: partner,
      accountId: scannedText(scan, k, ScannedText.accountId, ascii),
      toAccountId: scannedText(scan, k, ScannedText.toAccountId, ascii),
      holdId: scannedText(scan, k, ScannedText.holdId, ascii),
      currency: scannedText(scan, k, ScannedText.currency, ascii),
      amount: sent(numbers[n + ScannedNumber.amount]),
      overdraftLimit: sent(numbers[n + ScannedNumber.overdraftLimit]),
      expiresInMs: sent(numbers[n + ScannedNumber.expiresInMs]),
    };
  }
  return { commands, atomic: scan.atomic };
}
