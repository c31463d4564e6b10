/**
 * The idempotency window's keys: a first-in first-out ring of (partner, command id) entries with a hash index
 * built for that order. Every command adds the newest entry and (once the window is full) forgets the oldest, so
 * a general table pays a random cache miss and a backward shift per command just to delete. This index never
 * deletes: a slot remembers which insertion it holds, and an entry that has left the window is simply no longer
 * live there. Such stale slots are reused by later insertions into their bucket and cleared by a slow sweep.
 *
 * Layout: buckets of one 64-byte cache line, 16 int32: [overflow count, unused, 7 x (hash, tag)].
 * - tag = 0: the slot was never used (or was swept); else `insertion & TAG_MASK | TAG_USED`, where `insertion`
 *   counts every push since the table was made. A slot is live when its insertion is one of the newest `count`.
 * - overflow count (as in F14): how many indexed entries whose home bucket is this one or an earlier one sit in a
 *   later bucket; a lookup moves on to the next bucket only while it is non-zero. With ~4 entries per 7-slot
 *   bucket, ~95% of lookups read one cache line and stop.
 * Costs 16 B per entry of capacity (64 B per bucket, one bucket per 4 entries): 16 MiB at 2^20 entries.
 */
import { assert } from "./assert.ts";
import { KeyStore } from "./key-table.ts";

/** Int32s per bucket: one cache line. */
const BUCKET_INTS = 16;
/** Index of the first slot's hash in a bucket; slot s is at SLOT_BASE + 2s (hash) and SLOT_BASE + 2s + 1 (tag). */
const SLOT_BASE = 2;
/** Slots per bucket. */
const BUCKET_SLOTS = 7;
/** Entries per bucket the index is sized for (mean load 4/7). */
const BUCKET_ENTRIES_TARGET = 4;
/** Insertion numbers are kept modulo 2^31 in tags. */
const TAG_MASK = 0x7fffffff;
const TAG_USED = 0x80000000 | 0;
/** One bucket is swept (its stale slots cleared) every this many pushes. */
const SWEEP_PUSHES = 16;

/** A FIFO of keys: `push` the newest, `shift` the oldest, `find` any live one. */
export class WindowTable extends KeyStore {
  /** The oldest live entry. */
  head = 0;
  /** Pushes so far, modulo 2^31 (the tag of the next push). */
  private pushed = 0;
  private readonly index: Int32Array;
  private readonly bucketMask: number;
  /** The next bucket the sweep clears. */
  private sweepBucket = 0;

  constructor(capacity: number) {
    super(capacity);
    let buckets = 1;
    while (buckets * BUCKET_ENTRIES_TARGET < capacity) buckets *= 2;
    // A stale tag must be swept before the 2^31 insertion counter comes round to it again.
    assert(buckets * SWEEP_PUSHES + capacity < 2 ** 30, "window table too large for its 31-bit insertion tags");
    this.index = new Int32Array(buckets * BUCKET_INTS);
    this.bucketMask = buckets - 1;
  }

  /** How many pushes ago (0 = the newest) the slot with `tag` was pushed; >= count when it is not live. */
  private age(tag: number): number {
    return (this.pushed - 1 - (tag & TAG_MASK)) & TAG_MASK;
  }

