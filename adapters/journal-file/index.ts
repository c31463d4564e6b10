/**
 * FileJournal: the shard's command log as append-only segment files in one directory.
 *
 * Files. A segment is named by the first sequence it holds, zero-padded to 20 digits, so that lexical order is
 * sequence order: `00000000000000000001.journal`, `00000000000000052001.journal`, ... Segments follow each other
 * without gaps: a segment's first sequence is the previous segment's last plus one. Only the last segment is
 * written to; it may be empty (a crash right after it was created).
 *
 * Frames. A segment is a sequence of frames, one per record (one per append), little-endian, no padding:
 *
 *   offset  size  field
 *        0     4  u32 bodyLength     bytes of the body (at most FRAME_BODY_BYTES_MAX)
 *        4     4  u32 commandCount   sequences the record covers (1..FRAME_COMMANDS_MAX)
 *        8     8  f64 firstSequence  the record's first sequence (a safe integer >= 1)
 *       16     4  u32 bodyCrc        CRC32C of the body
 *       20     4  u32 headerCrc      CRC32C of bytes [0, 20), so it covers bodyCrc and with it the whole frame
 *       24     n  body               the record's bytes, opaque here (core/journal-codec.ts)
 *
 * The header has its own CRC so a damaged length is never trusted: reading can tell "this frame is torn" (a valid
 * header whose body runs past the end of the file) from "this header is garbage", and can search the rest of a
 * segment for valid frames to decide whether damage is a torn tail or corruption inside the journal. The frame
 * has no version: the body carries the record version (journal-codec.ts); a new frame layout would get a new
 * file extension.
 *
 * Recovery (open). Every frame of every segment is verified: header CRC, body CRC, and that sequences follow on
 * within and across segments. A damaged frame in the last segment after which no valid frame header starts
 * anywhere in that file is a torn tail (a write cut short by a crash, or a failed append whose truncation did not
 * happen): it is truncated away and logged. Any other damage - a bad frame followed by a valid one, a bad frame in
 * an earlier segment, a sequence gap or overlap - throws JournalCorruptError naming the file and offset; nothing
 * is ever skipped. A CRC mismatch in the final frame of the last segment is indistinguishable from a torn write,
 * so it is truncated too.
 *
 * Durability, per `fsync`:
 * - "batch": append resolves once the frame is durable. An acknowledged record survives a crash or power failure.
 *   Where the platform has O_DSYNC (Linux, macOS) the segment is opened with it and a frame is one durable write;
 *   elsewhere it is a write and an fdatasync. One system call lets the write run entirely in the thread pool while
 *   the caller's thread goes on (the shard applies the record meanwhile): with two, the fdatasync could start only
 *   once the caller's thread came back to the event loop. bench:durable measured ~25% more commands/s with it.
 * - "interval": append resolves after the write; fdatasync runs at most every fsyncIntervalMs. Acknowledged records
 *   survive a process crash (they are in the OS page cache) but up to fsyncIntervalMs of them (plus one fsync) can
 *   be lost on power failure or OS crash. Such a loss may also leave damage before the tail (pages of later frames
 *   reached the disk, earlier ones did not), which open then reports as JournalCorruptError.
 * - "never": no fsync at all. For benchmarks only; opening logs a warning.
 * A failed fsync is never retried as if nothing happened: in "batch" mode the record is not acknowledged and is
 * truncated away; in "interval" mode the next append retries the fsync and rejects while it fails. (After a failed
 * fsync Linux may drop the dirty pages, so records acknowledged since the last good fsync may be lost anyway.)
 *
 * Disk errors. When a write or fsync throws (ENOSPC, EIO, EACCES...), the segment is truncated back to the end of
 * the last acknowledged record (and fsynced) before append rejects with JournalUnavailableError, so the rejected
 * frame, which may have landed whole, neither comes back after a crash nor stays between good ones. While
 * truncation fails, every append retries it first and rejects.
 *
 * Concurrency: the caller serialises appends (asserted) and does not compact a segment it is replaying.
 */
