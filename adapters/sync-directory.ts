/**
 * fsync of a directory, so that a file created, renamed or deleted in it is durable. Shared by the file adapters
 * (journal-file, snapshot-file); node:fs/promises, which Bun, Deno and Node all provide.
 */
import * as fs from "node:fs/promises";

/**
 * Error codes with which opening or fsyncing a directory fails where the platform cannot fsync directories at all:
 * Windows refuses to open one (EISDIR, EPERM), and some file systems (network, FUSE) refuse fsync on one
 * (EINVAL). There the entry is as durable as the platform can make it, so skipping is the only option.
 */
const DIRECTORY_SYNC_UNSUPPORTED = new Set(["EISDIR", "EPERM", "EINVAL"]);

/** fsync a directory through node:fs/promises, skipping platforms that cannot (see DIRECTORY_SYNC_UNSUPPORTED). */
export async function syncDirectory(path: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, "r");
  } catch (error) {
    if (isUnsupportedDirectorySync(error)) return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    if (!isUnsupportedDirectorySync(error)) throw error;
  } finally {
    await handle.close();
  }
}

function isUnsupportedDirectorySync(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && DIRECTORY_SYNC_UNSUPPORTED.has(code);
}
