/**
 * The few file-system operations the file journal uses, as an interface, so tests can put a shim in front of the
 * real disk (count fsyncs, fail the Nth write with ENOSPC) without touching the journal's code. The default,
 * `nodeFileSystem`, is node:fs/promises, which Bun, Deno and Node all provide.
 */
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import { assert } from "../../core/assert.ts";
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

/** How a file is opened: "r" to read, "r+" to read and write an existing file, "w+" to create (or empty) one. */
export type OpenFlags = "r" | "r+" | "w+";

/**
 * Whether this platform opens files `O_DSYNC` (Linux, macOS: `fs.constants.O_DSYNC`; not Windows): every write
 * returns only once its data, and the metadata needed to read it back, are on the disk, as if fdatasync followed.
 */
export const DSYNC_SUPPORTED = typeof fsConstants.O_DSYNC === "number";

/** The directory and file operations the journal uses. */
export interface JournalFileSystem {
  /**
   * Opens a file. With `dsync` (only where DSYNC_SUPPORTED, and not with "r") each write is durable when it
   * resolves: one system call where write + fdatasync are two, so a durable write is one trip to the thread pool.
   */
  open(path: string, flags: OpenFlags, options?: { dsync?: boolean }): Promise<JournalFileHandle>;
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
  open: (path, flags, options) => {
    if (options?.dsync !== true) return fs.open(path, flags);
    assert(DSYNC_SUPPORTED && flags !== "r", "O_DSYNC is for writing, where the platform has it");
    const create = flags === "w+" ? fsConstants.O_CREAT | fsConstants.O_TRUNC : 0;
    return fs.open(path, fsConstants.O_RDWR | create | fsConstants.O_DSYNC, 0o644);
  },
  readdir: (path) => fs.readdir(path),
  mkdir: async (path) => {
    await fs.mkdir(path, { recursive: true });
  },
  unlink: (path) => fs.unlink(path),
  syncDirectory: syncDirectoryNode,
};
