/**
 * FileJournalTail: reads a FileJournal's directory as the shard appends to it, from another task or another process
 * (read only; it never truncates or locks anything). The output relay's JournalTail.
 *
 * It hands out only whole frames whose header and body checksums hold. A frame still being written (or a torn one
 * a crash left, which the shard truncates when it reopens) is simply not there yet: the tail waits and reads again.
 * When the segment it reads has no more whole frames and the next segment exists, it moves on (the shard creates
 * the next segment only after fsyncing the previous one).
 *
 * What it reads has been written but, with fsync "batch", may be up to one fsync short of durable: if the machine
 * (not the process) loses power in that window, an event can have been delivered for a command the shard then
 * does not have. A process crash loses nothing (the page cache keeps the write). A write that fails after its
 * bytes landed is the same case, but the journal then cuts that frame back and writes other commands at its
 * sequences: before each read the tail checks that the last frame it handed out is still there, unchanged, and
 * throws JournalCorruptError when it is not (its reader has derived state from a record the shard refused and must
 * be rebuilt from before it), rather than follow a journal it no longer matches.
 */
import { assert } from "../../core/assert.ts";
import { crc32c } from "../../core/crc32c.ts";
import { JournalCorruptError, type StoredRecord } from "../../core/ports.ts";
import type { JournalTail } from "../../core/outputs.ts";
import { nodeFileSystem, type JournalFileHandle, type JournalFileSystem } from "./file-system.ts";
import { FRAME_HEADER_BYTES, headerValid, type FrameHeader } from "./frame.ts";
import { listSegments, listSegmentsIfAny, type Segment } from "./segments.ts";

/** Listings `findSegment` makes when the segment it picked is deleted before it opens it (compaction racing it). */
const FIND_SEGMENT_ATTEMPTS = 3;
/** How often `next` looks for the journal's newest segment (for lastSequence, the relays' lag). */
const END_LOOK_MS = 1000;

/** Options of `FileJournalTail.open`. */
export interface FileJournalTailOptions {
  directory: string;
  /** Start at the record holding `afterSequence + 1`. */
  afterSequence: number;
  /** Longest wait between looks at a journal that has not grown. Default 10 ms (it starts at 1 ms). */
  pollMsMax?: number;
  /** Most bytes read per `next` call. Default 4 MiB. */
  readBytesMax?: number;
  /** Waits `ms`. */
  sleep: (ms: number) => Promise<void>;
  fileSystem?: JournalFileSystem;
  log?: (line: string) => void;
}

/** A journal directory followed as it grows. */
export class FileJournalTail implements JournalTail {
  private segment: Segment | null = null;
  private handle: JournalFileHandle | null = null;
  /** File offset of the next frame to read in `segment`. */
  private position = 0;
  /** The sequence the next record must start at or contain. */
  private nextSequence: number;
  private last: number;
  private closed = false;
  /** The read under way in `next`, if any: close() waits for it, so a read never meets a closed handle. */
  private reading: Promise<StoredRecord[]> | undefined = undefined;
  private buffer: Uint8Array;
  private view: DataView;
  private readonly header: FrameHeader = { bodyLength: 0, commandCount: 0, firstSequence: 0, bodyCrc: 0 };
  /** The offset of the last frame handed out from the current segment (checked before each read), or -1; its header. */
  private handedOutOffset = -1;
  private readonly handedOut: FrameHeader = { bodyLength: 0, commandCount: 0, firstSequence: 0, bodyCrc: 0 };
  private readonly check = new Uint8Array(FRAME_HEADER_BYTES);
  private readonly checkView = new DataView(this.check.buffer);
  private readonly checked: FrameHeader = { bodyLength: 0, commandCount: 0, firstSequence: 0, bodyCrc: 0 };
  private readonly fileSystem: JournalFileSystem;
  private readonly pollMsMax: number;
  private stuckSinceMs = 0;
  /** First sequence of the newest segment at the last look (lastSequence), and when that was. */
  private newestFirst = 0;
  private lookedAtMs = -Infinity;

