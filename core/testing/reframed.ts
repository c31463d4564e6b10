/**
 * Test helper: a snapshot's bytes with its body altered, re-encoded and framed again with the length and CRC32C it
 * now has, so a test can give decodeSnapshot a body no engine writes under a checksum that holds.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { crc32c } from "../crc32c.ts";
import { type Snapshot, SnapshotSchema } from "../gen/hotledger/v1/ledger_pb.ts";

/** Bytes of the frame before the body: magic and version (8), body length (4), CRC32C of the body (4). */
const FRAME_HEADER_BYTES = 16;

/** `bytes` with its body changed by `alter`, re-encoded and framed again with the length and CRC32C it now has. */
export function reframed(bytes: Uint8Array, alter: (message: Snapshot) => void): Uint8Array {
  const message = fromBinary(SnapshotSchema, bytes.subarray(FRAME_HEADER_BYTES));
  alter(message);
  const body = toBinary(SnapshotSchema, message);
  const framed = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  framed.set(bytes.subarray(0, 8)); // magic and version
  const view = new DataView(framed.buffer);
  view.setUint32(8, body.length, true);
  view.setUint32(12, crc32c(body), true);
  framed.set(body, FRAME_HEADER_BYTES);
  return framed;
}
