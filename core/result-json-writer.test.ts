// Proves the JSON results writer writes what JSON.stringify writes for the Result objects of the same ring slots:
// every result code (ok and rejected), duplicates, results without balances, ids of 0-64 characters, and numbers at
// the edges of the decimal writer (0, 10^8 - 1, 10^8, 2^32, 2^53 - 1, negatives) and at random over the safe range.
// The HTTP transport's own test (transports/http/json-scan.test.ts) holds whole replies to the slow path's.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { RESULT_CODES, RingBuffer, type Result } from "./index.ts";
import { ScannedText, TEXT_FIELDS, NUMBER_FIELDS, type ScannedBatch } from "./command-batch-reader.ts";
import { writeScannedResultsJson } from "./result-json-writer.ts";

const EDGES = [0, 1, 9, 10, 99_999_999, 100_000_000, 100_000_001, 2 ** 32, 2 ** 32 + 1, 999_999_999_999_999, 2 ** 53 - 1];
const safe = fc.oneof(
  fc.constantFrom(...EDGES, ...EDGES.map((value) => -value)),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.maxSafeInteger(),
  fc.maxSafeInteger().map((value) => -value),
);
const slot = fc.record({
  id: fc.stringMatching(/^[A-Za-z0-9._:-]{0,64}$/),
  code: fc.integer({ min: 0, max: RESULT_CODES.length - 1 }),
  seq: fc.maxSafeNat(),
  balances: fc.option(fc.tuple(safe, safe, safe), { nil: undefined }),
  duplicate: fc.boolean(),
});

test("writeScannedResultsJson is JSON.stringify({ results }) of the slots' Result objects", () => {
  fc.assert(
    fc.property(fc.array(slot, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 63 }), (slots, first) => {
      const ring = new RingBuffer(64);
      const ids = slots.map((s) => s.id).join("");
      const scan: ScannedBatch = {
        bytes: new TextEncoder().encode(ids),
        count: slots.length,
        atomic: false,
        types: new Int32Array(slots.length),
        ranges: new Int32Array(slots.length * TEXT_FIELDS * 2),
        numbers: new Float64Array(slots.length * NUMBER_FIELDS),
      };
      const results: Result[] = [];
      let at = 0;
      slots.forEach((s, k) => {
        const index = (first + k) & ring.mask;
        scan.ranges[(k * TEXT_FIELDS + ScannedText.id) * 2] = at;
        scan.ranges[(k * TEXT_FIELDS + ScannedText.id) * 2 + 1] = at + s.id.length;
        at += s.id.length;
        ring.code[index] = s.code;
        ring.resultSeq[index] = s.seq;
        ring.balance[index] = s.balances === undefined ? Number.NaN : s.balances[0];
        ring.held[index] = s.balances?.[1] ?? 0;
        ring.available[index] = s.balances?.[2] ?? 0;
        ring.duplicate[index] = s.duplicate ? 1 : 0;
        const result: Result = { id: s.id, status: s.code === 0 ? "ok" : "rejected", code: RESULT_CODES[s.code], seq: s.seq };
        if (s.balances !== undefined) [result.balance, result.held, result.available] = s.balances;
        if (s.duplicate) result.duplicate = true;
        results.push(result);
      });
      const written = new TextDecoder().decode(writeScannedResultsJson(ring, first, scan));
      assert.equal(written, JSON.stringify({ results }));
    }),
    { numRuns: 300 },
  );
});
