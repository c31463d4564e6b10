// Proves the idempotency window's index finds exactly the live keys: fast-check drives a WindowTable and a plain
// array FIFO (the reference) with the same pushes, shifts (count and time eviction) and lookups, with hashes
// squeezed into a few values so buckets overflow, stale slots are reused and the sweep runs all the time; and the
// same holds when the 31-bit insertion counter wraps.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { WindowTable } from "./window-table.ts";

/** Keys are short ASCII words; `key(n)` is the n-th one, as the table stores it (one 32-bit word, little-endian). */
function keyWords(n: number): Uint32Array {
  const text = `k${n}`;
  const words = new Uint32Array(16);
  const bytes = new Uint8Array(words.buffer);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return words;
}

function keyLength(n: number): number {
  return `k${n}`.length;
}

type Operation = { kind: "push"; key: number; owner: number } | { kind: "shift" } | { kind: "find"; key: number; owner: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("push" as const), key: fc.nat(300), owner: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.constant({ kind: "shift" as const }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("find" as const), key: fc.nat(300), owner: fc.nat(2) }) },
);

/** Run `operations` against a table and the reference; `hashOf` picks the (deliberately colliding) hashes. */
function check(capacity: number, operations: Operation[], hashOf: (key: number, owner: number) => number, table = new WindowTable(capacity)): void {
  const reference: { key: number; owner: number; entry: number }[] = [];
  for (const op of operations) {
    const live = (key: number, owner: number) => reference.find((r) => r.key === key && r.owner === owner);
    if (op.kind === "push") {
      if (live(op.key, op.owner) !== undefined) continue; // the ledger never pushes a live key
      if (reference.length === capacity) reference.shift(), table.shift();
      const entry = table.push(op.owner, keyWords(op.key), 0, keyLength(op.key), hashOf(op.key, op.owner));
      reference.push({ key: op.key, owner: op.owner, entry });
    } else if (op.kind === "shift") {
      if (reference.length === 0) continue;
      const oldest = reference.shift();
      assert.equal(table.shift(), oldest?.entry);
    } else {
      const found = table.find(op.owner, keyWords(op.key), 0, keyLength(op.key), hashOf(op.key, op.owner));
      assert.equal(found, live(op.key, op.owner)?.entry ?? -1, `find k${op.key} of owner ${op.owner}`);
    }
    assert.equal(table.count, reference.length);
    assert.equal(table.head, reference[0]?.entry ?? table.head);
  }
  table.verifyIndex();
  // Every live key is found at its entry, and none of the forgotten ones.
  for (const r of reference) assert.equal(table.find(r.owner, keyWords(r.key), 0, keyLength(r.key), hashOf(r.key, r.owner)), r.entry);
}

describe("WindowTable", () => {
  test("finds exactly the live keys, with hashes colliding into 4 values (long overflow chains)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(operation, { minLength: 50, maxLength: 400 }), (capacity, operations) => {
        check(capacity, operations, (key) => key & 3);
      }),
      { numRuns: 300 },
    );
  });

  test("finds exactly the live keys with spread hashes (the common case)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.array(operation, { minLength: 100, maxLength: 600 }), (capacity, operations) => {
        check(capacity, operations, (key, owner) => Math.imul(key * 3 + owner, 0x9e3779b1));
      }),
      { numRuns: 200 },
    );
  });

  test("a window that is full and turns over many times keeps every bucket usable (stale slots reused and swept)", () => {
    const capacity = 64;
    const operations: Operation[] = [];
    for (let i = 0; i < 20_000; i++) {
      operations.push({ kind: "push", key: i % 301, owner: i % 3 });
      if (i % 7 === 0) operations.push({ kind: "find", key: (i * 13) % 301, owner: (i * 5) % 3 });
    }
    check(capacity, operations, (key, owner) => Math.imul(key * 3 + owner, 0x85ebca6b));
  });

  test("lookups stay exact when the 31-bit insertion counter wraps", () => {
    const capacity = 32;
    const table = new WindowTable(capacity);
    // A fresh table whose counter is 50 pushes short of 2^31: the tags of the next pushes wrap to 0.
    (table as unknown as { pushed: number }).pushed = 0x7fffffff - 50;
    const operations: Operation[] = [];
    for (let i = 0; i < 500; i++) {
      operations.push({ kind: "push", key: i % 97, owner: 0 });
      operations.push({ kind: "find", key: (i * 7) % 97, owner: 0 });
    }
    check(capacity, operations, (key) => key & 7, table);
  });

  test("restore pushes oldest first into a fresh table and refuses a repeated key", () => {
    const table = new WindowTable(8);
    assert.equal(table.insertIfAbsent(0, 1, keyWords(5), 0, keyLength(5), 42), true);
    assert.equal(table.insertIfAbsent(1, 1, keyWords(6), 0, keyLength(6), 42), true);
    assert.equal(table.insertIfAbsent(2, 1, keyWords(5), 0, keyLength(5), 42), false);
    assert.throws(() => table.insertIfAbsent(5, 1, keyWords(7), 0, keyLength(7), 42), /oldest first/);
    assert.equal(table.find(1, keyWords(6), 0, keyLength(6), 42), 1);
  });

  test("push into a full table and shift of an empty one are programmer errors", () => {
    const table = new WindowTable(1);
    assert.throws(() => table.shift(), /empty/);
    table.push(0, keyWords(1), 0, keyLength(1), 1);
    assert.throws(() => table.push(0, keyWords(2), 0, keyLength(2), 2), /full/);
  });
});
