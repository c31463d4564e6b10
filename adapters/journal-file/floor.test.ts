// Proves the journal floor file round-trips, reads as "no floor" when absent, and refuses a damaged file; and that
// configuring outputs keeps the whole journal until a relay records its floor, without moving a recorded one.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JOURNAL_FLOOR_FILE, keepJournalForOutputs, readJournalFloor, writeJournalFloor } from "./floor.ts";

describe("journal floor", () => {
  test("absent is +Infinity; written values read back; damage is an error", async () => {
    const directory = await mkdtemp(join(tmpdir(), "hotledger-floor-"));
    try {
      assert.equal(await readJournalFloor(directory), Number.POSITIVE_INFINITY);
      await writeJournalFloor(directory, 0);
      assert.equal(await readJournalFloor(directory), 0);
      await writeJournalFloor(directory, 123_456_789);
      assert.equal(await readJournalFloor(directory), 123_456_789);
      await writeFile(join(directory, JOURNAL_FLOOR_FILE), "12x\n");
      await assert.rejects(readJournalFloor(directory), /does not hold a sequence/);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  test("outputs configured: a journal without a floor keeps everything; a recorded floor is left as it is", async () => {
    const root = await mkdtemp(join(tmpdir(), "hotledger-floor-"));
    try {
      const journal = join(root, "shard-0", "journal");
      await keepJournalForOutputs(journal);
      assert.equal(await readJournalFloor(journal), 0, "a journal directory not made yet gets floor 0");
      await writeJournalFloor(journal, 5_000);
      await keepJournalForOutputs(journal);
      assert.equal(await readJournalFloor(journal), 5_000, "the relay's floor stays");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