import { join } from "node:path";
import { clearTimeout, setTimeout as setTimer } from "node:timers";
import { assert } from "../../core/assert.ts";
import { crc32c } from "../../core/crc32c.ts";
import { JournalCorruptError, JournalUnavailableError, type Journal, type StoredRecord } from "../../core/ports.ts";
import { DSYNC_SUPPORTED, nodeFileSystem, type JournalFileHandle, type JournalFileSystem } from "./file-system.ts";
import { encodeFrame, FRAME_BODY_BYTES_MAX, FRAME_COMMANDS_MAX, FRAME_HEADER_BYTES } from "./frame.ts";
import { FRAME_DAMAGED, FRAME_NEED_MORE, FRAME_READY, SEGMENT_END, SegmentReader } from "./segment-reader.ts";
import { listSegments, segmentName, type Segment } from "./segments.ts";

export { FRAME_BODY_BYTES_MAX, FRAME_COMMANDS_MAX, FRAME_HEADER_BYTES } from "./frame.ts";
export { DSYNC_SUPPORTED, nodeFileSystem, type JournalFileHandle, type JournalFileSystem, type OpenFlags } from "./file-system.ts";
export { listSegments, listSegmentsIfAny, segmentName, type Segment } from "./segments.ts";
// Readers for a process beside the shard (an output relay): the tail, the write meter, the journal floor.
export { FileJournalTail, type FileJournalTailOptions } from "./tail.ts";
export { JournalWriteMeter } from "./meter.ts";
export { keepJournalForOutputs, readJournalFloor, writeJournalFloor } from "./floor.ts";

/**
 * Default segment size. A segment is deleted only when all of it is covered by a snapshot, so this much disk per
 * shard stays in use after a snapshot; opening verifies every segment, at ~600 MB/s (CRC32C in JavaScript).
 */
export const SEGMENT_BYTES_DEFAULT = 64 << 20;
/** Default fsync interval in "interval" mode: up to this much acknowledged work can be lost on power failure. */
export const FSYNC_INTERVAL_MS_DEFAULT = 100;
/** Longest fsync interval accepted. */
export const FSYNC_INTERVAL_MS_MAX = 60_000;
/** First size of the frame buffer; it grows to the largest frame written (FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX). */
const FRAME_BUFFER_BYTES_INITIAL = 64 << 10;

/** How appends are made durable; see the top of this file. */
export type FsyncPolicy = "batch" | "interval" | "never";

/** Options of FileJournal.open. */
export interface FileJournalOptions {
  /** Directory of the segment files (created when missing). One journal per directory. */
  directory: string;
  fsync: FsyncPolicy;
  /** "interval" mode: most milliseconds between fsyncs (default FSYNC_INTERVAL_MS_DEFAULT). */
  fsyncIntervalMs?: number;
  /** A segment is closed and a new one started before it would exceed this (default SEGMENT_BYTES_DEFAULT). */
  segmentBytesMax?: number;
  /** Where recovery and disk-error lines go (default console.warn). */
  log?: (line: string) => void;
  /** The file system (default node:fs/promises); tests put a shim here. */
  fileSystem?: JournalFileSystem;
}

/** The segment being appended to. */
interface OpenSegment extends Segment {
  handle: JournalFileHandle;
  /** End of the last acknowledged frame: where the next frame is written. */
  goodBytes: number;
}

/** What scanning a segment found. */
interface SegmentScan {
  /** The sequence the next record must start with. */
  nextSequence: number;
  /** End of the last valid frame. */
  goodBytes: number;
  /** Bytes after goodBytes: a torn tail to truncate (last segment only; 0 otherwise). */
  tornBytes: number;
}


