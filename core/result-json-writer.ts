/**
 * The JSON body `{"results":[...]}` of a scanned batch's results, written as UTF-8 bytes straight from the ring's
 * result columns and the request's id bytes: exactly what `JSON.stringify({ results })` gives for the Result objects
 * `Engine.resultAt` builds for the same slots (field order id, status, code, seq, balance, held, available,
 * duplicate; the four optional ones as buildResult sets them). result-json-writer.test.ts holds the two equal.
 * It is the HTTP transport's fast path reply: no Result objects, no JSON.stringify, no string to encode.
 */
import { assert } from "./assert.ts";
import { RESULT_CODES } from "./codes.ts";
import { type ScannedBatch, ScannedText, TEXT_FIELDS } from "./command-batch-reader.ts";
import { KEY_BYTES_MAX } from "./limits.ts";
import type { RingBuffer } from "./ring-buffer.ts";

const encoder = new TextEncoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);

const OPEN = bytesOf('{"results":[');
const CLOSE = bytesOf("]}");
const ID = bytesOf('{"id":"');
/** `","status":"ok","code":"<code>","seq":` and the rejected form, by result code. */
const STATUS_CODE_SEQ = RESULT_CODES.map((code, number) => bytesOf(`","status":"${number === 0 ? "ok" : "rejected"}","code":"${code}","seq":`));
const BALANCE = bytesOf(',"balance":');
const HELD = bytesOf(',"held":');
const AVAILABLE = bytesOf(',"available":');
const DUPLICATE = bytesOf(',"duplicate":true');

/** Longest decimal a safe integer takes, sign included. */
const NUMBER_BYTES_MAX = 17;
/** Bound of one result's bytes: the id, the longest status and code, four numbers and the duplicate flag. */
const RESULT_JSON_BYTES_MAX =
  ID.length + KEY_BYTES_MAX + Math.max(...STATUS_CODE_SEQ.map((part) => part.length)) + BALANCE.length + HELD.length + AVAILABLE.length +
  4 * NUMBER_BYTES_MAX + DUPLICATE.length + 2;

function put(out: Uint8Array, o: number, part: Uint8Array): number {
  for (let i = 0; i < part.length; i++) out[o + i] = part[i];
  return o + part.length;
}

/** A safe integer in decimal, as JSON.stringify writes it (-0 as 0): int32 arithmetic on at most two halves. */
function putInteger(out: Uint8Array, o: number, value: number): number {
  if (value < 0) {
    out[o++] = 0x2d; // "-"
    value = -value;
  }
  if (value < 1e8) return putDigits(out, o, value | 0, digitCount(value | 0));
  // value = high * 10^8 + low, both int32 (high < 2^53 / 10^8 < 10^8); the division's rounding is corrected.
  let high = Math.floor(value / 1e8);
  let low = value - high * 1e8;
  if (low < 0) {
    high--;
    low += 1e8;
  } else if (low >= 1e8) {
    high++;
    low -= 1e8;
  }
  o = putDigits(out, o, high | 0, digitCount(high | 0));
  return putDigits(out, o, low | 0, 8);
}

/** Decimal digits of 0 <= value < 10^8 (1 for 0). */
function digitCount(value: number): number {
  if (value < 10_000) return value < 100 ? (value < 10 ? 1 : 2) : value < 1000 ? 3 : 4;
  return value < 1_000_000 ? (value < 100_000 ? 5 : 6) : value < 10_000_000 ? 7 : 8;
}

/** `value` (int32 >= 0) as exactly `count` digits, zero-padded on the left. */
function putDigits(out: Uint8Array, o: number, value: number, count: number): number {
  for (let at = o + count - 1; at >= o; at--) {
    const next = (value / 10) | 0;
    out[at] = 0x30 + value - next * 10;
    value = next;
  }
  return o + count;
}

/**
 * The results of a scanned batch's commands, published from sequence `first` and applied, as JSON bytes. Every id
 * the translator accepted is 0-64 identifier characters, which JSON never escapes.
 */
export function writeScannedResultsJson(ring: RingBuffer, first: number, scan: ScannedBatch): Uint8Array {
  const out = new Uint8Array(OPEN.length + scan.count * RESULT_JSON_BYTES_MAX + CLOSE.length);
  const source = scan.bytes;
  const ranges = scan.ranges;
  let o = put(out, 0, OPEN);
  for (let k = 0; k < scan.count; k++) {
    const index = (first + k) & ring.mask;
    if (k > 0) out[o++] = 0x2c; // ","
    o = put(out, o, ID);
    const idStart = ranges[(k * TEXT_FIELDS + ScannedText.id) * 2];
    const idEnd = ranges[(k * TEXT_FIELDS + ScannedText.id) * 2 + 1];
    assert(idEnd - idStart <= KEY_BYTES_MAX, "a scanned command's id is at most 64 bytes");
    for (let i = idStart; i < idEnd; i++) out[o++] = source[i];
    o = put(out, o, STATUS_CODE_SEQ[ring.code[index]]);
    o = putInteger(out, o, ring.resultSeq[index]);
    if (!Number.isNaN(ring.balance[index])) {
      o = put(out, o, BALANCE);
      o = putInteger(out, o, ring.balance[index]);
      o = put(out, o, HELD);
      o = putInteger(out, o, ring.held[index]);
      o = put(out, o, AVAILABLE);
      o = putInteger(out, o, ring.available[index]);
    }
    if (ring.duplicate[index] === 1) o = put(out, o, DUPLICATE);
    out[o++] = 0x7d; // "}"
  }
  o = put(out, o, CLOSE);
  return out.subarray(0, o);
}
