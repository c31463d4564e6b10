/**
 * Keys of (owner, ASCII identifier) in preallocated typed arrays, and an open-addressing hash index over them.
 * The LMAX lesson: purpose-built collections instead of Map<string>. Keys live as zero-padded 32-bit words at
 * `entry * KEY_WORDS` (KeyStore), so lookups hash and compare words straight out of ring slots.
 *
 * KeyTable (accounts, holds, partners, currencies): linear probing at load <= 0.5, backward-shift deletion (no
 * tombstones), every loop bounded by the index size. A slot is 32 bytes, [entry + 1 (0: free), hash, owner << 8 |
 * length, the key's first 4 words, 0], so a key of up to 16 bytes is compared without leaving the slot: one cache
 * miss, not two. The idempotency window has its own index, core/window-table.ts, built for first-in first-out eviction.
 */
import { assert } from "./assert.ts";
import { hashWords } from "./hash.ts";
import { KEY_BYTES_MAX } from "./limits.ts";

/** Words per stored key. */
export const KEY_WORDS = KEY_BYTES_MAX / 4;

/** An index slot holds its entry + 1, so 0 is a free slot and a fresh (zeroed) index needs no fill. */
const EMPTY = 0;
/** What find returns for a key that is not there. */
const NOT_FOUND = -1;
/** Int32s per index slot: entry + 1, hash, owner << 8 | key length, 4 words of key, padding. */
const INLINE_SLOT_INTS = 8;
/** Owners are packed with the key length into one int32: owner << 8 | length. */
export const OWNER_LIMIT = 1 << 23;
/** Key words kept inline in the index slot. */
const INLINE_WORDS = 4;

/**
 * Fixed-capacity key storage: entry numbers are chosen by the owner of the rows the keys belong to. Subclasses
 * index the keys; lookups compare the stored words.
 */
export abstract class KeyStore {
  /** Most entries. */
  readonly capacity: number;
  /** Stored keys, KEY_WORDS per entry, zero-padded. */
  readonly keyWords: Uint32Array;
  /** The same keys as bytes (for copying in and out; lookups use the words). */
  readonly keyBytes: Uint8Array;
  /** Stored key lengths in bytes; 0 = entry not in use. */
  readonly keyLength: Uint8Array;
  /** Owner of each entry (a partner index; 0 where keys have no owner). Part of the key. */
  readonly owner: Uint32Array;
  /** owner << 8 | key length of each entry (what an index verifies on a hash match). */
  protected readonly ownerLength: Int32Array;
  /** Entries in use. */
  count = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 1, "key table capacity must be a positive integer");
    this.capacity = capacity;
    this.ownerLength = new Int32Array(capacity);
    this.keyWords = new Uint32Array(capacity * KEY_WORDS);
    this.keyBytes = new Uint8Array(this.keyWords.buffer);
    this.keyLength = new Uint8Array(capacity);
    this.owner = new Uint32Array(capacity);
  }

  /** The hash `find` and `insert` expect for a key of `byteLength` bytes at `words[wordStart]`. */
  static hash(owner: number, words: Uint32Array, wordStart: number, byteLength: number): number {
    return hashWords(words, wordStart, (byteLength + 3) >>> 2, owner + 0x9747b28c);
  }

  /** The entry holding this key, or -1. */
  abstract find(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number;

  /** Store and index the key at `entry` unless the key is already present (snapshot restore checks for repeats). */
  abstract insertIfAbsent(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): boolean;

  /** Copy the key into `entry` (which must be free); returns its first word index. */
  protected store(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number): number {
    assert(entry >= 0 && entry < this.capacity, "key table entry out of range");
    assert(this.keyLength[entry] === 0, "key table entry already in use");
    assert(byteLength >= 1 && byteLength <= KEY_BYTES_MAX, "key length out of range");
    assert(owner >= 0 && owner < OWNER_LIMIT, "key table owner out of range");
    const base = entry * KEY_WORDS;
    const wordCount = (byteLength + 3) >>> 2;
    const stored = this.keyWords;
    // Only the key's own words: lookups compare lengths first, then ceil(length / 4) words, so stale words beyond
    // a shorter key are never read.
    for (let i = 0; i < wordCount; i++) stored[base + i] = words[wordStart + i];
    this.keyLength[entry] = byteLength;
    this.owner[entry] = owner;
    this.ownerLength[entry] = (owner << 8) | byteLength;
    return base;
  }

  /** Whether `entry` holds exactly the key of `byteLength` bytes at `words[wordStart..]` (whatever its owner). */
  holds(entry: number, words: Uint32Array, wordStart: number, byteLength: number): boolean {
    return this.keyLength[entry] === byteLength && this.wordsEqual(entry, words, wordStart, 0, (byteLength + 3) >>> 2);
  }

  /** Compare words `from..wordCount` of the stored key of `entry` with the probe key. */
  protected wordsEqual(entry: number, words: Uint32Array, wordStart: number, from: number, wordCount: number): boolean {
    const stored = this.keyWords;
    const base = entry * KEY_WORDS;
    for (let i = from; i < wordCount; i++) {
      if (stored[base + i] !== words[wordStart + i]) return false;
    }
    return true;
  }

  /** The stored key of `entry` as a string (for snapshots, reads and outputs; not for the hot path). */
  keyString(entry: number): string {
    const base = entry * KEY_BYTES_MAX;
    return asciiString(this.keyBytes, base, base + this.keyLength[entry]);
  }
}

