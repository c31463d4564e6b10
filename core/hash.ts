/**
 * 32-bit hashing of keys stored as zero-padded 32-bit words (MurmurHash3's x86_32 body). Keys are hashed a word at
 * a time straight out of ring slots and key tables, so no JavaScript string is built on the hot path.
 */

/** Hash `wordCount` words of `words` starting at `wordStart`; `seed` separates key spaces (e.g. the partner). */
export function hashWords(words: Uint32Array, wordStart: number, wordCount: number, seed: number): number {
  let h = seed | 0;
  const end = wordStart + wordCount;
  for (let i = wordStart; i < end; i++) {
    let k = Math.imul(words[i], 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return finalize(h ^ wordCount);
}

/**
 * MurmurHash3's fmix32: every input bit affects every output bit. Returns a signed 32-bit value: JavaScriptCore
 * and V8 keep int32 in registers, while an unsigned value above 2^31 would become a double.
 */
export function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
