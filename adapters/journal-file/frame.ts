/**
 * The journal's frame: a 24-byte header in front of each record's bytes. The layout and the reasons for it are in
 * index.ts's top comment; this file holds the offsets, the bounds and the two operations on a frame (encode a
 * header, check a header). Little-endian throughout.
 */
import { assert } from "../../core/assert.ts";
import { crc32c } from "../../core/crc32c.ts";
import { recordBytesMax } from "../../core/journal-codec.ts";
import { RING_SLOTS_MAX } from "../../core/limits.ts";

/** Bytes of a frame before its body. */
export const FRAME_HEADER_BYTES = 24;
/** u32: the body's length in bytes. */
export const BODY_LENGTH_OFFSET = 0;
/** u32: how many commands (sequences) the record holds. */
export const COMMAND_COUNT_OFFSET = 4;
/** f64: the record's first sequence. */
export const FIRST_SEQUENCE_OFFSET = 8;
/** u32: CRC32C of the body. */
export const BODY_CRC_OFFSET = 16;
/** u32: CRC32C of header bytes [0, 20), so the body CRC is covered too. */
export const HEADER_CRC_OFFSET = 20;

/**
 * Most commands in one record: the shard writes one record per processor batch, and a batch never exceeds the
 * largest ring.
 */
export const FRAME_COMMANDS_MAX = RING_SLOTS_MAX;
/**
 * Largest record body: a full batch of the largest ring at the largest encoded command size, ~19 MiB. It bounds
 * the write buffer (which grows to the largest record seen, at most this) and the read buffer that must hold a
 * whole frame; a header claiming more is damaged.
 */
export const FRAME_BODY_BYTES_MAX = recordBytesMax(FRAME_COMMANDS_MAX);

/** The fields of a header that `headerValid` accepted. */
export interface FrameHeader {
  bodyLength: number;
  commandCount: number;
  firstSequence: number;
  bodyCrc: number;
}

/**
 * Writes a frame for `body` into `out` at 0: the header, then a copy of the body (so the frame goes to disk in one
 * write and the caller may reuse `body` at once). Returns the frame's length in bytes.
 */
export function encodeFrame(
  out: Uint8Array,
  view: DataView,
  body: Uint8Array,
  firstSequence: number,
  commandCount: number,
): number {
  const frameBytes = FRAME_HEADER_BYTES + body.length;
  assert(out.length >= frameBytes, "frame buffer too small");
  assert(view.buffer === out.buffer && view.byteOffset === out.byteOffset, "view must be over the frame buffer");
  out.set(body, FRAME_HEADER_BYTES);
  view.setUint32(BODY_LENGTH_OFFSET, body.length, true);
  view.setUint32(COMMAND_COUNT_OFFSET, commandCount, true);
  view.setFloat64(FIRST_SEQUENCE_OFFSET, firstSequence, true);
  view.setUint32(BODY_CRC_OFFSET, crc32c(out, FRAME_HEADER_BYTES, frameBytes), true);
  view.setUint32(HEADER_CRC_OFFSET, crc32c(out, 0, HEADER_CRC_OFFSET), true);
  return frameBytes;
}

/**
 * Checks the header at `offset` of `bytes` (all FRAME_HEADER_BYTES of it must be there): that every field is in
 * range and, with `checkCrc`, its CRC. Fills `header` and returns true when valid. The cheap range checks run
 * first, so scanning every byte offset of damaged data for a header (see index.ts, torn tails) mostly skips the CRC.
 */
export function headerValid(
  bytes: Uint8Array,
  view: DataView,
  offset: number,
  header: FrameHeader,
  checkCrc: boolean,
): boolean {
  assert(offset + FRAME_HEADER_BYTES <= bytes.length, "header must be inside the buffer");
  const bodyLength = view.getUint32(offset + BODY_LENGTH_OFFSET, true);
  if (bodyLength > FRAME_BODY_BYTES_MAX) return false;
  const commandCount = view.getUint32(offset + COMMAND_COUNT_OFFSET, true);
  if (commandCount < 1 || commandCount > FRAME_COMMANDS_MAX) return false;
  const firstSequence = view.getFloat64(offset + FIRST_SEQUENCE_OFFSET, true);
  if (!Number.isSafeInteger(firstSequence) || firstSequence < 1) return false;
  if (!Number.isSafeInteger(firstSequence + commandCount - 1)) return false;
  const headerCrc = view.getUint32(offset + HEADER_CRC_OFFSET, true);
  if (checkCrc && crc32c(bytes, offset, offset + HEADER_CRC_OFFSET) !== headerCrc) return false;
  header.bodyLength = bodyLength;
  header.commandCount = commandCount;
  header.firstSequence = firstSequence;
  header.bodyCrc = view.getUint32(offset + BODY_CRC_OFFSET, true);
  return true;
}
