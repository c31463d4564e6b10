// Proves snapshots are exact, deterministic and tamper-evident by restoring them next to the engine they came from,
// replaying the same later batches on both and comparing results, accounts, hashes and bytes, and by corrupting them:
// flipped bytes, and bodies re-encoded with a field out of range under a valid checksum.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Snapshot } from "./gen/hotledger/v1/ledger_pb.ts";
import { reframed } from "./testing/reframed.ts";
import { Engine, limits, SnapshotError, type Account, type Command, type Result } from "./index.ts";

type EngineOptions = NonNullable<ConstructorParameters<typeof Engine>[0]>;

const P = "partner-1";
const Q = "partner-2";
const T0 = 1_000_000;
const EXPIRY_MS = 5_000;
const OPTIONS: EngineOptions = { accountsMax: 1024, partnersMax: 64, holdsMax: 256, idempotencyCommandsMax: 1024 };
const ACCOUNTS: Array<[string, string]> = [[P, "a"], [P, "b"], [P, "c"], [P, "u"], [Q, "a"], [P, "never"]];

interface Batch {
  commands: Command[];
  timeMs: number;
  atomic?: boolean;
}

function newEngine(overrides: EngineOptions = {}): Engine {
  return new Engine({ ...OPTIONS, clock: () => 0, ...overrides });
}

function runBatch(engine: Engine, batch: Batch): Result[] {
  return engine.execute(batch.commands, { timeMs: batch.timeMs, atomic: batch.atomic ?? false });
}

function accounts(engine: Engine): Array<Account | undefined> {
  return ACCOUNTS.map(([partnerId, accountId]) => engine.account(partnerId, accountId));
}

/** The failed group of HISTORY, retried in FUTURE. */
const FAILED_GROUP: Command[] = [
  { type: "credit", id: "g1", partnerId: P, accountId: "a", amount: 1 },
  { type: "debit", id: "g2", partnerId: P, accountId: "a", amount: 1_000_000 },
];

/** Every kind of state: partners, currencies, limits, statuses, open/closed/expiring holds, window entries. */
const HISTORY: Batch[] = [
  {
    timeMs: T0,
    commands: [
      { type: "openAccount", id: "o-a", partnerId: P, accountId: "a", currency: "EUR" },
      { type: "openAccount", id: "o-b", partnerId: P, accountId: "b", currency: "EUR" },
      { type: "openAccount", id: "o-c", partnerId: P, accountId: "c", currency: "EUR", overdraftLimit: 300 },
      { type: "openAccount", id: "o-u", partnerId: P, accountId: "u", currency: "USD" },
      { type: "openAccount", id: "o-a", partnerId: Q, accountId: "a", currency: "GBP" },
      { type: "credit", id: "c1", partnerId: P, accountId: "a", amount: 1000 },
      { type: "credit", id: "c1", partnerId: Q, accountId: "a", amount: 70 },
      { type: "transfer", id: "t1", partnerId: P, fromAccountId: "a", toAccountId: "b", amount: 250 },
      { type: "debit", id: "d1", partnerId: P, accountId: "c", amount: 120 },
    ],
  },
  {
    timeMs: T0 + 10,
    commands: [
      { type: "hold", id: "h-exp", partnerId: P, accountId: "a", amount: 100, expiresInMs: EXPIRY_MS },
      { type: "hold", id: "h-open", partnerId: P, accountId: "a", amount: 50 },
      { type: "hold", id: "h-cap", partnerId: P, accountId: "b", amount: 40 },
      { type: "capture", id: "k1", partnerId: P, holdId: "h-cap", amount: 30 },
      { type: "hold", id: "h-rel", partnerId: P, accountId: "b", amount: 20 },
      { type: "release", id: "r1", partnerId: P, holdId: "h-rel" },
      { type: "debit", id: "d-big", partnerId: P, accountId: "u", amount: 5 },
      { type: "setOverdraftLimit", id: "l1", partnerId: P, accountId: "b", overdraftLimit: 15 },
      { type: "freeze", id: "f1", partnerId: P, accountId: "u" },
    ],
  },
  { timeMs: T0 + 20, atomic: true, commands: FAILED_GROUP },
];

