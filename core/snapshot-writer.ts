/**
 * Writes a `hotledger.v1.Snapshot` body straight into the framed snapshot buffer, piece by piece, so a snapshot of
 * 1M accounts is never one long copy. The output is exactly protobuf-es `toBinary` of the same message (fields in
 * number order, proto3 defaults omitted, sub-messages always written); snapshot-writer.test.ts holds it to that.
 * A generator: each `yield` is a point where the caller may let the event loop run.
 */
import { assert } from "./assert.ts";
import { crc32c } from "./crc32c.ts";
import { varintSize, writeVarint } from "./varint.ts";

/**
 * Bytes copied (and checksummed) per piece: 512 KiB, under 1 ms of CRC32C in optimized JavaScript here, and a few
 * ms the first time, before the JIT has optimized it (2 MiB pieces were ~3 ms optimized).
 */
const PIECE_BYTES = 512 << 10;

/** Field values of one message, in field-number order: [fieldNumber, kind, value]. */
export type Field =
  | [number, "varint", number]
  | [number, "bytes", Uint8Array]
  | [number, "strings", string[]]
  | [number, "message", Field[]];

const WIRE_VARINT = 0;
const WIRE_LENGTH = 2;

const encoder = new TextEncoder();

/** Encoded size of a message's fields (proto3: zero varints and empty bytes or strings lists are not written). */
function messageSize(fields: Field[], encodedStrings: Map<string[], Uint8Array[]>): number {
  let size = 0;
  for (const [number, kind, value] of fields) {
    const tag = varintSize(number << 3);
    if (kind === "varint") {
      if (value !== 0) size += tag + varintSize(value);
    } else if (kind === "bytes") {
      if (value.length > 0) size += tag + varintSize(value.length) + value.length;
    } else if (kind === "strings") {
      const encoded = value.map((text) => encoder.encode(text));
      encodedStrings.set(value, encoded);
      for (const bytes of encoded) size += tag + varintSize(bytes.length) + bytes.length;
    } else {
      const inner = messageSize(value, encodedStrings);
      size += tag + varintSize(inner) + inner;
    }
  }
  return size;
}

class Output {
  offset: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
  ) {
    this.offset = start;
  }

  varint(value: number): void {
    this.offset = writeVarint(this.bytes, this.offset, value);
  }
}

/** Write `fields` into `out`; yields after every PIECE_BYTES of copied bytes. */
function* writeMessage(out: Output, fields: Field[], strings: Map<string[], Uint8Array[]>): Generator<void, void, void> {
  for (const [number, kind, value] of fields) {
    if (kind === "varint") {
      if (value === 0) continue;
      out.varint((number << 3) | WIRE_VARINT);
      out.varint(value);
    } else if (kind === "bytes") {
      if (value.length === 0) continue;
      out.varint((number << 3) | WIRE_LENGTH);
      out.varint(value.length);
      for (let start = 0; start < value.length; start += PIECE_BYTES) {
        const end = Math.min(value.length, start + PIECE_BYTES);
        out.bytes.set(value.subarray(start, end), out.offset);
        out.offset += end - start;
        yield;
      }
    } else if (kind === "strings") {
      for (const bytes of strings.get(value) ?? []) {
        out.varint((number << 3) | WIRE_LENGTH);
        out.varint(bytes.length);
        out.bytes.set(bytes, out.offset);
        out.offset += bytes.length;
      }
    } else {
      out.varint((number << 3) | WIRE_LENGTH);
      out.varint(messageSize(value, strings));
      yield* writeMessage(out, value, strings);
    }
  }
}

/**
 * Write the message `fields` after a `headerBytes` header into one buffer, then checksum the body. Returns the
 * buffer and the body's CRC32C (the caller fills the header). Yields between pieces.
 */
export function* writeFramed(
  fields: Field[],
  headerBytes: number,
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): Generator<void, { bytes: Uint8Array; crc: number }, void> {
  const strings = new Map<string[], Uint8Array[]>();
  const size = messageSize(fields, strings);
  const buffer = allocate(headerBytes + size);
  assert(buffer.length === headerBytes + size, "allocate returns exactly the bytes asked for");
  // Every body byte is written below (the sizes are exact) and the caller writes the header: reused memory needs no clearing.
  const out = new Output(buffer, headerBytes);
  yield* writeMessage(out, fields, strings);
  assert(out.offset === buffer.length, "the body filled exactly its computed size");
  let crc = 0;
  for (let start = headerBytes; start < out.bytes.length; start += PIECE_BYTES) {
    crc = crc32c(out.bytes, start, Math.min(out.bytes.length, start + PIECE_BYTES), crc);
    yield;
  }
  return { bytes: out.bytes, crc };
}