/** The append-only command log in segment files. Create with `FileJournal.open`. */
export class FileJournal implements Journal {
  /** Every segment file, oldest first; the last one is `current`'s. */
  private readonly segments: Segment[];
  private current: OpenSegment | null;
  private last: number;
  private frameBuffer = new Uint8Array(FRAME_BUFFER_BYTES_INITIAL);
  private frameView = new DataView(this.frameBuffer.buffer);
  private appending = false;
  private compacting = false;
  private closed = false;
  /** A failed append may have left part of a frame after `current.goodBytes`: cut it before writing again. */
  private truncatePending = false;
  /** Set when a rotation started: the next append finishes it even if its record would fit the old segment. */
  private rotationPending = false;
  /** A rotation or close is swapping handles: the interval timer must not fsync now. */
  private segmentChanging = false;
  /** "interval" mode: written since the last fsync started. */
  private dirty = false;
  private syncTimer: ReturnType<typeof setTimer> | null = null;
  private syncInFlight: Promise<void> | null = null;
  /** "interval" mode: the last background fsync failed with this; the next append retries it. */
  private syncError: unknown = null;

  /** Segments are opened O_DSYNC: a write is durable when it resolves, no fdatasync after it. */
  private readonly dsync: boolean;

  private constructor(
    private readonly directory: string,
    private readonly fsync: FsyncPolicy,
    private readonly fsyncIntervalMs: number,
    private readonly segmentBytesMax: number,
    private readonly log: (line: string) => void,
    private readonly fileSystem: JournalFileSystem,
    segments: Segment[],
    current: OpenSegment | null,
    last: number,
  ) {
    this.segments = segments;
    this.current = current;
    this.last = last;
    this.dsync = writesDurable(fsync);
  }

