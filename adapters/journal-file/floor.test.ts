// Proves the journal floor file round-trips, reads as "no floor" when absent, and refuses a damaged file.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JOURNAL_FLOOR_FILE, readJournalFloor, writeJournalFloor } from "./floor.ts";

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
});
