/**
 * Protobuf varints of JavaScript numbers, for the hand-written encoders (snapshot-writer.ts,
 * output-event-writer.ts). The core's numbers are safe integers, so they are written without BigInt: a negative
 * one as protobuf writes an int64, its 64-bit two's complement in ten bytes.
 */
import { assert } from "./assert.ts";

const TWO_POW_32 = 2 ** 32;

/** Bytes of `value` (a safe integer) as a varint. */
export function varintSize(value: number): number {
  if (value < 0) return 10;
  if (value < 2 ** 7) return 1;
  if (value < 2 ** 14) return 2;
  if (value < 2 ** 21) return 3;
  if (value < 2 ** 28) return 4;
  if (value < 2 ** 35) return 5;
  if (value < 2 ** 42) return 6;
  if (value < 2 ** 49) return 7;
  // A safe integer is below 2^53; writeVarint refuses anything else.
  return 8;
}

/** Write `value` (a safe integer) as a varint into `bytes` at `offset`; returns the offset after it. */
export function writeVarint(bytes: Uint8Array, offset: number, value: number): number {
  if (value >>> 0 === value) {
    // The common case, an unsigned 32-bit integer: shifts only.
    while (value > 0x7f) {
      bytes[offset++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    bytes[offset++] = value;
    return offset;
  }
  // (The message is built only on failure: this runs for every large or negative number.)
  if (!Number.isSafeInteger(value)) assert(false, `a varint must be a safe integer, not ${value}`);
  // Beyond 32 bits or negative: the two 32-bit halves of the 64-bit two's complement, seven bits at a time. A
  // positive one (a balance past 2^32) needs no floor: ToUint32 gives its low half, and the division is exact.
  let low: number;
  let high: number;
  if (value > 0) {
    low = value >>> 0;
    high = (value - low) / TWO_POW_32;
  } else {
    const highSigned = Math.floor(value / TWO_POW_32);
    low = (value - highSigned * TWO_POW_32) >>> 0;
    high = highSigned >>> 0;
  }
  while (high !== 0 || low > 0x7f) {
    bytes[offset++] = (low & 0x7f) | 0x80;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  bytes[offset++] = low;
  return offset;
}
