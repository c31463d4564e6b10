/**
 * The ring buffer and its sequencer, in the Disruptor's words. Slots are preallocated columns of typed arrays
 * carved out of ONE ArrayBuffer, so a later transport thread and shard worker can share the same ring through a
 * SharedArrayBuffer without changing the layout. A slot holds a command (written in place by the
 * EventTranslator) and, after processing, its result. index = sequence & mask; sequences start at 1.
 */
import { assert } from "./assert.ts";
import { CURRENCY_BYTES_MAX, KEY_BYTES_MAX, RING_SLOTS_MAX } from "./limits.ts";

assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "slot text words are little-endian ASCII: a little-endian platform is required");

/** Text fields of a slot: ASCII, zero-padded to whole 32-bit words. */
export const Field = { id: 0, partner: 1, account: 2, target: 3, currency: 4 } as const;
/** Text fields per slot. */
export const FIELD_COUNT = 5;
/** Byte offset of each text field inside a slot's text region. Multiples of 4 so words can be read in place. */
export const FIELD_OFFSET = [0, KEY_BYTES_MAX, 2 * KEY_BYTES_MAX, 3 * KEY_BYTES_MAX, 4 * KEY_BYTES_MAX] as const;
/** Text bytes per slot: four identifiers and one currency. */
export const SLOT_TEXT_BYTES = 4 * KEY_BYTES_MAX + CURRENCY_BYTES_MAX;
/** The same, in words. */
export const SLOT_TEXT_WORDS = SLOT_TEXT_BYTES / 4;

/** Bits of `flags`: which optional fields the command carries. */
export const Flag = { amount: 1, currency: 2, expiry: 4, id: 8 } as const;

/** Bytes per slot, all columns together (~340 B). */
export const SLOT_BYTES = 1 + 2 + 1 + FIELD_COUNT + 8 * 3 + SLOT_TEXT_BYTES + 1 + 1 + 8 * 4 + 4;

/** A counter that only grows. */
export class Sequence {
  constructor(public value: number) {}
}

/** Preallocated, power-of-two slots. Producers write through the EventTranslator; the processor reads. */
export class RingBuffer {
  readonly size: number;
  readonly mask: number;
  /** The memory every column lives in: an ArrayBuffer today, a SharedArrayBuffer when a ring spans threads. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  // Command columns.
  readonly type: Uint8Array;
  /** On a group's first slot: the group's command count (1 for a single command); 0 on the group's other slots. */
  readonly groupSize: Uint16Array;
  readonly flags: Uint8Array;
  /** FIELD_COUNT byte lengths per slot. */
  readonly fieldLength: Uint8Array;
  /** amount, or overdraftLimit for openAccount / setOverdraftLimit. Any number: the ledger validates it. */
  readonly amount: Float64Array;
  /** expiresInMs for hold. */
  readonly expiresInMs: Float64Array;
  /** `amount` and `expiresInMs` as their little-endian 32-bit halves (2 per slot each): fingerprints read bits. */
  readonly amountWords: Int32Array;
  readonly expiresInMsWords: Int32Array;
  /** The batch's stamped time. */
  readonly timeMs: Float64Array;
  /** SLOT_TEXT_BYTES per slot, as bytes (for writing) and words (for hashing and comparing). */
  readonly text: Uint8Array;
  readonly textWords: Uint32Array;
  // Result columns.
  readonly code: Uint8Array;
  readonly duplicate: Uint8Array;
  /** The sequence the result belongs to (the original's, for a duplicate). */
  readonly resultSeq: Float64Array;
  /** The (source) account after the command; NaN when there is no such account. */
  readonly balance: Float64Array;
  readonly held: Float64Array;
  readonly available: Float64Array;
  /** The ledger's index of the account the balances are of; -1 when none (and for a duplicate's stored result). */
  readonly account: Int32Array;

