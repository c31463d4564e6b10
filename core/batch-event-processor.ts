/**
 * The BatchEventProcessor: drains everything the sequencer has published in one batch and hands each slot to its
 * EventHandler with `endOfBatch` on the last one, so handlers can flush I/O once per batch.
 */
import type { RingBuffer, Sequence } from "./ring-buffer.ts";

/** Receives each published slot in sequence order. */
export interface EventHandler {
  /** Called once per batch before its first event (the Disruptor's BatchStartAware), e.g. to prefetch. */
  onBatchStart?(ring: RingBuffer, first: number, last: number): void;
  onEvent(ring: RingBuffer, sequence: number, endOfBatch: boolean): void;
}

/**
 * Runs an EventHandler over a ring, up to what its SequenceBarrier allows: the sequencer's cursor for an in-memory
 * engine, the journaler's sequence for a durable shard (LMAX: the business logic waits for the journal).
 */
export class BatchEventProcessor {
  constructor(
    readonly ring: RingBuffer,
    /** The sequence this processor may not pass. */
    private barrier: Sequence,
    readonly handler: EventHandler,
    /** The last sequence this processor has finished with. */
    readonly sequence: Sequence,
  ) {}

  /** Wait on another sequence from now on (a durable shard switches from the producer's cursor to the journal's). */
  waitFor(barrier: Sequence): void {
    this.barrier = barrier;
  }

  /** Process every slot the barrier allows; returns how many. Bounded by the ring size. */
  processAvailable(): number {
    const available = this.barrier.value;
    const first = this.sequence.value + 1;
    if (first <= available) this.handler.onBatchStart?.(this.ring, first, available);
    for (let sequence = first; sequence <= available; sequence++) {
      this.handler.onEvent(this.ring, sequence, sequence === available);
    }
    this.sequence.value = available;
    return available - first + 1;
  }
}
