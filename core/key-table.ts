/**
 * An open-addressing hash index from (owner, ASCII key) to an entry number, over preallocated typed arrays.
 * The LMAX lesson: a purpose-built collection instead of Map<string>. Keys live as zero-padded 32-bit words at
 * `entry * KEY_WORDS`, so lookups hash and compare words straight out of ring slots. Linear probing at load <= 0.5,
 * backward-shift deletion (no tombstones), every loop bounded by the index size. Two slot layouts:
 * - "inline" (for lookups that mostly hit, e.g. accounts): 32 bytes, [entry, hash, owner << 8 | length, the key's
 *   first 4 words, 0], so a key of up to 16 bytes is compared without leaving the slot: one cache miss, not two;
 * - "compact" (for lookups that mostly miss, e.g. the idempotency window): 8 bytes, [entry, hash], so the index
 *   of a 2^20-entry window is 16 MiB and stays in the last-level cache; the key is read only on a hash match.
 */
import { assert } from "./assert.ts";
import { hashWords } from "./hash.ts";
import { KEY_BYTES_MAX } from "./limits.ts";

/** Words per stored key. */
export const KEY_WORDS = KEY_BYTES_MAX / 4;

const EMPTY = -1;
/** Int32s per "inline" index slot: entry, hash, owner << 8 | key length, 4 words of key, padding. */
const INLINE_SLOT_INTS = 8;
/** Int32s per "compact" index slot: entry, hash. */
const COMPACT_SLOT_INTS = 2;
/** Owners are packed with the key length into one int32: owner << 8 | length. */
export const OWNER_LIMIT = 1 << 23;
/** Key words kept inline in the index slot. */
const INLINE_WORDS = 4;

/** A fixed-capacity key index. Entry numbers are chosen by the caller (row of the table the keys belong to). */
export class KeyTable {
  /** Most entries. */
  readonly capacity: number;
  /** Stored keys, KEY_WORDS per entry, zero-padded. */
  readonly keyWords: Uint32Array;
  /** The same keys as bytes (for copying in and out; lookups use the words). */
  readonly keyBytes: Uint8Array;
  /** Stored key lengths in bytes; 0 = entry not in the index. */
  readonly keyLength: Uint8Array;
  /** Owner of each entry (a partner index; 0 where keys have no owner). Part of the key. */
  readonly owner: Uint32Array;
  /** The hash each entry was inserted with (eviction finds its slot without rehashing the key). */
  readonly entryHash: Int32Array;
  /** owner << 8 | key length of each entry (what a compact slot verifies on a hash match). */
  private readonly ownerLength: Int32Array;
  /** Whether slots carry the key's first words. */
  private readonly inline: boolean;
  /** Int32s per index slot. */
  private readonly slotInts: number;
  /** Index slots, slotInts int32 each; entry EMPTY = free. */
  private readonly index: Int32Array;
  /** Index slots - 1 (slot count is a power of two). */
  private readonly indexMask: number;
  /** Entries in the index. */
  count = 0;

  constructor(capacity: number, layout: "inline" | "compact" = "inline") {
    assert(Number.isInteger(capacity) && capacity >= 1, "key table capacity must be a positive integer");
    this.inline = layout === "inline";
    this.slotInts = this.inline ? INLINE_SLOT_INTS : COMPACT_SLOT_INTS;
    this.ownerLength = new Int32Array(capacity);
    this.capacity = capacity;
    this.keyWords = new Uint32Array(capacity * KEY_WORDS);
    this.keyBytes = new Uint8Array(this.keyWords.buffer);
    this.keyLength = new Uint8Array(capacity);
    this.owner = new Uint32Array(capacity);
    this.entryHash = new Int32Array(capacity);
    let size = 2;
    while (size < capacity * 2) size *= 2;
    this.index = new Int32Array(size * this.slotInts).fill(EMPTY);
    this.indexMask = size - 1;
  }

  /** The hash `find` and `insert` expect for a key of `byteLength` bytes at `words[wordStart]`. */
  static hash(owner: number, words: Uint32Array, wordStart: number, byteLength: number): number {
    return hashWords(words, wordStart, (byteLength + 3) >>> 2, owner + 0x9747b28c);
  }

  /** The entry holding this key, or -1. */
  find(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
    return this.inline
      ? this.findInline(owner, words, wordStart, byteLength, hash)
      : this.findCompact(owner, words, wordStart, byteLength, hash);
  }