  /**
   * Opens (or creates) the journal in `options.directory`: verifies every segment, truncates a torn tail of the
   * last one, and throws JournalCorruptError on any other damage.
   */
  static async open(options: FileJournalOptions): Promise<FileJournal> {
    const fsyncIntervalMs = options.fsyncIntervalMs ?? FSYNC_INTERVAL_MS_DEFAULT;
    const segmentBytesMax = options.segmentBytesMax ?? SEGMENT_BYTES_DEFAULT;
    const log = options.log ?? ((line: string) => console.warn(line));
    const fileSystem = options.fileSystem ?? nodeFileSystem;
    assert(["batch", "interval", "never"].includes(options.fsync), `unknown fsync policy ${options.fsync}`);
    assert(Number.isSafeInteger(fsyncIntervalMs), "fsyncIntervalMs must be an integer");
    assert(fsyncIntervalMs >= 1 && fsyncIntervalMs <= FSYNC_INTERVAL_MS_MAX, "fsyncIntervalMs out of range");
    assert(Number.isSafeInteger(segmentBytesMax) && segmentBytesMax >= 1, "segmentBytesMax must be a positive integer");
    if (options.fsync === "never") {
      log(`journal ${options.directory}: fsync is off ("never"): acknowledged records can be lost on power failure `
        + `or OS crash. For benchmarks only.`);
    }
    await fileSystem.mkdir(options.directory);
    const segments = await listSegments(fileSystem, options.directory);
    let nextSequence = segments.length === 0 ? 1 : segments[0].firstSequence;
    let scan: SegmentScan = { nextSequence, goodBytes: 0, tornBytes: 0 };
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index];
      if (segment.firstSequence !== nextSequence) {
        throw new JournalCorruptError(segment.path, 0,
          `segment starts at sequence ${segment.firstSequence}, but the previous one ends at ${nextSequence - 1}`);
      }
      scan = await scanSegment(fileSystem, segment, index === segments.length - 1);
      nextSequence = scan.nextSequence;
    }
    const current = segments.length === 0
      ? null
      : await openLastSegment(fileSystem, segments[segments.length - 1], scan, options.fsync, log);
    return new FileJournal(options.directory, options.fsync, fsyncIntervalMs, segmentBytesMax, log, fileSystem,
      segments, current, nextSequence - 1);
  }

  lastSequence(): number {
    return this.last;
  }

  async append(record: Uint8Array, firstSequence: number, commandCount: number): Promise<void> {
    assert(!this.closed, "append after close");
    assert(!this.appending, "two appends in flight: the caller serialises appends");
    assert(firstSequence === this.last + 1, `append at sequence ${firstSequence} after ${this.last}: a gap or overlap`);
    assert(Number.isSafeInteger(commandCount), "commandCount must be an integer");
    assert(commandCount >= 1 && commandCount <= FRAME_COMMANDS_MAX, `commandCount ${commandCount} out of range`);
    assert(record.length <= FRAME_BODY_BYTES_MAX, `record of ${record.length} bytes is too large`);
    this.appending = true;
    try {
      const frameBytes = FRAME_HEADER_BYTES + record.length;
      // Nothing to prepare (the usual case): the write starts before append first returns to its caller.
      if (this.preparing(frameBytes)) await this.prepareAppend(firstSequence, frameBytes);
      this.ensureFrameBuffer(frameBytes);
      encodeFrame(this.frameBuffer, this.frameView, record, firstSequence, commandCount);
      await this.writeFrame(frameBytes, firstSequence);
      this.last = firstSequence + commandCount - 1;
    } finally {
      this.appending = false;
    }
  }

  /** Whether prepareAppend has work to do before a frame of `frameBytes` is written. */
  private preparing(frameBytes: number): boolean {
    const current = this.current;
    return this.syncError !== null || this.truncatePending || current === null || this.rotationDue(current, frameBytes);
  }

  /** The current segment is to be closed before a frame of `frameBytes`: it would pass the size limit, or failed. */
  private rotationDue(current: OpenSegment, frameBytes: number): boolean {
    return this.rotationPending || (current.goodBytes > 0 && current.goodBytes + frameBytes > this.segmentBytesMax);
  }

  /** Gets the last segment ready for a frame of `frameBytes`: retries what failed before, rotates when full. */
  private async prepareAppend(firstSequence: number, frameBytes: number): Promise<void> {
    if (this.syncError !== null) await this.retrySync();
    if (this.truncatePending) await this.truncateToGood();
    const current = this.current;
    if (current === null) {
      const segment = await this.createSegment(firstSequence);
      this.segments.push({ firstSequence, path: segment.path });
      this.current = segment;
    } else if (this.rotationDue(current, frameBytes)) {
      await this.rotate(current, firstSequence);
    }
  }

  /** Writes the encoded frame at the end of the acknowledged bytes, then fsyncs per policy. */
  private async writeFrame(frameBytes: number, firstSequence: number): Promise<void> {
    const segment = this.current;
    assert(segment !== null, "no segment to write to");
    try {
      await writeAll(segment.handle, this.frameBuffer, frameBytes, segment.goodBytes);
      if (this.fsync === "batch" && !this.dsync) await segment.handle.datasync();
    } catch (error) {
      this.truncatePending = true;
      // The frame may have landed whole (an O_DSYNC write, or a write whose fdatasync failed): cut it now, before the
      // caller hears the record failed, or a crash before the next append would bring back a record whose commands
      // it was told were never applied. When the cut fails too, the next append retries it first.
      try {
        await this.truncateToGood();
      } catch (truncateError) {
        this.log(`${errorMessage(truncateError)}; the next append retries it`);
      }
      throw new JournalUnavailableError(
        `append of sequence ${firstSequence} to ${segment.path} failed: ${errorMessage(error)}`, { cause: error });
    }
    segment.goodBytes += frameBytes;
    if (this.fsync === "interval") {
      this.dirty = true;
      this.scheduleSync();
    }
  }

  /**
   * Cuts the current segment back to its acknowledged end after a failed append, durably (the failed frame's bytes
   * may be on the disk already).
   */
  private async truncateToGood(): Promise<void> {
    const segment = this.current;
    assert(segment !== null, "truncation pending without a segment");
    this.segmentChanging = true;
    try {
      if (this.syncInFlight !== null) await this.syncInFlight;
      await segment.handle.truncate(segment.goodBytes);
      if (this.fsync !== "never") await segment.handle.datasync();
    } catch (error) {
      throw new JournalUnavailableError(
        `cannot truncate ${segment.path} back to ${segment.goodBytes} bytes after a failed append: ${errorMessage(error)}`,
        { cause: error });
    } finally {
      this.segmentChanging = false;
    }
    this.truncatePending = false;
    this.log(`truncated ${segment.path} back to ${segment.goodBytes} bytes after a failed append`);
  }

  /** fsyncs the old segment, creates the next one starting at `firstSequence`, and switches to it. */
  private async rotate(old: OpenSegment, firstSequence: number): Promise<void> {
    this.rotationPending = true;
    this.segmentChanging = true;
    try {
      if (this.syncInFlight !== null) await this.syncInFlight;
      if (this.fsync !== "never") await this.syncOrThrow(old, "closing the segment");
      const next = await this.createSegment(firstSequence);
      this.segments.push({ firstSequence, path: next.path });
      this.current = next;
      this.dirty = false;
    } finally {
      this.segmentChanging = false;
    }
    this.rotationPending = false;
    try {
      await old.handle.close();
    } catch (error) {
      // Its data is already fsynced; a failed close only leaks the descriptor.
      this.log(`closing ${old.path} failed: ${errorMessage(error)}`);
    }
  }

  /**
   * Creates the segment file for `firstSequence` and makes its name durable. "w+" empties a file left by an
   * earlier attempt that failed after creating it: no acknowledged record has a sequence >= firstSequence.
   */
  private async createSegment(firstSequence: number): Promise<OpenSegment> {
    const path = join(this.directory, segmentName(firstSequence));
    let handle: JournalFileHandle;
    try {
      handle = await this.fileSystem.open(path, "w+", { dsync: this.dsync });
    } catch (error) {
      throw new JournalUnavailableError(`cannot create ${path}: ${errorMessage(error)}`, { cause: error });
    }
    try {
      await this.fileSystem.syncDirectory(this.directory);
    } catch (error) {
      await this.closeQuietly(handle, path);
      throw new JournalUnavailableError(`cannot fsync ${this.directory} after creating ${path}: ${errorMessage(error)}`,
        { cause: error });
    }
    return { firstSequence, path, handle, goodBytes: 0 };
  }

  private async syncOrThrow(segment: OpenSegment, doing: string): Promise<void> {
    try {
      await segment.handle.datasync();
    } catch (error) {
      throw new JournalUnavailableError(`fsync of ${segment.path} failed while ${doing}: ${errorMessage(error)}`,
        { cause: error });
    }
  }

  /** "interval" mode: a background fsync failed; fsync again before accepting more. */
  private async retrySync(): Promise<void> {
    const segment = this.current;
    assert(segment !== null, "fsync error without a segment");
    await this.syncOrThrow(segment, "retrying a failed background fsync");
    this.syncError = null;
    this.log(`fsync of ${segment.path} succeeded again`);
  }

  /** "interval" mode: arms the timer unless it is armed. Unref'd: it never keeps the process alive. */
  private scheduleSync(): void {
    if (this.syncTimer !== null || this.closed) return;
    this.syncTimer = setTimer(this.syncTimerCallback, this.fsyncIntervalMs);
    this.syncTimer.unref();
  }

  private readonly syncTimerCallback = (): void => {
    this.syncTimer = null;
    if (this.closed || !this.dirty) return;
    if (this.segmentChanging || this.syncInFlight !== null) {
      // A rotation fsyncs the old segment itself, and an fsync still running may have started before the latest
      // writes: look again in an interval.
      this.scheduleSync();
      return;
    }
    const segment = this.current;
    assert(segment !== null, "dirty without a segment");
    this.dirty = false;
    this.syncInFlight = this.syncTimerCallbackSync(segment);
  };

  /** The timer's fsync. Never rejects: a failure is kept for the next append to retry and report. */
  private async syncTimerCallbackSync(segment: OpenSegment): Promise<void> {
    try {
      await segment.handle.datasync();
    } catch (error) {
      this.syncError = error;
      this.log(`background fsync of ${segment.path} failed, appends are refused until it succeeds: ${errorMessage(error)}`);
    } finally {
      this.syncInFlight = null;
    }
  }

  private ensureFrameBuffer(frameBytes: number): void {
    if (this.frameBuffer.length >= frameBytes) return;
    const bytes = Math.min(Math.max(frameBytes, 2 * this.frameBuffer.length), FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);
    this.frameBuffer = new Uint8Array(bytes);
    this.frameView = new DataView(this.frameBuffer.buffer);
  }

  replay(afterSequence: number): AsyncIterable<StoredRecord> {
    assert(Number.isSafeInteger(afterSequence) && afterSequence >= 0, "afterSequence must be an integer >= 0");
    const ranges: ReplaySegment[] = this.segments.map((segment) => ({ ...segment, endBytes: null }));
    if (this.current !== null) ranges[ranges.length - 1].endBytes = this.current.goodBytes;
    const fileSystem = this.fileSystem;
    const last = this.last;
    return {
      [Symbol.asyncIterator]: () => new ReplayIterator(fileSystem, ranges, afterSequence, last),
    };
  }

  async compact(sequence: number): Promise<void> {
    assert(Number.isSafeInteger(sequence) && sequence >= 0, "sequence must be an integer >= 0");
    assert(!this.compacting, "two compactions in flight");
    this.compacting = true;
    try {
      // Ends: each pass removes a segment. Oldest first, with a directory fsync after each delete, so a crash
      // leaves the newest segments (never a gap).
      while (this.segments.length > 1 && this.segments[1].firstSequence - 1 <= sequence) {
        const victim = this.segments[0];
        try {
          await this.fileSystem.unlink(victim.path);
        } catch (error) {
          throw new JournalUnavailableError(`cannot delete ${victim.path}: ${errorMessage(error)}`, { cause: error });
        }
        // The file is gone whatever the directory fsync says: forget it now, or every later compaction would try
        // to delete it again (ENOENT) and the journal would never shrink again.
        assert(this.segments[0] === victim, "segments changed at the front during compaction");
        this.segments.shift();
        try {
          await this.fileSystem.syncDirectory(this.directory);
        } catch (error) {
          throw new JournalUnavailableError(`cannot fsync ${this.directory} after deleting ${victim.path}: ${errorMessage(error)}`,
            { cause: error });
        }
      }
    } finally {
      this.compacting = false;
    }
  }

  async close(): Promise<void> {
    assert(!this.closed, "close twice");
    assert(!this.appending, "close with an append in flight");
    this.closed = true;
    if (this.syncTimer !== null) clearTimeout(this.syncTimer);
    this.syncTimer = null;
    if (this.syncInFlight !== null) await this.syncInFlight;
    const segment = this.current;
    if (segment === null) return;
    this.current = null;
    try {
      if (this.truncatePending) await segment.handle.truncate(segment.goodBytes);
      if (this.fsync !== "never") await segment.handle.datasync();
    } catch (error) {
      await this.closeQuietly(segment.handle, segment.path);
      throw new JournalUnavailableError(`cannot truncate or fsync ${segment.path} on close: ${errorMessage(error)}`, { cause: error });
    }
    await segment.handle.close();
  }

  /** Closes a handle on a path that is being abandoned because of another error, which is the one reported. */
  private async closeQuietly(handle: JournalFileHandle, path: string): Promise<void> {
    try {
      await handle.close();
    } catch (error) {
      this.log(`closing ${path} failed: ${errorMessage(error)}`);
    }
  }
}

