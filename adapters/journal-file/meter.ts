/**
 * JournalWriteMeter: how many bytes a FileJournal has appended since the meter's first look, from its segments'
 * sizes alone (read only, from any process; no records are read). It tells how fast a shard is writing, e.g. to a
 * relay's CPU budget (examples/gateway/cpu-budget.ts).
 *
 * Each look lists the segments and reads the size of the newest one seen before and of every newer one. A segment
 * that was finished and compacted away between two looks is counted up to the size it had at the first of them (an
 * undercount of at most what it gained meanwhile; with looks a second apart and 64 MiB segments, rare).
 */
import { nodeFileSystem, type JournalFileSystem } from "./file-system.ts";
import { listSegmentsIfAny } from "./segments.ts";

export class JournalWriteMeter {
  /** First sequence of the newest segment at the last look (0: no look yet, or no segment). */
  private newestFirst = 0;
  private newestBytes = 0;
  private total = 0;
  private looked = false;

  constructor(
    private readonly directory: string,
    private readonly fileSystem: JournalFileSystem = nodeFileSystem,
  ) {}

  /** Bytes appended since the first call (which returns 0); a journal created after it counts whole. */
  async written(): Promise<number> {
    const segments = await listSegmentsIfAny(this.fileSystem, this.directory);
    let added = 0;
    for (const segment of segments) {
      if (segment.firstSequence < this.newestFirst) continue;
      const bytes = await this.size(segment.path);
      if (segment.firstSequence === this.newestFirst) added += Math.max(0, bytes - this.newestBytes);
      else added += bytes;
      this.newestFirst = segment.firstSequence;
      this.newestBytes = bytes;
    }
    if (this.looked) this.total += added;
    this.looked = true;
    return this.total;
  }

  /** A segment's size; 0 when it vanished since the listing (compacted). */
  private async size(path: string): Promise<number> {
    let handle;
    try {
      handle = await this.fileSystem.open(path, "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw error;
    }
    try {
      return (await handle.stat()).size;
    } finally {
      await handle.close();
    }
  }
}