/** What happens after the snapshot: retries, expiry, captures, new money. */
const FUTURE: Batch[] = [
  {
    timeMs: T0 + 30,
    commands: [
      { type: "credit", id: "c1", partnerId: P, accountId: "a", amount: 1000 },
      { type: "debit", id: "d-big", partnerId: P, accountId: "u", amount: 5 },
      { type: "credit", id: "c1", partnerId: P, accountId: "a", amount: 999 },
      { type: "capture", id: "k2", partnerId: P, holdId: "h-cap" },
      { type: "release", id: "r2", partnerId: P, holdId: "h-rel" },
      { type: "check", partnerId: P, accountId: "a", amount: 600 },
      { type: "credit", id: "c2", partnerId: P, accountId: "u", amount: 5 },
    ],
  },
  { timeMs: T0 + 40, atomic: true, commands: FAILED_GROUP },
  { timeMs: T0 + 10 + EXPIRY_MS - 1, commands: [{ type: "check", partnerId: P, accountId: "a", amount: 651 }] },
  {
    timeMs: T0 + 10 + EXPIRY_MS,
    commands: [
      { type: "check", partnerId: P, accountId: "a", amount: 701 },
      { type: "capture", id: "k3", partnerId: P, holdId: "h-exp" },
      { type: "capture", id: "k4", partnerId: P, holdId: "h-open", amount: 10 },
      { type: "unfreeze", id: "uf1", partnerId: P, accountId: "u" },
      { type: "credit", id: "c3", partnerId: P, accountId: "u", amount: 5 },
      { type: "openAccount", id: "o-n", partnerId: Q, accountId: "n", currency: "EUR" },
      { type: "transfer", id: "t2", partnerId: P, fromAccountId: "c", toAccountId: "b", amount: 400 },
    ],
  },
];

function historyEngine(overrides: EngineOptions = {}): Engine {
  const engine = newEngine(overrides);
  for (const batch of HISTORY) runBatch(engine, batch);
  return engine;
}

function expectSnapshotError(bytes: Uint8Array, label: string): void {
  assert.throws(
    () => Engine.restore(bytes, OPTIONS),
    (error: unknown) => {
      assert.ok(error instanceof SnapshotError, `${label}: expected SnapshotError, got ${String(error)}`);
      assert.equal(error.name, "SnapshotError");
      return true;
    },
    label,
  );
}