  private constructor(private readonly options: FileJournalTailOptions) {
    this.nextSequence = options.afterSequence + 1;
    this.last = options.afterSequence;
    this.fileSystem = options.fileSystem ?? nodeFileSystem;
    this.pollMsMax = options.pollMsMax ?? 10;
    this.buffer = new Uint8Array(options.readBytesMax ?? 4 << 20);
    this.view = new DataView(this.buffer.buffer);
  }

  static async open(options: FileJournalTailOptions): Promise<FileJournalTail> {
    return new FileJournalTail(options);
  }

  /**
   * The journal's last sequence as far as known: what was read, or if more, every sequence before the newest
   * segment (looked at once a second while reading). A lower bound for lag: a tail far behind sees all but the
   * newest segment's records (~1M commands of 64 MiB) before it reads them.
   */
  lastSequence(): number {
    return Math.max(this.last, this.newestFirst - 1);
  }

  async next(): Promise<StoredRecord[] | null> {
    let waitMs = 1;
    if (Date.now() - this.lookedAtMs >= END_LOOK_MS) await this.lookAtEnd();
    // Ends: returns records, or null once closed; each empty pass sleeps.
    while (!this.closed) {
      this.reading = this.readAvailable();
      let records: StoredRecord[];
      try {
        records = await this.reading;
      } finally {
        this.reading = undefined;
      }
      if (records.length > 0) return records;
      if (this.closed) break;
      await this.options.sleep(waitMs);
      waitMs = Math.min(this.pollMsMax, waitMs * 2);
    }
    return null;
  }

  async close(): Promise<void> {
    this.closed = true;
    // The read's own outcome (records or an error) goes to the caller of next(), which is waiting for it.
    await this.reading?.then(
      () => undefined,
      () => undefined,
    );
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
  }

  /** Whole frames available now from the current segment, moving to the next segment when this one is done. */
  private async readAvailable(): Promise<StoredRecord[]> {
    if (this.segment === null && !(await this.findSegment())) return [];
    const handle = this.handle;
    assert(handle !== null, "a segment is open while reading");
    await this.checkHandedOut(handle);
    const { bytesRead } = await handle.read(this.buffer, 0, this.buffer.length, this.position);
    const records: StoredRecord[] = [];
    let offset = 0;
    for (;;) {
      if (offset + FRAME_HEADER_BYTES > bytesRead) break;
      if (!headerValid(this.buffer, this.view, offset, this.header, true)) break;
      const end = offset + FRAME_HEADER_BYTES + this.header.bodyLength;
      if (end > this.buffer.length) {
        // One frame larger than the buffer: grow it and read again.
        if (offset === 0) this.grow(end);
        break;
      }
      if (end > bytesRead) break;
      const bodyStart = offset + FRAME_HEADER_BYTES;
      if (crc32c(this.buffer, bodyStart, end) !== this.header.bodyCrc) break;
      const { firstSequence, commandCount } = this.header;
      const lastOfRecord = firstSequence + commandCount - 1;
      if (firstSequence > this.nextSequence) {
        throw new JournalCorruptError(this.segment!.path, this.position + offset,
          `record starts at sequence ${firstSequence}, expected one holding ${this.nextSequence}`);
      }
      if (lastOfRecord >= this.nextSequence) {
        records.push({ firstSequence, commandCount, bytes: this.buffer.slice(bodyStart, end) });
        this.nextSequence = lastOfRecord + 1;
        this.last = lastOfRecord;
        this.handedOutOffset = this.position + offset;
        Object.assign(this.handedOut, this.header);
      }
      offset = end;
    }
    this.position += offset;
    if (records.length > 0 || offset > 0) {
      this.stuckSinceMs = 0;
      return records;
    }
    // Nothing whole here: move on if the shard has started the next segment.
    await this.maybeNextSegment(bytesRead);
    return records;
  }

