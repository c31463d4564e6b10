/**
 * CRC32C (Castagnoli), the checksum of snapshots and journal records. Slicing-by-8 tables, built once at load;
 * the middle of the input is read as 32-bit words (little-endian platforms, asserted in ring-buffer.ts).
 */

const TABLES = buildTables();

function buildTables(): Uint32Array {
  const tables = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n];
    for (let t = 1; t < 8; t++) {
      c = tables[c & 0xff] ^ (c >>> 8);
      tables[t * 256 + n] = c >>> 0;
    }
  }
  return tables;
}

/** CRC32C of `bytes[start, end)`, continuing from `crc` (0 to start). Returns an unsigned 32-bit value. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  const t = TABLES;
  let c = ~crc | 0;
  let i = start;
  // Bytes up to a 4-byte boundary of the underlying buffer, so the middle can be read as aligned 32-bit words.
  for (; i < end && ((bytes.byteOffset + i) & 3) !== 0; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  if (end - i >= 8) {
    const words = new Int32Array(bytes.buffer, bytes.byteOffset + i, (end - i) >>> 2);
    const pairs = words.length >>> 1;
    for (let w = 0; w < pairs * 2; w += 2) {
      c ^= words[w];
      const next = words[w + 1];
      c =
        t[7 * 256 + (c & 0xff)] ^
        t[6 * 256 + ((c >>> 8) & 0xff)] ^
        t[5 * 256 + ((c >>> 16) & 0xff)] ^
        t[4 * 256 + (c >>> 24)] ^
        t[3 * 256 + (next & 0xff)] ^
        t[2 * 256 + ((next >>> 8) & 0xff)] ^
        t[256 + ((next >>> 16) & 0xff)] ^
        t[next >>> 24];
    }
    i += pairs * 8;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
