// Proves the journal write meter counts exactly the bytes a FileJournal appends, across segment rotations and
// compaction, from the segments' sizes alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileJournal } from "./index.ts";
import { JournalWriteMeter } from "./meter.ts";

/** Total size of the journal's segment files. */
async function segmentBytes(directory: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory)) if (name.endsWith(".journal")) total += (await stat(join(directory, name))).size;
  return total;
}

test("counts the bytes appended since its first look, across rotations and compaction", async () => {
  const root = await mkdtemp(join(tmpdir(), "hotledger-meter-"));
  try {
    const directory = join(root, "journal");
    const late = new JournalWriteMeter(directory);
    assert.equal(await late.written(), 0, "no journal yet");
    const journal = await FileJournal.open({ directory, fsync: "never", log: () => {}, segmentBytesMax: 1000 });
    try {
      let sequence = 1;
      const append = async (records: number) => {
        for (let k = 0; k < records; k++) await journal.append(new Uint8Array(50 + (k % 7) * 20), sequence++, 1);
      };
      await append(5);
      const base = await segmentBytes(directory);
      assert.equal(await late.written(), base, "a journal created after the first look counts whole");
      const meter = new JournalWriteMeter(directory);
      assert.equal(await meter.written(), 0, "what was there at the first look does not count");
      await append(3);
      assert.equal(await meter.written(), (await segmentBytes(directory)) - base, "growth of one segment");
      const segmentsBefore = (await readdir(directory)).length;
      await append(40);
      assert.ok((await readdir(directory)).length >= segmentsBefore + 3, "the appends rotated segments");
      const grown = (await segmentBytes(directory)) - base;
      assert.equal(await meter.written(), grown, "new segments count whole, the one seen before by its growth");
      // Compaction deletes old segments: nothing is subtracted, and what is appended next still counts.
      await journal.compact(sequence - 10);
      const afterCompaction = await segmentBytes(directory);
      assert.ok(afterCompaction < grown + base, "compaction deleted segments");
      assert.equal(await meter.written(), grown);
      await append(4);
      assert.equal(await meter.written(), grown + (await segmentBytes(directory)) - afterCompaction);
    } finally {
      await journal.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