describe("snapshot and restore", () => {
  test("restore gives the same hash, accounts, sequence and time, and identical results afterwards", () => {
    const original = historyEngine();
    const bytes = original.snapshot();
    assert.ok(bytes instanceof Uint8Array);
    for (const restored of [Engine.restore(bytes, OPTIONS), Engine.restore(bytes)]) {
      assert.equal(restored.stateHash(), original.stateHash());
      assert.deepEqual(accounts(restored), accounts(original));
      assert.equal(restored.lastSequence, original.lastSequence);
      assert.equal(restored.timeMs, original.timeMs);
    }
    const restored = Engine.restore(bytes, OPTIONS);
    for (const batch of FUTURE) assert.deepEqual(runBatch(restored, batch), runBatch(original, batch));
    assert.equal(restored.stateHash(), original.stateHash());
    assert.deepEqual(restored.snapshot(), original.snapshot());
    assert.deepEqual(accounts(restored), accounts(original));
  });

  test("the same state gives identical bytes: twice from one engine, from twin engines, after a round trip", () => {
    const left = historyEngine();
    const right = historyEngine();
    const bytes = left.snapshot();
    assert.deepEqual(left.snapshot(), bytes);
    assert.deepEqual(right.snapshot(), bytes);
    assert.deepEqual(Engine.restore(bytes, OPTIONS).snapshot(), bytes);
    runBatch(right, { timeMs: T0 + 30, commands: [{ type: "credit", id: "x1", partnerId: P, accountId: "a", amount: 1 }] });
    assert.notDeepEqual(right.snapshot(), bytes, "a different state gives different bytes");
  });

  test("an empty engine round-trips", () => {
    const engine = newEngine();
    const restored = Engine.restore(engine.snapshot(), OPTIONS);
    assert.equal(restored.stateHash(), engine.stateHash());
    assert.equal(restored.lastSequence, 0);
    assert.deepEqual(restored.snapshot(), engine.snapshot());
  });

  test("snapshot bytes and the restored engine are independent of the original", () => {
    const original = historyEngine();
    const bytes = original.snapshot();
    const copy = bytes.slice();
    const restored = Engine.restore(bytes, OPTIONS);
    const before = accounts(restored);
    runBatch(original, { timeMs: T0 + 30, commands: [{ type: "credit", id: "x1", partnerId: P, accountId: "a", amount: 1 }] });
    assert.deepEqual(bytes, copy, "later commands do not write into earlier snapshot bytes");
    assert.deepEqual(accounts(restored), before, "later commands on the original do not reach the restored engine");
    bytes.fill(0);
    runBatch(restored, { timeMs: T0 + 30, commands: [{ type: "credit", id: "x1", partnerId: P, accountId: "a", amount: 1 }] });
    assert.deepEqual(accounts(restored), accounts(original), "the restored engine does not read the bytes again");
  });

  test("restore keeps the idempotency window: duplicates, id_reused and failed-group retries answer as before", () => {
    const original = historyEngine();
    const restored = Engine.restore(original.snapshot(), OPTIONS);
    for (const id of ["c1", "t1", "d-big", "h-exp", "k1", "g1", "g2"]) {
      assert.deepEqual(restored.storedResult(P, id), original.storedResult(P, id), id);
      assert.equal(restored.storedResult(P, id)?.duplicate, true, id);
    }
    const retry = restored.execute([{ type: "credit", id: "c1", partnerId: P, accountId: "a", amount: 1000 }], { timeMs: T0 + 30 });
    assert.equal(retry[0].duplicate, true);
    assert.deepEqual(retry[0], original.storedResult(P, "c1"));
    const reused = restored.execute([{ type: "credit", id: "c1", partnerId: P, accountId: "a", amount: 1 }], { timeMs: T0 + 30 });
    assert.equal(reused[0].code, "id_reused");
    const group = restored.execute(FAILED_GROUP, { timeMs: T0 + 30, atomic: true });
    assert.deepEqual(group.map((result) => [result.code, result.duplicate]), [["linked_failed", true], ["insufficient_funds", true]]);
    assert.deepEqual(accounts(restored), accounts(original), "none of these changed an account");
  });

  test("restore keeps holds: open ones capture, closed ones say hold_closed, expiring ones expire on time", () => {
    const original = historyEngine();
    const restored = Engine.restore(original.snapshot(), OPTIONS);
    const a = (): Account => restored.account(P, "a")!;
    assert.deepEqual([a().balance, a().held, a().available], [750, 150, 600]);
    const closed = restored.execute(
      [{ type: "capture", id: "k9", partnerId: P, holdId: "h-cap" }, { type: "capture", id: "k10", partnerId: P, holdId: "h-rel" }],
      { timeMs: T0 + 30 },
    );
    assert.deepEqual(closed.map((result) => result.code), ["hold_closed", "hold_closed"]);
    restored.execute([{ type: "check", partnerId: P, accountId: "b", amount: 1 }], { timeMs: T0 + 10 + EXPIRY_MS - 1 });
    assert.equal(a().held, 150, "one millisecond before expiry the hold is still there");
    restored.execute([{ type: "check", partnerId: P, accountId: "b", amount: 1 }], { timeMs: T0 + 10 + EXPIRY_MS });
    assert.deepEqual([a().balance, a().held, a().available], [750, 50, 700], "h-exp expired without being touched");
    const late = restored.execute([{ type: "capture", id: "k11", partnerId: P, holdId: "h-exp" }], { timeMs: T0 + 10 + EXPIRY_MS });
    assert.equal(late[0].code, "hold_expired");
    const open = restored.execute([{ type: "capture", id: "k12", partnerId: P, holdId: "h-open" }], { timeMs: T0 + 10 + EXPIRY_MS });
    assert.equal(open[0].code, "ok");
    assert.deepEqual([a().balance, a().held, a().available], [700, 0, 700]);
  });

  test("restore into larger tables works; into smaller tables than the snapshot's is refused with SnapshotError", () => {
    const original = historyEngine();
    const bytes = original.snapshot();
    const larger = Engine.restore(bytes, { ...OPTIONS, accountsMax: 2048, holdsMax: 512 });
    assert.deepEqual(accounts(larger), accounts(original));
    for (const batch of FUTURE) assert.deepEqual(runBatch(larger, batch), runBatch(original, batch));
    for (const smaller of [{ accountsMax: 512 }, { holdsMax: 128 }, { idempotencyCommandsMax: 512 }, { partnersMax: 32 }]) {
      assert.throws(() => Engine.restore(bytes, { ...OPTIONS, ...smaller }), SnapshotError, JSON.stringify(smaller));
    }
  });
});