  /**
   * The last frame handed out from this segment must still be there as it was: the journal cuts a frame back only
   * after its append failed, and then writes other commands at its sequences (see the top comment).
   */
  private async checkHandedOut(handle: JournalFileHandle): Promise<void> {
    const at = this.handedOutOffset;
    if (at < 0) return;
    const { bytesRead } = await handle.read(this.check, 0, FRAME_HEADER_BYTES, at);
    const was = this.handedOut;
    const now = this.checked;
    const same = bytesRead === FRAME_HEADER_BYTES && headerValid(this.check, this.checkView, 0, now, true) &&
      now.firstSequence === was.firstSequence && now.commandCount === was.commandCount &&
      now.bodyLength === was.bodyLength && now.bodyCrc === was.bodyCrc;
    if (!same) {
      throw new JournalCorruptError(this.segment!.path, at,
        `the record of sequences ${was.firstSequence}..${was.firstSequence + was.commandCount - 1} this tail handed out was cut back `
        + `(an append that failed after its bytes were written) and the journal no longer holds it: what was derived from it `
        + `(output events, a standby's state) must be rebuilt from before sequence ${was.firstSequence}`);
    }
  }

  /** Notes the newest segment's first sequence. */
  private async lookAtEnd(): Promise<void> {
    this.lookedAtMs = Date.now();
    const segments = await listSegmentsIfAny(this.fileSystem, this.options.directory);
    this.newestFirst = Math.max(this.newestFirst, segments.at(-1)?.firstSequence ?? 0);
  }

  /**
   * Opens the segment that holds `nextSequence`; false when the journal has none yet. A segment compacted away
   * between the listing and the open is looked for again (the next listing says whether what is needed is gone).
   */
  private async findSegment(): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const segments = await listSegmentsIfAny(this.fileSystem, this.options.directory);
      if (segments.length === 0) return false;
      if (segments[0].firstSequence > this.nextSequence) {
        throw new JournalCorruptError(segments[0].path, 0,
          `the journal starts at sequence ${segments[0].firstSequence}; the outputs need ${this.nextSequence}: segments were deleted before every sink had them`);
      }
      let holding = segments[0];
      for (const segment of segments) if (segment.firstSequence <= this.nextSequence) holding = segment;
      try {
        await this.openSegment(holding);
        return true;
      } catch (error) {
        if ((error as { code?: string }).code !== "ENOENT" || attempt === FIND_SEGMENT_ATTEMPTS) throw error;
      }
    }
  }

  private async openSegment(segment: Segment): Promise<void> {
    const previous = this.handle;
    this.handle = null;
    await previous?.close();
    this.handle = await this.fileSystem.open(segment.path, "r");
    this.segment = segment;
    this.position = 0;
    // The segments before this one were fsynced before it was created: what was handed out of them stays.
    this.handedOutOffset = -1;
  }

  private async maybeNextSegment(bytesLeft: number): Promise<void> {
    const segments = await listSegments(this.fileSystem, this.options.directory);
    const following = segments.find((segment) => segment.firstSequence === this.nextSequence);
    if (following !== undefined && following.path !== this.segment!.path) {
      if (bytesLeft > 0) this.options.log?.(`journal tail: ${bytesLeft} bytes after the last whole frame of ${this.segment!.path} skipped (a torn tail)`);
      await this.openSegment(following);
      return;
    }
    if (bytesLeft >= FRAME_HEADER_BYTES) {
      // Bytes that are not a whole frame yet: a write in progress, or a torn tail the shard will truncate on restart.
      const now = Date.now();
      if (this.stuckSinceMs === 0) this.stuckSinceMs = now;
      else if (now - this.stuckSinceMs > 5000) {
        this.options.log?.(`journal tail: ${this.segment!.path} at offset ${this.position} holds no whole frame for 5 s; waiting`);
        this.stuckSinceMs = now;
      }
    }
  }

  private grow(bytes: number): void {
    this.buffer = new Uint8Array(bytes);
    this.view = new DataView(this.buffer.buffer);
  }
}