  /** The live entry holding this key, or -1. */
  find(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
    const index = this.index;
    const mask = this.bucketMask;
    const ownerLength = (owner << 8) | byteLength;
    const wordCount = (byteLength + 3) >>> 2;
    let bucket = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const base = bucket * BUCKET_INTS;
      for (let slot = base + SLOT_BASE; slot < base + BUCKET_INTS; slot += 2) {
        if (index[slot] !== hash) continue;
        const tag = index[slot + 1];
        if (tag === 0) continue;
        const age = this.age(tag);
        if (age >= this.count) continue;
        const entry = this.entryAt(age);
        if (this.ownerLength[entry] === ownerLength && this.wordsEqual(entry, words, wordStart, 0, wordCount)) return entry;
      }
      if (index[base] === 0) return -1;
      bucket = (bucket + 1) & mask;
    }
    return -1;
  }

  /** Where the next push goes: (head + count) mod capacity. */
  private tail(): number {
    const entry = this.head + this.count;
    return entry < this.capacity ? entry : entry - this.capacity;
  }

  /** The entry pushed `age` pushes ago (age < count). */
  private entryAt(age: number): number {
    const entry = this.head + this.count - 1 - age;
    return entry < this.capacity ? entry : entry - this.capacity;
  }

  /** Read the bucket a hash starts at (prefetch: the caller only wants the cache line). */
  probe(hash: number): number {
    return this.index[(hash & this.bucketMask) * BUCKET_INTS];
  }

  /** Store the key as the newest entry and index it; returns the entry. The key must not be live; room must be made. */
  push(owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): number {
    assert(this.count < this.capacity, "window table full: shift before pushing");
    const entry = this.tail();
    this.store(entry, owner, words, wordStart, byteLength);
    this.place(hash, this.pushed | TAG_USED);
    this.pushed = (this.pushed + 1) & TAG_MASK;
    this.count++;
    if ((this.pushed & (SWEEP_PUSHES - 1)) === 0) this.sweep();
    return entry;
  }

  /** Put (hash, tag) into the first free or stale slot from the hash's home bucket on. */
  private place(hash: number, tag: number): void {
    const index = this.index;
    const mask = this.bucketMask;
    let bucket = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const base = bucket * BUCKET_INTS;
      for (let slot = base + SLOT_BASE; slot < base + BUCKET_INTS; slot += 2) {
        const old = index[slot + 1];
        if (old !== 0 && this.age(old) < this.count) continue;
        if (old !== 0) this.unlink(index[slot], bucket);
        index[slot] = hash;
        index[slot + 1] = tag;
        return;
      }
      index[base]++;
      bucket = (bucket + 1) & mask;
    }
    assert(false, "window table index has no free slot");
  }

  /** A stale entry of `hash` leaves `bucket`: the buckets it overflowed past count one entry fewer. */
  private unlink(hash: number, bucket: number): void {
    const mask = this.bucketMask;
    for (let passed = hash & mask, steps = 0; passed !== bucket && steps <= mask; passed = (passed + 1) & mask, steps++) {
      this.index[passed * BUCKET_INTS]--;
    }
  }

  /** Clear the stale slots of the next bucket in turn, so no tag lives long enough for the counter to wrap onto it. */
  private sweep(): void {
    const index = this.index;
    const bucket = this.sweepBucket;
    this.sweepBucket = (bucket + 1) & this.bucketMask;
    const base = bucket * BUCKET_INTS;
    for (let slot = base + SLOT_BASE; slot < base + BUCKET_INTS; slot += 2) {
      const tag = index[slot + 1];
      if (tag === 0 || this.age(tag) < this.count) continue;
      this.unlink(index[slot], bucket);
      index[slot] = 0;
      index[slot + 1] = 0;
    }
  }

  /** Forget the oldest entry; returns it. Its index slot goes stale by itself. */
  shift(): number {
    assert(this.count > 0, "window table empty");
    const entry = this.head;
    this.keyLength[entry] = 0;
    this.head = entry + 1 === this.capacity ? 0 : entry + 1;
    this.count--;
    return entry;
  }

  /**
   * Check the index against its definition (for tests; O(buckets x probe length)): every bucket's overflow count
   * equals the number of used slots whose probe path from their home bucket passes it.
   */
  verifyIndex(): void {
    const index = this.index;
    const mask = this.bucketMask;
    const expected = new Int32Array(mask + 1);
    for (let bucket = 0; bucket <= mask; bucket++) {
      const base = bucket * BUCKET_INTS;
      for (let slot = base + SLOT_BASE; slot < base + BUCKET_INTS; slot += 2) {
        if (index[slot + 1] === 0) continue;
        for (let passed = index[slot] & mask, steps = 0; passed !== bucket && steps <= mask; passed = (passed + 1) & mask, steps++) {
          expected[passed]++;
        }
      }
    }
    for (let bucket = 0; bucket <= mask; bucket++) {
      assert(index[bucket * BUCKET_INTS] === expected[bucket], `window table bucket ${bucket} overflow count is wrong`);
    }
  }

  /** Snapshot restore: push unless the key is live; `entry` must be where the push goes. */
  insertIfAbsent(entry: number, owner: number, words: Uint32Array, wordStart: number, byteLength: number, hash: number): boolean {
    assert(entry === this.tail(), "window entries are restored oldest first into a fresh table");
    if (this.find(owner, words, wordStart, byteLength, hash) >= 0) return false;
    this.push(owner, words, wordStart, byteLength, hash);
    return true;
  }
}
