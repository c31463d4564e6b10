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
    readonly ascii: AsciiDecoder,
  ) {
    this.offset = start;
  }

  /** A varint's low 32 bits (unsigned); the high bits go to `high`. At most ten bytes. */
  varint64(): number {
    const bytes = this.bytes;
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

  string(): string {
    return this.text(this.delimited(), this.offset);
  }

  /** The string of the UTF-8 bytes `[start, end)`. */
  text(start: number, end: number): string {
    const bytes = this.bytes;
    for (let i = start; i < end; i++) {
      if (bytes[i] >= 0x80) return utf8.decode(bytes.subarray(start, end));
    }
    return start === end ? "" : this.ascii(bytes, start, end);
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
 * The last partner id read in a batch and where its bytes were: the commands of a batch are mostly of one partner,
 * so its string is made once and reused when the next command's bytes are the same.
 */
interface LastPartner {
  start: number;
  end: number;
  value: string;
}

function samePartner(bytes: Uint8Array, last: LastPartner, start: number, end: number): boolean {
  if (end - start !== last.end - last.start) return false;
  for (let i = 0; i < end - start; i++) if (bytes[start + i] !== bytes[last.start + i]) return false;
  return true;
}

function readCommand(reader: Reader, last: LastPartner): WireCommand {
  const command: WireCommand = {
    type: 0, id: "", partnerId: "", accountId: "", toAccountId: "", holdId: "", currency: "",
    amount: undefined, overdraftLimit: undefined, expiresInMs: undefined,
  };
  // Ends: every pass moves the reader forward or throws.
  while (reader.offset < reader.end) {
    const key = tag(reader);
    const field = key >>> 3;
    const wireType = key & 7;
    switch (field) {
      case 1:
        expect(wireType, VARINT, "Command.type");
        command.type = reader.int32();
        break;
      case 3: {
        expect(wireType, LENGTH_DELIMITED, "Command field 3");
        const start = reader.delimited();
        if (!samePartner(reader.bytes, last, start, reader.offset)) {
          last.value = reader.text(start, reader.offset);
          last.start = start;
          last.end = reader.offset;
        }
        command.partnerId = last.value;
        break;
      }
      case 2:
      case 4:
      case 5:
      case 6:
      case 8: {
        expect(wireType, LENGTH_DELIMITED, `Command field ${field}`);
        const text = reader.string();
        if (field === 2) command.id = text;
        else if (field === 4) command.accountId = text;
        else if (field === 5) command.toAccountId = text;
        else if (field === 6) command.holdId = text;
        else command.currency = text;
        break;
      }
      case 7:
      case 9:
      case 10: {
        expect(wireType, VARINT, `Command field ${field}`);
        const value = reader.safeInt64();
        if (field === 7) command.amount = value;
        else if (field === 9) command.overdraftLimit = value;
        else command.expiresInMs = value;
        break;
      }
      default:
        reader.skip(wireType);
    }
  }
  return command;
}

/**
 * Decode a CommandBatch, making strings with `ascii` (core's TextDecoder by default). Throws WireFormatError for bytes
 * that are not one, or for more than `commandsMax` commands.
 */
export function readCommandBatch(bytes: Uint8Array, commandsMax: number, ascii: AsciiDecoder = asciiString): WireCommandBatch {
  const reader = new Reader(bytes, 0, bytes.length, ascii);
  const last: LastPartner = { start: 0, end: 0, value: "" };
  // One reader for the commands, moved to each one's bytes (not one allocated per command).
  const commandReader = new Reader(bytes, 0, 0, ascii);
  const commands: WireCommand[] = [];
  let atomic = false;
  // Ends: every pass moves the reader forward or throws.
  while (reader.offset < reader.end) {
    const key = tag(reader);
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 1) {
      expect(wireType, LENGTH_DELIMITED, "CommandBatch.commands");
      const start = reader.delimited();
      if (commands.length === commandsMax) throw new WireFormatError(`more than ${commandsMax} commands`);
      commandReader.offset = start;
      commandReader.end = reader.offset;
      commands.push(readCommand(commandReader, last));
    } else if (field === 2) {
      expect(wireType, VARINT, "CommandBatch.atomic");
      atomic = reader.varint64() !== 0 || reader.high !== 0;
    } else reader.skip(wireType);
  }
  return { commands, atomic };
}
