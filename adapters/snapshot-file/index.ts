/**
 * FileSnapshotStore: snapshots as files in one directory, `<sequence, 20 digits>.snapshot`, written atomically.
 *
 * save() writes `<name>.snapshot.tmp`, fsyncs it, renames it over `<name>.snapshot` and fsyncs the directory, so
 * after a crash a snapshot file is either whole or absent; a leftover `.tmp` is never listed and is deleted on
 * open. Then all but the newest `keep` snapshots are deleted. The store does not look inside the bytes: the core
 * frames a snapshot with its own CRC32C (core/snapshot.ts), and the shard falls back to an older snapshot when the
 * newest does not decode.
 *
 * Concurrency: one save at a time (asserted); the shard saves from one place.
 */
import * as fs from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../../core/assert.ts";
import type { SnapshotStore } from "../../core/ports.ts";
import { syncDirectory } from "../sync-directory.ts";

/** Default snapshots kept. Costs that many snapshots' bytes of disk per shard; more gives more fallbacks. */
export const SNAPSHOTS_KEEP_DEFAULT = 3;
/** Most snapshots kept. Each costs a snapshot's bytes of disk (up to a few hundred MiB for a full shard). */
export const SNAPSHOTS_KEEP_MAX = 100;
/** Bytes per write when saving: 4 MiB, so no single write holds the event loop long. */
const SNAPSHOT_WRITE_BYTES = 4 << 20;

/** Options of FileSnapshotStore.open. */
export interface FileSnapshotStoreOptions {
  /** Directory of the snapshot files (created when missing). One store per directory. */
  directory: string;
  /** How many snapshots to keep, newest first (default SNAPSHOTS_KEEP_DEFAULT). */
  keep?: number;
  /** Where cleanup lines go (default console.warn). */
  log?: (line: string) => void;
  /**
   * Open another component's store to read it (an output relay reading the shard's snapshots): no cleanup of
   * `.tmp` files (the owner may be writing one), and save() is refused.
   */
  readOnly?: boolean;
}

const SNAPSHOT_NAME = /^(\d{20})\.snapshot$/;
const TMP_SUFFIX = ".snapshot.tmp";

/** The file name of the snapshot taken after `sequence`. */
export function snapshotName(sequence: number): string {
  return `${String(sequence).padStart(20, "0")}.snapshot`;
}

/** Snapshots in files. Create with `FileSnapshotStore.open`. */
export class FileSnapshotStore implements SnapshotStore {
  private saving = false;

  private constructor(
    private readonly directory: string,
    private readonly keep: number,
    private readonly log: (line: string) => void,
    private readonly readOnly: boolean,
  ) {}

  /** Opens (or creates) the store in `options.directory`, deleting `.tmp` files left by interrupted saves. */
  static async open(options: FileSnapshotStoreOptions): Promise<FileSnapshotStore> {
    const keep = options.keep ?? SNAPSHOTS_KEEP_DEFAULT;
    const log = options.log ?? ((line: string) => console.warn(line));
    assert(Number.isSafeInteger(keep) && keep >= 1 && keep <= SNAPSHOTS_KEEP_MAX, `keep ${keep} out of range`);
    await fs.mkdir(options.directory, { recursive: true });
    const readOnly = options.readOnly === true;
    for (const name of readOnly ? [] : await fs.readdir(options.directory)) {
      if (!name.endsWith(TMP_SUFFIX)) continue;
      await fs.unlink(join(options.directory, name));
      log(`deleted stale ${join(options.directory, name)} (an interrupted snapshot save)`);
    }
    return new FileSnapshotStore(options.directory, keep, log, readOnly);
  }

  async save(sequence: number, bytes: Uint8Array): Promise<void> {
    assert(Number.isSafeInteger(sequence) && sequence >= 0, "sequence must be an integer >= 0");
    assert(!this.saving, "two saves in flight");
    assert(!this.readOnly, `${this.directory} was opened read only`);
    this.saving = true;
    try {
      const path = join(this.directory, snapshotName(sequence));
      const tmpPath = `${path}.tmp`;
      await this.writeTmp(tmpPath, bytes);
      await fs.rename(tmpPath, path);
      await syncDirectory(this.directory);
      await this.prune();
    } finally {
      this.saving = false;
    }
  }

  /** Writes and fsyncs the temporary file; on failure deletes it and rethrows. */
  private async writeTmp(tmpPath: string, bytes: Uint8Array): Promise<void> {
    try {
      const handle = await fs.open(tmpPath, "w");
      try {
        // In pieces: one write of a 100+ MB snapshot can hold the event loop (and so the shard) for tens of ms.
        for (let offset = 0; offset < bytes.length; offset += SNAPSHOT_WRITE_BYTES) {
          const piece = bytes.subarray(offset, Math.min(bytes.length, offset + SNAPSHOT_WRITE_BYTES));
          let written = 0;
          while (written < piece.length) {
            const { bytesWritten } = await handle.write(piece, written, piece.length - written, offset + written);
            assert(bytesWritten > 0, "a write that makes no progress");
            written += bytesWritten;
          }
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await this.deleteFailedTmp(tmpPath);
      throw error;
    }
  }

  private async deleteFailedTmp(tmpPath: string): Promise<void> {
    try {
      await fs.unlink(tmpPath);
    } catch (error) {
      // Open deletes it next time; the save's own error is the one to report.
      this.log(`cannot delete ${tmpPath} after a failed save: ${error instanceof Error ? error.message : error}`);
    }
  }

  /** Deletes all but the newest `keep` snapshots. */
  private async prune(): Promise<void> {
    const sequences = await this.list();
    for (let index = this.keep; index < sequences.length; index++) {
      await fs.unlink(join(this.directory, snapshotName(sequences[index])));
    }
    // A delete that a crash undoes only leaves an extra old snapshot, which the next prune removes: no fsync.
  }

  async list(): Promise<number[]> {
    const sequences: number[] = [];
    for (const name of await fs.readdir(this.directory)) {
      const match = SNAPSHOT_NAME.exec(name);
      if (match === null) continue;
      const sequence = Number(match[1]);
      if (Number.isSafeInteger(sequence)) sequences.push(sequence);
    }
    return sequences.sort((a, b) => b - a);
  }

  async load(sequence: number): Promise<Uint8Array> {
    assert(Number.isSafeInteger(sequence) && sequence >= 0, "sequence must be an integer >= 0");
    const buffer = await fs.readFile(join(this.directory, snapshotName(sequence)));
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
}