/**
 * Verifies every frame of `segment`. Damage in the last segment with no valid frame after it is a torn tail,
 * returned as `tornBytes`; any other damage throws JournalCorruptError.
 */
async function scanSegment(fileSystem: JournalFileSystem, segment: Segment, isLast: boolean): Promise<SegmentScan> {
  const reader = await SegmentReader.open(fileSystem, segment.path, null, false);
  try {
    let nextSequence = segment.firstSequence;
    // Ends: each pass moves past a frame, reads at least one byte (refill), or returns.
    for (;;) {
      const status = reader.peek();
      if (status === SEGMENT_END) return { nextSequence, goodBytes: reader.frameOffset, tornBytes: 0 };
      if (status === FRAME_NEED_MORE) {
        if (await reader.refill()) continue;
        // Either fewer than a header's bytes are left, or a valid header's body runs past the end: this is the
        // file's last frame either way, so no frame can follow it.
        return await damagedFrame(reader, isLast, nextSequence, "the file ends inside a frame", false);
      }
      if (status === FRAME_DAMAGED) return await damagedFrame(reader, isLast, nextSequence, "frame header is damaged", true);
      assert(status === FRAME_READY, "unknown frame status");
      const header = reader.header;
      if (crc32c(reader.buffer, reader.bodyStart, reader.bodyEnd) !== header.bodyCrc) {
        return await damagedFrame(reader, isLast, nextSequence, "frame body checksum mismatch", true);
      }
      if (header.firstSequence !== nextSequence) {
        throw new JournalCorruptError(segment.path, reader.frameOffset,
          `frame starts at sequence ${header.firstSequence}, expected ${nextSequence}`);
      }
      nextSequence += header.commandCount;
      reader.advance();
    }
  } finally {
    await reader.close();
  }
}

