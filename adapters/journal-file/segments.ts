/**
 * Segment files of a FileJournal: named by the first sequence they hold (20 digits, `.journal`), listed oldest
 * first. Shared by the journal and the readers beside it (the tail, the write meter).
 */
import { join } from "node:path";
import { JournalCorruptError } from "../../core/ports.ts";
import type { JournalFileSystem } from "./file-system.ts";

/** A segment file: its first sequence and path. */
export interface Segment {
  firstSequence: number;
  path: string;
}

const SEGMENT_NAME = /^(\d{20})\.journal$/;
const SEGMENT_EXTENSION = ".journal";

/** The file name of the segment that starts at `firstSequence`. */
export function segmentName(firstSequence: number): string {
  return `${String(firstSequence).padStart(20, "0")}${SEGMENT_EXTENSION}`;
}

/** The segment files in `directory`, oldest first. A `.journal` file with any other name is an error. */
export async function listSegments(fileSystem: JournalFileSystem, directory: string): Promise<Segment[]> {
  const names = (await fileSystem.readdir(directory)).filter((name) => name.endsWith(SEGMENT_EXTENSION)).sort();
  return names.map((name) => {
    const path = join(directory, name);
    const match = SEGMENT_NAME.exec(name);
    const firstSequence = match === null ? NaN : Number(match[1]);
    if (!Number.isSafeInteger(firstSequence) || firstSequence < 1) {
      throw new JournalCorruptError(path, 0, "not a segment name (20 digits of a first sequence >= 1)");
    }
    return { firstSequence, path };
  });
}

/** `listSegments`, or none when the directory does not exist yet (a reader that started before the shard). */
export async function listSegmentsIfAny(fileSystem: JournalFileSystem, directory: string): Promise<Segment[]> {
  try {
    return await listSegments(fileSystem, directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}