  private findInline(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
    const index = this.index;
    const mask = this.indexMask;
    const ownerLength = (owner << 8) | byteLength;
    // Words beyond the key's length are zero in the slot; mask them in the probe key too.
    const wordCount = (byteLength + 3) >>> 2;
    const w0 = words[wordStart] | 0;
    const w1 = wordCount > 1 ? words[wordStart + 1] | 0 : 0;
    const w2 = wordCount > 2 ? words[wordStart + 2] | 0 : 0;
    const w3 = wordCount > 3 ? words[wordStart + 3] | 0 : 0;
    let position = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const slot = position * INLINE_SLOT_INTS;
      const entry = index[slot];
      if (entry === EMPTY) return EMPTY;
      if (
        index[slot + 1] === hash &&
        index[slot + 2] === ownerLength &&
        index[slot + 3] === w0 &&
        index[slot + 4] === w1 &&
        index[slot + 5] === w2 &&
        index[slot + 6] === w3 &&
        (wordCount <= INLINE_WORDS || this.wordsEqual(entry, words, wordStart, INLINE_WORDS, wordCount))
      ) {
        return entry;
      }
      position = (position + 1) & mask;
    }
    return EMPTY;
  }

  private findCompact(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
    const index = this.index;
    const mask = this.indexMask;
    const ownerLength = (owner << 8) | byteLength;
    const wordCount = (byteLength + 3) >>> 2;
    let position = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const slot = position * COMPACT_SLOT_INTS;
      const entry = index[slot];
      if (entry === EMPTY) return EMPTY;
      if (index[slot + 1] === hash && this.ownerLength[entry] === ownerLength && this.wordsEqual(entry, words, wordStart, 0, wordCount)) {
        return entry;
      }
      position = (position + 1) & mask;
    }
    return EMPTY;
  }

  /** Read the index slot a hash starts probing at (prefetch: the caller only wants the cache line). */
  probe(hash: number): number {
    return this.index[(hash & this.indexMask) * this.slotInts];
  }

  /** Compare words `from..wordCount` of the stored key of `entry` with the probe key. */
  private wordsEqual(entry: number, words: Uint32Array, wordStart: number, from: number, wordCount: number): boolean {
    const stored = this.keyWords;
    const base = entry * KEY_WORDS;
    for (let i = from; i < wordCount; i++) {
      if (stored[base + i] !== words[wordStart + i]) return false;
    }
    return true;
  }

  /** Insert unless the key is already present (snapshot restore checks for repeats this way). */
  insertIfAbsent(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): boolean {
    if (this.find(owner, words, wordStart, byteLength, hash) >= 0) return false;
    this.insert(entry, owner, words, wordStart, byteLength, hash);
    return true;
  }

  /** Store the key at `entry` and index it. The key must not be present and the entry must be free. */
  insert(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): void {
    assert(entry >= 0 && entry < this.capacity, "key table entry out of range");
    assert(this.keyLength[entry] === 0, "key table entry already in use");
    assert(byteLength >= 1 && byteLength <= KEY_BYTES_MAX, "key length out of range");
    assert(this.count < this.capacity, "key table full");
    assert(owner >= 0 && owner < OWNER_LIMIT, "key table owner out of range");
    const base = entry * KEY_WORDS;
    const wordCount = (byteLength + 3) >>> 2;
    const stored = this.keyWords;
    // Only the key's own words: lookups compare lengths first, then ceil(length / 4) words, so stale words beyond
    // a shorter key are never read.
    for (let i = 0; i < wordCount; i++) stored[base + i] = words[wordStart + i];
    this.keyLength[entry] = byteLength;
    this.owner[entry] = owner;
    this.entryHash[entry] = hash;
    this.ownerLength[entry] = (owner << 8) | byteLength;
    const index = this.index;
    const mask = this.indexMask;
    const slotInts = this.slotInts;
    let position = hash & mask;
    for (let probes = 0; probes <= mask && index[position * slotInts] !== EMPTY; probes++) position = (position + 1) & mask;
    const slot = position * slotInts;
    assert(index[slot] === EMPTY, "key table index has no empty position");
    index[slot] = entry;
    index[slot + 1] = hash;
    if (this.inline) {
      index[slot + 2] = (owner << 8) | byteLength;
      for (let i = 0; i < INLINE_WORDS; i++) index[slot + 3 + i] = i < wordCount ? stored[base + i] | 0 : 0;
    }
    this.count++;
  }

  /** Remove `entry` from the index (backward-shift deletion keeps every probe chain unbroken). */
  remove(entry: number): void {
    assert(this.keyLength[entry] !== 0, "key table entry not in use");
    const index = this.index;
    const mask = this.indexMask;
    const slotInts = this.slotInts;
    let hole = this.entryHash[entry] & mask;
    let probes = 0;
    for (; probes <= mask && index[hole * slotInts] !== entry && index[hole * slotInts] !== EMPTY; probes++) {
      hole = (hole + 1) & mask;
    }
    assert(index[hole * slotInts] === entry, "key table entry missing from its probe chain");
    index[hole * slotInts] = EMPTY;
    let position = hole;
    for (probes = 0; probes <= mask; probes++) {
      position = (position + 1) & mask;
      const slot = position * slotInts;
      if (index[slot] === EMPTY) break;
      const home = index[slot + 1] & mask;
      // The slot may fill the hole only when its home is not cyclically inside (hole, position].
      const homeInside = hole <= position ? home > hole && home <= position : home > hole || home <= position;
      if (!homeInside) {
        const target = hole * slotInts;
        for (let i = 0; i < slotInts; i++) index[target + i] = index[slot + i];
        index[slot] = EMPTY;
        hole = position;
      }
    }
    this.keyLength[entry] = 0;
    this.count--;
  }

  /** The stored key of `entry` as a string (for snapshots, reads and outputs; not for the hot path). */
  keyString(entry: number): string {
    const base = entry * KEY_BYTES_MAX;
    return asciiString(this.keyBytes, base, base + this.keyLength[entry]);
  }
}

/** Identifiers are ASCII, on which "latin1" (windows-1252) decoding is the identity. */
const latin1 = new TextDecoder("latin1");

/**
 * Decode ASCII bytes `[start, end)` to a string. Identifiers are ASCII by construction (the translator checks).
 * TextDecoder makes a flat string; building one by `+=` makes a rope that the first charCodeAt must flatten
 * (measured: 260 ns against 450 ns for a 14-char id read twice, as the output encoder does).
 */
export function asciiString(bytes: Uint8Array, start: number, end: number): string {
  return latin1.decode(bytes.subarray(start, end));
}
