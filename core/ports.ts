/**
 * Ports: what a durable shard needs from storage, declared here so the core depends on no adapter. The file
 * implementations live in adapters/journal-file and adapters/snapshot-file; a hot standby or a replicated journal
 * later implements the same interfaces.
 */

/** A journal record as stored: its first sequence, how many commands it holds, and its bytes (journal-codec.ts). */
export interface StoredRecord {
  firstSequence: number;
  commandCount: number;
  bytes: Uint8Array;
}

/** The append-only command log. Records are appended in sequence order with no gaps. */
export interface Journal {
  /**
   * Append one record and make it durable per the journal's fsync policy before resolving. Rejects with a
   * JournalUnavailableError when the disk refuses; the journal then holds exactly the records acknowledged
   * before, and accepts appends again once the disk is back.
   */
  append(record: Uint8Array, firstSequence: number, commandCount: number): Promise<void>;
  /** Every record whose commands end after `afterSequence`, in order. */
  replay(afterSequence: number): AsyncIterable<StoredRecord>;
  /** The last sequence on disk (0 when empty). */
  lastSequence(): number;
  /** Delete whole segments that hold only sequences <= `sequence` (covered by a snapshot). */
  compact(sequence: number): Promise<void>;
  close(): Promise<void>;
}

/** Where snapshots are kept. */
export interface SnapshotStore {
  /**
   * Store a snapshot taken after `sequence`, atomically; keeps only the newest few. `bytes` is the caller's again
   * once the promise settles (the shard reuses the memory for its next snapshot): copy whatever is kept in memory.
   */
  save(sequence: number, bytes: Uint8Array): Promise<void>;
  /** Sequences of the stored snapshots, newest first. */
  list(): Promise<number[]>;
  /** The bytes of the snapshot taken after `sequence`. */
  load(sequence: number): Promise<Uint8Array>;
}

/** The journal or disk cannot take writes now (ENOSPC, EIO, EACCES...). Nothing acknowledged is affected. */
export class JournalUnavailableError extends Error {
  override name = "JournalUnavailableError";
}

/** Stored data is damaged before the tail: the shard must not start. Names the file and offset. */
export class JournalCorruptError extends Error {
  override name = "JournalCorruptError";
  constructor(
    readonly file: string,
    readonly offset: number,
    message: string,
  ) {
    super(`${file} at offset ${offset}: ${message}`);
  }
}
