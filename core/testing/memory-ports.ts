/**
 * In-memory Journal and SnapshotStore for tests of the shard logic: what is "durable" is what was appended.
 * `failNext` makes the next appends reject like a full disk.
 */
import { JournalUnavailableError, type Journal, type SnapshotStore, type StoredRecord } from "../ports.ts";

/** A journal in an array. Copies each record, as a disk would. */
export class MemoryJournal implements Journal {
  readonly records: StoredRecord[] = [];
  /** Reject this many next appends with JournalUnavailableError. */
  failNext = 0;
  appends = 0;
  /** While set, an append waits for it (a slow disk) before it succeeds or fails. */
  gate: Promise<void> | undefined;

  async append(record: Uint8Array, firstSequence: number, commandCount: number): Promise<void> {
    await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new JournalUnavailableError("simulated ENOSPC");
    }
    if (firstSequence !== this.lastSequence() + 1) throw new Error(`gap: ${firstSequence} after ${this.lastSequence()}`);
    this.appends++;
    this.records.push({ firstSequence, commandCount, bytes: record.slice() });
  }

  async *replay(afterSequence: number): AsyncIterable<StoredRecord> {
    for (const record of this.records) {
      if (record.firstSequence + record.commandCount - 1 > afterSequence) yield record;
    }
  }

  lastSequence(): number {
    const last = this.records[this.records.length - 1];
    return last === undefined ? 0 : last.firstSequence + last.commandCount - 1;
  }

  async compact(sequence: number): Promise<void> {
    while (this.records.length > 1 && this.records[0].firstSequence + this.records[0].commandCount - 1 <= sequence) {
      this.records.shift();
    }
  }

  async close(): Promise<void> {}
}

/** A MemoryJournal that never compacts, so a test can derive every event from the start after snapshots. */
export class KeepingJournal extends MemoryJournal {
  override async compact(): Promise<void> {}
}

/** Snapshots in a Map, newest first on list(). */
export class MemorySnapshotStore implements SnapshotStore {
  readonly snapshots = new Map<number, Uint8Array>();

  async save(sequence: number, bytes: Uint8Array): Promise<void> {
    this.snapshots.set(sequence, bytes.slice());
  }

  async list(): Promise<number[]> {
    return [...this.snapshots.keys()].sort((a, b) => b - a);
  }

  async load(sequence: number): Promise<Uint8Array> {
    const bytes = this.snapshots.get(sequence);
    if (bytes === undefined) throw new Error(`no snapshot ${sequence}`);
    return bytes;
  }
}
