/**
 * In-memory JournalTail and OutputSink for relay tests. The sink can be told to fail its next deliveries (like a
 * broker outage) and to "lose" its acknowledgement after storing (the ambiguous failure), so resends are tested.
 */
import type { JournalTail, OutputEvent, OutputSink } from "../outputs.ts";
import type { StoredRecord } from "../ports.ts";
import type { MemoryJournal } from "./memory-ports.ts";

/** Tails a MemoryJournal; `next` polls it every millisecond. */
export class MemoryJournalTail implements JournalTail {
  private nextSequence: number;
  private closed = false;

  constructor(
    private readonly journal: MemoryJournal,
    afterSequence: number,
  ) {
    this.nextSequence = afterSequence + 1;
  }

  async next(): Promise<StoredRecord[] | null> {
    while (!this.closed) {
      const records = this.journal.records.filter((r) => r.firstSequence + r.commandCount - 1 >= this.nextSequence);
      if (records.length > 0) {
        const last = records[records.length - 1];
        this.nextSequence = last.firstSequence + last.commandCount;
        return records;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return null;
  }

  lastSequence(): number {
    return this.journal.lastSequence();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Keeps every delivered event (resends included) and a cursor per shard. */
export class MemorySink implements OutputSink {
  readonly received: OutputEvent[] = [];
  readonly cursors = new Map<number, number>();
  /** Reject this many next deliveries without storing anything. */
  failNext = 0;
  /** Never settle the next this-many deliveries (a driver stuck on a dead connection). */
  hangNext = 0;
  /** Store the next this-many deliveries, then reject as if the acknowledgement was lost. */
  loseAckNext = 0;
  deliveries = 0;

  constructor(readonly name = "memory") {}

  async cursor(shard: number): Promise<number> {
    return this.cursors.get(shard) ?? 0;
  }

  async deliver(shard: number, events: readonly OutputEvent[]): Promise<void> {
    this.deliveries++;
    if (this.hangNext > 0) {
      this.hangNext--;
      return new Promise<void>(() => {});
    }
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("simulated outage");
    }
    const cursor = this.cursors.get(shard) ?? 0;
    if (events[0].seq > cursor + 1) throw new Error(`gap: events start at ${events[0].seq}, the sink is at ${cursor}`);
    this.received.push(...events);
    this.cursors.set(shard, events[events.length - 1].seq);
    if (this.loseAckNext > 0) {
      this.loseAckNext--;
      throw new Error("simulated lost acknowledgement");
    }
  }

  async close(): Promise<void> {}
}
