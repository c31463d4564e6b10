// Proves the relays' CPU budget: it holds the process to its share of a CPU only while the journals grow fast,
// sleeping exactly what brings the window back within the share, and lets it run freely otherwise.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CpuBudget, WINDOW_MS } from "./cpu-budget.ts";

/** A budget on a fake clock, CPU counter and journal, recording its sleeps. */
function fakeBudget(percent: number, busyBytesPerSec = 1000) {
  const fake = { nowMs: 0, cpuMs: 0, journalBytes: 0, sleeps: [] as number[], windowStart: 0, unreadable: false };
  const budget = new CpuBudget({
    percent,
    busyBytesPerSec,
    journalBytes: async () => {
      if (fake.unreadable) throw new Error("EACCES");
      return fake.journalBytes;
    },
    sleep: async (ms) => {
      fake.sleeps.push(ms);
      fake.nowMs += ms;
    },
    now: () => fake.nowMs,
    cpuMs: () => fake.cpuMs,
  });
  return { budget, fake };
}

/** Move time (and CPU, as fast) to the window's end, grow the journal by `bytes`, and end it with a pace call. */
async function window(budget: CpuBudget, fake: ReturnType<typeof fakeBudget>["fake"], bytes: number): Promise<void> {
  const advance = fake.windowStart + WINDOW_MS - fake.nowMs;
  fake.nowMs += advance;
  fake.cpuMs += advance;
  fake.journalBytes += bytes;
  await budget.pace();
  fake.windowStart = fake.nowMs;
}

test("runs freely while the journals grow slowly, holds to its share while they grow fast", async () => {
  const { budget, fake } = fakeBudget(10);
  await budget.pace(); // the first window starts once the journals' size is known
  await window(budget, fake, 999);
  assert.equal(budget.limiting, false, "999 B/s is under the threshold");
  fake.nowMs += 200;
  fake.cpuMs += 200;
  assert.equal(budget.pace(), undefined, "no limit: no sleep");

  await window(budget, fake, 1000);
  assert.equal(budget.limiting, true, "1000 B/s is busy");
  fake.nowMs += 100;
  fake.cpuMs += 50;
  await budget.pace();
  assert.deepEqual(fake.sleeps, [400], "50 ms of CPU at 10% needs 500 ms of wall time: 400 more");
  assert.equal(budget.pace(), undefined, "back within the share");
  fake.nowMs += 10;
  fake.cpuMs += 1;
  assert.equal(budget.pace(), undefined, "1 ms of CPU in 10 ms is within 10%");

  await window(budget, fake, 0);
  assert.equal(budget.limiting, false, "an idle journal frees it again");
  await window(budget, fake, 5000);
  assert.equal(budget.limiting, true);
  fake.unreadable = true;
  await window(budget, fake, 5000);
  assert.equal(budget.limiting, false, "a journal that cannot be measured counts as not growing");
  fake.unreadable = false;
  fake.nowMs += 100;
  fake.cpuMs += 100;
  assert.equal(budget.pace(), undefined);
  assert.deepEqual(fake.sleeps, [400]);
});

test("100% never sleeps; bad settings are range errors", async () => {
  const { budget, fake } = fakeBudget(100);
  await budget.pace();
  await window(budget, fake, 1 << 20);
  fake.nowMs += 100;
  fake.cpuMs += 100;
  assert.equal(budget.limiting, false);
  assert.equal(budget.pace(), undefined);
  for (const percent of [0, 101, 2.5]) assert.throws(() => fakeBudget(percent), RangeError);
  assert.throws(() => fakeBudget(10, -1), RangeError);
});