  constructor(size: number, buffer?: ArrayBuffer | SharedArrayBuffer) {
    assert(Number.isInteger(size) && size >= 2 && size <= RING_SLOTS_MAX, "ring size out of range");
    assert((size & (size - 1)) === 0, "ring size must be a power of two");
    this.size = size;
    this.mask = size - 1;
    const bytes = RingBuffer.bytesFor(size);
    this.buffer = buffer ?? new ArrayBuffer(bytes);
    assert(this.buffer.byteLength >= bytes, "ring buffer memory too small");
    // Widest columns first keeps every view aligned.
    let offset = 0;
    const f64 = () => {
      const view = new Float64Array(this.buffer, offset, size);
      offset += 8 * size;
      return view;
    };
    this.amountWords = new Int32Array(this.buffer, offset, 2 * size);
    this.amount = f64();
    this.expiresInMsWords = new Int32Array(this.buffer, offset, 2 * size);
    this.expiresInMs = f64();
    this.timeMs = f64();
    this.resultSeq = f64();
    this.balance = f64();
    this.held = f64();
    this.available = f64();
    this.account = new Int32Array(this.buffer, offset, size);
    offset += 4 * size;
    this.textWords = new Uint32Array(this.buffer, offset, size * SLOT_TEXT_WORDS);
    this.text = new Uint8Array(this.buffer, offset, size * SLOT_TEXT_BYTES);
    offset += size * SLOT_TEXT_BYTES;
    this.groupSize = new Uint16Array(this.buffer, offset, size);
    offset += 2 * size;
    const u8 = (count: number) => {
      const view = new Uint8Array(this.buffer, offset, count);
      offset += count;
      return view;
    };
    this.type = u8(size);
    this.flags = u8(size);
    this.fieldLength = u8(size * FIELD_COUNT);
    this.code = u8(size);
    this.duplicate = u8(size);
  }

  /** Bytes of memory a ring of `size` slots needs. */
  static bytesFor(size: number): number {
    return size * SLOT_BYTES;
  }
}

/**
 * Hands out sequences to one producer and never lets it lap the slowest consumer (`gating`: the processor's
 * sequence, or a later stage's that reads the slots after it, see `gateOn`). Claim with `tryNext`, write the
 * slots, then `publish`; a claim whose translation failed is given back with `cancel`.
 */
export class Sequencer {
  /** The highest published sequence: everything up to it may be processed. */
  readonly cursor = new Sequence(0);
  /** The highest claimed sequence. */
  private claimed = 0;

  constructor(
    readonly bufferSize: number,
    private gating: Sequence,
  ) {}

  /**
   * Gate on `sequence` from now on: a slot is free again only once it has passed it. It must not be ahead of the
   * current gating sequence (a stage after the processor, e.g. the durable shard's release of results).
   */
  gateOn(sequence: Sequence): void {
    assert(sequence.value <= this.gating.value, "a new gating sequence must not be ahead of the old one");
    this.gating = sequence;
  }

  /** Start both counters after `sequence` (a restored snapshot's last sequence). */
  reset(sequence: number): void {
    this.cursor.value = sequence;
    this.claimed = sequence;
    this.gating.value = sequence;
  }

  /** Free slots right now. */
  remainingCapacity(): number {
    return this.bufferSize - (this.claimed - this.gating.value);
  }

  /** Claim `count` slots; returns the highest claimed sequence, or -1 when the ring is full (back-pressure). */
  tryNext(count: number): number {
    assert(count >= 1 && count <= this.bufferSize, "claim count out of range");
    if (this.claimed + count - this.gating.value > this.bufferSize) return -1;
    this.claimed += count;
    return this.claimed;
  }

  /** Give back the newest claim of `count` slots, ending at `high`, before it was published. */
  cancel(high: number, count: number): void {
    assert(high === this.claimed && high - count >= this.cursor.value, "only an unpublished newest claim can be cancelled");
    this.claimed -= count;
  }

  /** Make everything up to `high` visible to the processor. */
  publish(high: number): void {
    assert(high <= this.claimed && high >= this.cursor.value, "publish out of order");
    this.cursor.value = high;
  }
}