/** Decides whether the bad frame at the reader's cursor is a torn tail (returned) or corruption (thrown). */
async function damagedFrame(
  reader: SegmentReader,
  isLast: boolean,
  nextSequence: number,
  problem: string,
  searchAfter: boolean,
): Promise<SegmentScan> {
  const offset = reader.frameOffset;
  if (!isLast) throw new JournalCorruptError(reader.path, offset, `${problem}, in a segment that is not the last`);
  const validAfter = searchAfter ? await reader.findValidHeaderAfter(offset) : -1;
  if (validAfter >= 0) {
    throw new JournalCorruptError(reader.path, offset, `${problem}, and a valid frame follows at offset ${validAfter}`);
  }
  return { nextSequence, goodBytes: offset, tornBytes: reader.endBytes - offset };
}

/** Whether segments are opened O_DSYNC under `fsync`: "batch" where the platform has it. */
function writesDurable(fsync: FsyncPolicy): boolean {
  return fsync === "batch" && DSYNC_SUPPORTED;
}

/** Opens the last segment for appending, truncating its torn tail (logged) if the scan found one. */
async function openLastSegment(
  fileSystem: JournalFileSystem,
  segment: Segment,
  scan: SegmentScan,
  fsync: FsyncPolicy,
  log: (line: string) => void,
): Promise<OpenSegment> {
  const handle = await fileSystem.open(segment.path, "r+", { dsync: writesDurable(fsync) });
  try {
    if (scan.tornBytes > 0) {
      await handle.truncate(scan.goodBytes);
      if (fsync !== "never") await handle.datasync();
      log(`truncated torn tail of ${segment.path} at offset ${scan.goodBytes} (${scan.tornBytes} bytes)`);
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  return { ...segment, handle, goodBytes: scan.goodBytes };
}

/** Writes `buffer[0, length)` at `position`; a short write continues where it stopped. */
async function writeAll(handle: JournalFileHandle, buffer: Uint8Array, length: number, position: number): Promise<void> {
  let written = 0;
  // Ends: each pass writes at least one byte or throws.
  while (written < length) {
    const { bytesWritten } = await handle.write(buffer, written, length - written, position + written);
    if (bytesWritten === 0) throw new Error(`write made no progress at offset ${position + written}`);
    written += bytesWritten;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A segment to replay, up to `endBytes` (null: to the end of the file). */
interface ReplaySegment extends Segment {
  endBytes: number | null;
}

const DONE: IteratorResult<StoredRecord> = { done: true, value: undefined };

/**
 * Replay's iterator. `next` hands out records that are already buffered without any I/O (a resolved promise);
 * only refills and segment changes take the async path. Open verified every frame's CRCs, and later frames are
 * this process's own writes, so replay checks only that header fields are in range and that sequences follow on:
 * it runs at memory speed instead of CRC speed (~600 MB/s in JavaScript).
 */
class ReplayIterator implements AsyncIterator<StoredRecord> {
  private reader: SegmentReader | null = null;
  private index: number;
  private nextSequence = 0;

  constructor(
    private readonly fileSystem: JournalFileSystem,
    private readonly segments: ReplaySegment[],
    private readonly afterSequence: number,
    private readonly lastSequence: number,
  ) {
    // Start in the last segment that begins at or before the first wanted sequence.
    let index = 0;
    while (index + 1 < segments.length && segments[index + 1].firstSequence <= afterSequence + 1) index++;
    this.index = afterSequence >= lastSequence ? segments.length : index;
  }

  next(): Promise<IteratorResult<StoredRecord>> {
    try {
      const record = this.reader === null ? null : this.takeBuffered(this.reader);
      if (record !== null) return Promise.resolve({ done: false, value: record });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.nextSlow();
  }

  async return(): Promise<IteratorResult<StoredRecord>> {
    await this.closeReader();
    this.index = this.segments.length;
    return DONE;
  }

  /** The next buffered record past afterSequence, or null when I/O (or an error) is next. */
  private takeBuffered(reader: SegmentReader): StoredRecord | null {
    // Ends: each pass moves past a buffered frame.
    while (reader.peek() === FRAME_READY) {
      const header = reader.header;
      if (header.firstSequence !== this.nextSequence) {
        throw new JournalCorruptError(reader.path, reader.frameOffset,
          `frame starts at sequence ${header.firstSequence}, expected ${this.nextSequence}`);
      }
      this.nextSequence += header.commandCount;
      const bytes = reader.buffer.subarray(reader.bodyStart, reader.bodyEnd);
      reader.advance();
      if (this.nextSequence - 1 > this.afterSequence) {
        return { firstSequence: header.firstSequence, commandCount: header.commandCount, bytes };
      }
    }
    return null;
  }

  private async nextSlow(): Promise<IteratorResult<StoredRecord>> {
    try {
      // Ends: each pass hands out a record, reads at least one byte, or moves on to the next of the segments.
      for (;;) {
        if (this.reader === null) {
          if (this.index === this.segments.length) return DONE;
          await this.openSegment(this.segments[this.index]);
          continue;
        }
        const reader: SegmentReader = this.reader;
        const record = this.takeBuffered(reader);
        if (record !== null) return { done: false, value: record };
        const status = reader.peek();
        if (status === SEGMENT_END) {
          await this.closeReader();
          this.index++;
        } else if (status === FRAME_DAMAGED) {
          throw new JournalCorruptError(reader.path, reader.frameOffset, "frame header is damaged");
        } else if (!(await reader.refill())) {
          throw new JournalCorruptError(reader.path, reader.frameOffset, "the file ends inside a frame");
        }
      }
    } catch (error) {
      await this.closeReader();
      this.index = this.segments.length;
      throw error;
    }
  }

  private async openSegment(segment: ReplaySegment): Promise<void> {
    const first = this.nextSequence === 0;
    if (first && segment.firstSequence > this.afterSequence + 1) {
      throw new JournalCorruptError(segment.path, 0, `the journal starts at sequence ${segment.firstSequence}: `
        + `the records after ${this.afterSequence} were compacted away`);
    }
    if (!first && segment.firstSequence !== this.nextSequence) {
      throw new JournalCorruptError(segment.path, 0,
        `segment starts at sequence ${segment.firstSequence}, but the previous one ends at ${this.nextSequence - 1}`);
    }
    this.reader = await SegmentReader.open(this.fileSystem, segment.path, segment.endBytes, true);
    this.nextSequence = segment.firstSequence;
  }

  private async closeReader(): Promise<void> {
    const reader = this.reader;
    this.reader = null;
    if (reader !== null) await reader.close();
  }
}
