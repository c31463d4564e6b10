/**
 * Strings of ASCII bytes the fastest way this runtime has: Node's and Bun's `Buffer.prototype.latin1Slice` (~55 ns
 * an identifier, no subarray, no decoder call) where it exists, else undefined and core's default (a Web
 * TextDecoder over a subarray, ~150 ns). Core takes it as an `AsciiDecoder` wherever it makes strings of bytes in
 * bulk: the NATS transport's request reader, and an output relay's events (their ids and names).
 */
import type { AsciiDecoder } from "../core/index.ts";

const latin1Slice = (globalThis as { Buffer?: { prototype: { latin1Slice?: (start: number, end: number) => string } } }).Buffer?.prototype.latin1Slice;

export const runtimeAscii: AsciiDecoder | undefined =
  latin1Slice === undefined ? undefined : (bytes, start, end) => latin1Slice.call(bytes, start, end);
