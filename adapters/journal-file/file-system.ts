/**
 * The few file-system operations the file journal uses, as an interface, so tests can put a shim in front of the
 * real disk (count fsyncs, fail the Nth write with ENOSPC) without touching the journal's code. The default,
 * `nodeFileSystem`, is node:fs/promises, which Bun, Deno and Node all provide.
 */
import * as fs from "node:fs/promises";
import { syncDirectory as syncDirectoryNode } from "../sync-directory.ts";

/** The FileHandle operations the journal uses. node:fs/promises' FileHandle satisfies it as it is. */
export interface JournalFileHandle {
  /** Reads up to `length` bytes at file `position` into `buffer[offset..]`. */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** Writes `buffer[offset, offset + length)` at file `position` (pwrite: the handle's own offset is not used). */
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  /** fdatasync: the data and the metadata needed to read it back (the file's size) reach the disk. */
  datasync(): Promise<void>;
  /** fsync: the data and all metadata. */
  sync(): Promise<void>;
  /** ftruncate. */
  truncate(length: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

/** The directory and file operations the journal uses. */
export interface JournalFileSystem {
  /** Opens a file: "r" to read, "r+" to read and write an existing file, "w+" to create (or empty) one. */
  open(path: string, flags: "r" | "r+" | "w+"): Promise<JournalFileHandle>;
  /** Names of the entries in a directory. */
  readdir(path: string): Promise<string[]>;
  /** Creates a directory and its parents; no error when it exists. */
  mkdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Makes the directory's entries (files created, renamed or deleted in it) durable. */
  syncDirectory(path: string): Promise<void>;
}


/** The real disk, through node:fs/promises. */
export const nodeFileSystem: JournalFileSystem = {
  open: (path, flags) => fs.open(path, flags),
  readdir: (path) => fs.readdir(path),
  mkdir: async (path) => {
    await fs.mkdir(path, { recursive: true });
  },
  unlink: (path) => fs.unlink(path),
  syncDirectory: syncDirectoryNode,
};