describe("corrupt snapshots", () => {
  test("a flipped byte anywhere is a SnapshotError", () => {
    const bytes = historyEngine().snapshot();
    const positions =
      bytes.length <= 4096
        ? Array.from({ length: bytes.length }, (_, index) => index)
        : Array.from({ length: 4096 }, (_, index) => Math.floor((index * (bytes.length - 1)) / 4095));
    for (const position of positions) {
      for (const mask of [0xff, 0x01]) {
        const corrupt = bytes.slice();
        corrupt[position] ^= mask;
        expectSnapshotError(corrupt, `byte ${position} of ${bytes.length} ^ ${mask}`);
      }
    }
  });

  test("truncated or extended bytes are a SnapshotError", () => {
    const bytes = historyEngine().snapshot();
    for (const length of [0, 1, 4, 15, 16, 17, bytes.length >> 1, bytes.length - 1]) {
      expectSnapshotError(bytes.slice(0, length), `truncated to ${length} of ${bytes.length}`);
    }
    const extended = new Uint8Array(bytes.length + 1);
    extended.set(bytes);
    expectSnapshotError(extended, "one byte appended");
  });

  test("a checksummed body with a size or count out of range is a SnapshotError naming it, never a RangeError", () => {
    const bytes = historyEngine().snapshot();
    assert.deepEqual(reframed(bytes, () => {}), bytes, "re-encoding an unaltered body gives the same frame");
    const cases: Array<[string, (message: Snapshot) => void, RegExp]> = [
      ["accounts_max 0", (m) => (m.accountsMax = 0), /table size out of range: accountsMax/],
      ["accounts_max over ACCOUNTS_MAX", (m) => (m.accountsMax = limits.ACCOUNTS_MAX + 1), /accountsMax/],
      ["holds_max 2^32-1", (m) => (m.holdsMax = 2 ** 32 - 1), /holdsMax/],
      ["partners_max 2^31", (m) => (m.partnersMax = 2 ** 31), /partnersMax/],
      ["idempotency_commands_max under one group", (m) => (m.idempotencyCommandsMax = limits.GROUP_COMMANDS_MAX - 1), /idempotencyCommandsMax/],
      ["idempotency_retention_ms 0", (m) => (m.idempotencyRetentionMs = 0n), /idempotencyRetentionMs/],
      ["idempotency_retention_ms negative", (m) => (m.idempotencyRetentionMs = -1n), /idempotency_retention_ms out of range/],
      ["more accounts than the body has rows", (m) => (m.accounts!.count = 1000), /column accounts\.\w+ has \d+ bytes, want/],
      ["more accounts than accounts_max", (m) => (m.accounts!.count = 2 ** 32 - 1), /accounts, room for/],
      ["more closed holds than holds", (m) => (m.holds!.closedCount = m.holds!.count + 1), /closed holds of \d+ holds/],
      ["more window entries than idempotency_commands_max", (m) => (m.window!.count = 2 ** 32 - 1), /window entries, room for/],
      ["a key length past the key bytes", (m) => m.accounts!.keyLength.fill(limits.KEY_BYTES_MAX), /account key \d+ has a bad length/],
    ];
    for (const [label, alter, message] of cases) {
      const altered = reframed(bytes, alter);
      for (const options of [undefined, OPTIONS]) {
        assert.throws(() => Engine.restore(altered, options), (error: unknown) => {
          assert.ok(error instanceof SnapshotError, `${label}: expected SnapshotError, got ${String(error)}`);
          assert.match(error.message, message, label);
          return true;
        }, `${label}, options ${JSON.stringify(options)}`);
      }
    }
  });
});
