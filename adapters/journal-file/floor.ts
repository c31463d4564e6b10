/**
 * The journal floor: a file `outputs.floor` in the journal directory holding the oldest sequence an output relay
 * may still need (core/outputs.ts). The relay writes it; the shard reads it before compacting (ShardOptions
 * .journalFloor), so segments the outputs have not consumed are never deleted, even when the relay runs in
 * another process or is down. Remove the file when a data directory's outputs are retired for good.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../atomic-file.ts";

export const JOURNAL_FLOOR_FILE = "outputs.floor";

/** Record that the journal must be kept after `sequence`. */
export async function writeJournalFloor(journalDirectory: string, sequence: number): Promise<void> {
  await writeFileAtomic(join(journalDirectory, JOURNAL_FLOOR_FILE), `${sequence}\n`);
}

/**
 * Outputs are configured for this journal: unless a relay has already recorded its floor, record 0 (keep every
 * record). Call before the shard opens. Without it the shard compacts freely until the relay first writes its
 * floor, and a relay that starts late (a separate process, a slow sink, a sink added later) finds the records it
 * needs deleted and stops.
 */
export async function keepJournalForOutputs(journalDirectory: string): Promise<void> {
  if ((await readFileIfExists(join(journalDirectory, JOURNAL_FLOOR_FILE))) !== undefined) return;
  await mkdir(journalDirectory, { recursive: true });
  await writeJournalFloor(journalDirectory, 0);
}

/** The recorded floor; +Infinity when there is none (no relay has ever run here). Throws on a damaged file. */
export async function readJournalFloor(journalDirectory: string): Promise<number> {
  const path = join(journalDirectory, JOURNAL_FLOOR_FILE);
  const text = await readFileIfExists(path);
  if (text === undefined) return Number.POSITIVE_INFINITY;
  const sequence = Number(text.trim());
  if (!Number.isSafeInteger(sequence) || sequence < 0) throw new Error(`${path} does not hold a sequence: ${JSON.stringify(text)}`);
  return sequence;
}
