/**
 * Reads one segment file frame by frame, in large chunks: one read syscall per READ_CHUNK_BYTES, never one per
 * record. Opening the journal uses it to verify every frame; replay uses it to hand records out. Looking at the
 * next frame (`peek`) is synchronous over buffered bytes; only `refill` does I/O.
 */
import { assert } from "../../core/assert.ts";
import { JournalCorruptError } from "../../core/ports.ts";
import type { JournalFileHandle, JournalFileSystem } from "./file-system.ts";
import { FRAME_HEADER_BYTES, headerValid, type FrameHeader } from "./frame.ts";

/**
 * Bytes read per refill. Costs that much memory per open reader (more while one frame is bigger). Replay allocates
 * a fresh chunk per refill, since its records point into it; a chunk lives while the caller holds one of its records.
 */
export const READ_CHUNK_BYTES = 8 << 20;

/** `peek`: a whole frame is buffered; its fields are in `header`, its body at `[bodyStart, bodyEnd)` of `buffer`. */
export const FRAME_READY = 0;
/** `peek`: the frame is not wholly buffered; `refill` reads on. */
export const FRAME_NEED_MORE = 1;
/** `peek`: the header at the cursor is not valid (a field out of range, or its CRC when checked). */
export const FRAME_DAMAGED = 2;
/** `peek`: the cursor is at the end of the range being read, on a frame boundary. */
export const SEGMENT_END = 3;

/** One segment file opened for reading, up to `endBytes`. */
export class SegmentReader {
  /** Bytes of the file from `bufferPosition`; `filled` of them are valid. */
  buffer: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.buffer.buffer);
  /** File offset of `buffer[0]`. */
  private bufferPosition = 0;
  private filled = 0;
  /** Index in `buffer` of the frame `peek` looks at. */
  private cursor = 0;
  /** Bytes from the cursor that the last FRAME_NEED_MORE asked for. */
  private needBytes = 0;
  /** The header of the frame `peek` last found valid. */
  readonly header: FrameHeader = { bodyLength: 0, commandCount: 0, firstSequence: 0, bodyCrc: 0 };
  bodyStart = 0;
  bodyEnd = 0;

  private constructor(
    readonly path: string,
    private readonly handle: JournalFileHandle,
    /** Where reading stops: the file's size, or the acknowledged end of the segment being appended to. */
    readonly endBytes: number,
    /**
     * Replay: every refill gets a fresh buffer (records handed out point into the old one), and header CRCs are not
     * checked (open verified every frame). Otherwise (open's scan): one buffer, reused, and headers fully checked.
     */
    private readonly replay: boolean,
  ) {}

  /** Opens `path` to read up to `endBytes` (the whole file when null); see the constructor for `replay`. */
  static async open(
    fileSystem: JournalFileSystem,
    path: string,
    endBytes: number | null,
    replay: boolean,
  ): Promise<SegmentReader> {
    const handle = await fileSystem.open(path, "r");
    try {
      const size = (await handle.stat()).size;
      if (endBytes !== null && endBytes > size) {
        throw new JournalCorruptError(path, size, `segment is shorter than its ${endBytes} acknowledged bytes`);
      }
      return new SegmentReader(path, handle, endBytes ?? size, replay);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** File offset of the frame at the cursor. */
  get frameOffset(): number {
    return this.bufferPosition + this.cursor;
  }

  /** Looks at the frame at the cursor, over buffered bytes only. Returns one of FRAME_READY ... SEGMENT_END. */
  peek(): number {
    const available = this.filled - this.cursor;
    if (available === 0 && this.bufferPosition + this.filled === this.endBytes) return SEGMENT_END;
    if (available < FRAME_HEADER_BYTES) {
      this.needBytes = FRAME_HEADER_BYTES;
      return FRAME_NEED_MORE;
    }
    if (!headerValid(this.buffer, this.view, this.cursor, this.header, !this.replay)) return FRAME_DAMAGED;
    const frameBytes = FRAME_HEADER_BYTES + this.header.bodyLength;
    if (available < frameBytes) {
      this.needBytes = frameBytes;
      return FRAME_NEED_MORE;
    }
    this.bodyStart = this.cursor + FRAME_HEADER_BYTES;
    this.bodyEnd = this.cursor + frameBytes;
    return FRAME_READY;
  }

  /** Moves the cursor past the frame `peek` just returned FRAME_READY for. */
  advance(): void {
    assert(this.bodyEnd > this.cursor, "advance() without a ready frame");
    this.cursor = this.bodyEnd;
  }

  /**
   * After FRAME_NEED_MORE: reads on so the buffer holds the bytes asked for, and up to a chunk more. Returns false
   * when the range ends first (the frame at the cursor is incomplete).
   */
  async refill(): Promise<boolean> {
    const position = this.frameOffset;
    if (position + this.needBytes > this.endBytes) return false;
    const kept = this.filled - this.cursor;
    const wanted = Math.max(this.needBytes, Math.min(READ_CHUNK_BYTES, this.endBytes - position));
    if (!this.replay && this.buffer.length >= wanted) {
      this.buffer.copyWithin(0, this.cursor, this.filled);
    } else {
      const buffer = new Uint8Array(wanted);
      buffer.set(this.buffer.subarray(this.cursor, this.filled));
      this.buffer = buffer;
      this.view = new DataView(buffer.buffer);
    }
    this.bufferPosition = position;
    this.cursor = 0;
    this.bodyStart = 0;
    this.bodyEnd = 0;
    this.filled = kept;
    await readAtLeast(this.handle, this.path, this.buffer, this.filled, wanted, position + this.filled);
    this.filled = wanted;
    return true;
  }

  /**
   * The file offset of the first valid frame header after `offset` (checking every byte offset up to the end), or
   * -1 when there is none. Tells a torn tail (nothing valid after the damage) from damage inside the journal.
   */
  async findValidHeaderAfter(offset: number): Promise<number> {
    const chunk = new Uint8Array(Math.max(FRAME_HEADER_BYTES, Math.min(READ_CHUNK_BYTES, this.endBytes - offset)));
    const view = new DataView(chunk.buffer);
    const header: FrameHeader = { bodyLength: 0, commandCount: 0, firstSequence: 0, bodyCrc: 0 };
    let position = offset + 1;
    // Ends: each pass moves `position` on by at least one byte, towards endBytes.
    while (position + FRAME_HEADER_BYTES <= this.endBytes) {
      const length = Math.min(chunk.length, this.endBytes - position);
      await readAtLeast(this.handle, this.path, chunk, 0, length, position);
      const lastStart = length - FRAME_HEADER_BYTES;
      for (let start = 0; start <= lastStart; start++) {
        if (headerValid(chunk, view, start, header, true)) return position + start;
      }
      // The next chunk starts right after the last offset checked, so headers across chunk edges are seen.
      position += lastStart + 1;
    }
    return -1;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Reads file bytes from `position` into `buffer[from, to)`, however many read calls it takes. */
async function readAtLeast(
  handle: JournalFileHandle,
  path: string,
  buffer: Uint8Array,
  from: number,
  to: number,
  position: number,
): Promise<void> {
  let offset = from;
  // Ends: each pass reads at least one byte or throws.
  while (offset < to) {
    const { bytesRead } = await handle.read(buffer, offset, to - offset, position + offset - from);
    if (bytesRead === 0) {
      throw new JournalCorruptError(path, position + offset - from, "segment ended while being read (changed on disk?)");
    }
    offset += bytesRead;
  }
}
