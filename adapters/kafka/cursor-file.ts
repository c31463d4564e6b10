/**
 * The Kafka sink's cursor file: one JSON document, `{"topic": "<topic>", "clusterId": "<id>", "cursors": {"<shard>":
 * <last delivered sequence>, ...}}`, replaced atomically and durably by adapters/atomic-file.ts (write `<file>.tmp`,
 * fsync, rename, fsync the directory), so after a crash the file holds the old document or the new one, never a
 * torn one. A leftover `.tmp` is from an interrupted write and is ignored: the file it was meant to replace still
 * holds the last cursor written whole.
 *
 * The cursors are positions in one destination, so the file records which: the topic, and the cluster's id when the
 * sink knows it (`clusterId` is left out otherwise). A file of the first version, `{"<shard>": <sequence>, ...}`,
 * records none; it is read as the configured destination's and rewritten with it.
 */
import { readFileIfExists, writeFileAtomic } from "../atomic-file.ts";

/** The cursor file exists but is not a cursor document (or cannot be read or written). */
export class KafkaCursorFileError extends Error {
  override name = "KafkaCursorFileError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Where the cursors point: a topic, and the cluster it is on when known. */
export interface KafkaDestination {
  topic: string;
  clusterId?: string;
}

/** What a cursor file holds. `destination` is undefined for a file of the first version, which records none. */
export interface CursorDocument {
  destination: KafkaDestination | undefined;
  cursors: Map<number, number>;
}

/** The document in `path`; undefined when the file does not exist yet. */
export async function readCursorFile(path: string): Promise<CursorDocument | undefined> {
  let text: string | undefined;
  try {
    text = await readFileIfExists(path);
  } catch (error) {
    throw new KafkaCursorFileError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return text === undefined ? undefined : parseDocument(path, text);
}

function parseDocument(path: string, text: string): CursorDocument {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new KafkaCursorFileError(`${path} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!isObject(document)) throw new KafkaCursorFileError(`${path} is not a JSON object of a topic and cursors`);
  // The first version: shard keys only.
  if (!("cursors" in document)) return { destination: undefined, cursors: parseCursors(path, document) };
  const { topic, clusterId, cursors } = document;
  const unknown = Object.keys(document).filter((key) => key !== "topic" && key !== "clusterId" && key !== "cursors");
  if (unknown.length > 0) throw new KafkaCursorFileError(`${path}: unknown fields ${unknown.join(", ")}`);
  if (typeof topic !== "string" || topic.length === 0) throw new KafkaCursorFileError(`${path}: "topic" is not a topic name`);
  if (clusterId !== undefined && (typeof clusterId !== "string" || clusterId.length === 0)) {
    throw new KafkaCursorFileError(`${path}: "clusterId" is not a cluster id`);
  }
  if (!isObject(cursors)) throw new KafkaCursorFileError(`${path}: "cursors" is not a JSON object of shard: sequence`);
  return { destination: clusterId === undefined ? { topic } : { topic, clusterId }, cursors: parseCursors(path, cursors) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseCursors(path: string, object: Record<string, unknown>): Map<number, number> {
  const cursors = new Map<number, number>();
  for (const [key, value] of Object.entries(object)) {
    const shard = /^(0|[1-9][0-9]{0,9})$/.test(key) ? Number(key) : NaN;
    if (!Number.isSafeInteger(shard) || !Number.isSafeInteger(value) || (value as number) < 0) {
      throw new KafkaCursorFileError(`${path}: "${key}": ${JSON.stringify(value)} is not a shard and a sequence`);
    }
    cursors.set(shard, value as number);
  }
  return cursors;
}

/** Replaces `path` with `destination` and `cursors`, atomically and durably. One write at a time per file. */
export async function writeCursorFile(path: string, destination: KafkaDestination, cursors: ReadonlyMap<number, number>): Promise<void> {
  const byShard: Record<string, number> = {};
  for (const [shard, sequence] of [...cursors].sort((a, b) => a[0] - b[0])) byShard[shard] = sequence;
  const document = destination.clusterId === undefined
    ? { topic: destination.topic, cursors: byShard }
    : { topic: destination.topic, clusterId: destination.clusterId, cursors: byShard };
  await writeFileAtomic(path, `${JSON.stringify(document)}\n`);
}
