/**
 * The Kafka sink's cursor file: one JSON document, `{"<shard>": <last delivered sequence>, ...}`, replaced
 * atomically and durably by adapters/atomic-file.ts (write `<file>.tmp`, fsync, rename, fsync the directory), so
 * after a crash the file holds the old document or the new one, never a torn one. A leftover `.tmp` is from an
 * interrupted write and is ignored: the file it was meant to replace still holds the last cursor written whole.
 */
import { readFileIfExists, writeFileAtomic } from "../atomic-file.ts";

/** The cursor file exists but is not a cursor document (or cannot be read or written). */
export class KafkaCursorFileError extends Error {
  override name = "KafkaCursorFileError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The cursors in `path`, by shard; empty when the file does not exist yet. */
export async function readCursorFile(path: string): Promise<Map<number, number>> {
  let text: string | undefined;
  try {
    text = await readFileIfExists(path);
  } catch (error) {
    throw new KafkaCursorFileError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return text === undefined ? new Map() : parseCursors(path, text);
}

function parseCursors(path: string, text: string): Map<number, number> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new KafkaCursorFileError(`${path} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new KafkaCursorFileError(`${path} is not a JSON object of shard: sequence`);
  }
  const cursors = new Map<number, number>();
  for (const [key, value] of Object.entries(document)) {
    const shard = /^(0|[1-9][0-9]{0,9})$/.test(key) ? Number(key) : NaN;
    if (!Number.isSafeInteger(shard) || !Number.isSafeInteger(value) || (value as number) < 0) {
      throw new KafkaCursorFileError(`${path}: "${key}": ${JSON.stringify(value)} is not a shard and a sequence`);
    }
    cursors.set(shard, value as number);
  }
  return cursors;
}

/** Replaces `path` with `cursors`, atomically and durably. One write at a time per file. */
export async function writeCursorFile(path: string, cursors: ReadonlyMap<number, number>): Promise<void> {
  const document: Record<string, number> = {};
  for (const [shard, sequence] of [...cursors].sort((a, b) => a[0] - b[0])) document[shard] = sequence;
  await writeFileAtomic(path, `${JSON.stringify(document)}\n`);
}
