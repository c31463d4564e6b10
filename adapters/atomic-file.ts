/**
 * Small files replaced atomically and durably: write `<path>.tmp`, fsync it, rename it over `path`, fsync the
 * directory. After a crash the file holds the old or the new contents, never a mix. For cursors and floors (a few
 * bytes, written often); snapshots have their own chunked writer (adapters/snapshot-file).
 */
import * as fs from "node:fs/promises";
import { dirname } from "node:path";
import { syncDirectory } from "./sync-directory.ts";

/** Replace `path` with `text`, atomically and durably. */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmpPath = `${path}.tmp`;
  const handle = await fs.open(tmpPath, "w");
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmpPath, path);
  await syncDirectory(dirname(path));
}

/** The contents of `path`, or undefined when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw error;
  }
}