/** A key index for lookups that mostly hit, with removal of any entry. */
export class KeyTable extends KeyStore {
  /** The hash each entry was inserted with (removal finds its slot without rehashing the key). */
  readonly entryHash: Int32Array;
  /** Index slots, INLINE_SLOT_INTS int32 each: [entry + 1 (EMPTY = free), hash, ...]. */
  private readonly index: Int32Array;
  /** Index slots - 1 (slot count is a power of two). */
  private readonly indexMask: number;

  constructor(capacity: number) {
    super(capacity);
    this.entryHash = new Int32Array(capacity);
    let size = 2;
    while (size < capacity * 2) size *= 2;
    // Zeroed memory is an empty index: pages of it that no key reaches are never touched.
    this.index = new Int32Array(size * INLINE_SLOT_INTS);
    this.indexMask = size - 1;
  }

  /** The entry holding this key, or -1. */
  find(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
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
      const stored = index[slot];
      if (stored === EMPTY) return NOT_FOUND;
      const entry = stored - 1;
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
    return NOT_FOUND;
  }

  /** Read the index slot a hash starts probing at (prefetch: the caller only wants the cache line). */
  probe(hash: number): number {
    return this.index[(hash & this.indexMask) * INLINE_SLOT_INTS];
  }

  /** Insert unless the key is already present (snapshot restore checks for repeats this way). */
  insertIfAbsent(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): boolean {
    if (this.find(owner, words, wordStart, byteLength, hash) >= 0) return false;
    this.insert(entry, owner, words, wordStart, byteLength, hash);
    return true;
  }

  /** Store the key at `entry` and index it. The key must not be present and the entry must be free. */
  insert(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): void {
    assert(this.count < this.capacity, "key table full");
    const base = this.store(entry, owner, words, wordStart, byteLength);
    this.entryHash[entry] = hash;
    const wordCount = (byteLength + 3) >>> 2;
    const index = this.index;
    const mask = this.indexMask;
    let position = hash & mask;
    for (let probes = 0; probes <= mask && index[position * INLINE_SLOT_INTS] !== EMPTY; probes++) position = (position + 1) & mask;
    const slot = position * INLINE_SLOT_INTS;
    assert(index[slot] === EMPTY, "key table index has no empty position");
    index[slot] = entry + 1;
    index[slot + 1] = hash;
    index[slot + 2] = (owner << 8) | byteLength;
    const stored = this.keyWords;
    for (let i = 0; i < INLINE_WORDS; i++) index[slot + 3 + i] = i < wordCount ? stored[base + i] | 0 : 0;
    this.count++;
  }

  /** Remove `entry` from the index (backward-shift deletion keeps every probe chain unbroken). */
  remove(entry: number): void {
    assert(this.keyLength[entry] !== 0, "key table entry not in use");
    const index = this.index;
    const mask = this.indexMask;
    let hole = this.entryHash[entry] & mask;
    let probes = 0;
    for (; probes <= mask; probes++) {
      const found = index[hole * INLINE_SLOT_INTS];
      if (found === entry + 1 || found === EMPTY) break;
      hole = (hole + 1) & mask;
    }
    assert(index[hole * INLINE_SLOT_INTS] === entry + 1, "key table entry missing from its probe chain");
    index[hole * INLINE_SLOT_INTS] = EMPTY;
    let position = hole;
    for (probes = 0; probes <= mask; probes++) {
      position = (position + 1) & mask;
      const slot = position * INLINE_SLOT_INTS;
      if (index[slot] === EMPTY) break;
      const home = index[slot + 1] & mask;
      // The slot may fill the hole only when its home is not cyclically inside (hole, position].
      const homeInside = hole <= position ? home > hole && home <= position : home > hole || home <= position;
      if (!homeInside) {
        const target = hole * INLINE_SLOT_INTS;
        for (let i = 0; i < INLINE_SLOT_INTS; i++) index[target + i] = index[slot + i];
        index[slot] = EMPTY;
        hole = position;
      }
    }
    this.keyLength[entry] = 0;
    this.count--;
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
