// Proves the engine keeps README "Ledger semantics" on random command logs: fast-check generates batches over a
// small universe (2 partners, 4 accounts each, 2 currencies, boundary amounts, reused ids, holds, atomic groups,
// moving time), and each property checks the engine against a plain reference ledger (core/testing), against
// money conservation, or against itself (duplicates, replay, snapshot and restore).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Engine, InvalidCommandError, type Command, type Result } from "./index.ts";
import { ReferenceLedger } from "./testing/reference-ledger.ts";

const PARTNERS = ["p1", "p2"];
const ACCOUNTS = ["a1", "a2", "a3", "a4"];
const CURRENCIES = ["USD", "EUR"];
const MAX = Number.MAX_SAFE_INTEGER;
const T0 = 1_000_000;
/**
 * Caps each property's time, for a long shrink above all: fast-check then reports the smallest failing log found
 * so far. (A passing property runs in 0.2-2 s; the last test checks enough commands were generated.)
 */
const SHRINK_LIMIT_MS = 5_000;

const BIG = { accountsMax: 1024, partnersMax: 64, holdsMax: 4096, idempotencyCommandsMax: 4096, ringSlots: 1024 };
/** A 60 ms window, so ids age out between batches. */
const AGED = { ...BIG, idempotencyRetentionMs: 60 };
/**
 * The smallest window the engine takes (1000 commands, one atomic group), with filler batches of 200-900
 * commands between the random ones, so ids are evicted by count.
 */
const FULL = { ...BIG, idempotencyCommandsMax: 1000 };
const CONFIGS = [
  { name: "large window", options: BIG, filler: false },
  { name: "60 ms window (eviction by age)", options: AGED, filler: false },
  { name: "1000-command window with filler (eviction by count)", options: FULL, filler: true },
] as const;

// ---------------------------------------------------------------------------------------------------------------
// Generation: specs are plain numbers and tags (they shrink well); `resolve` turns them into commands, pointing
// hold ids and re-sends at earlier commands of the same log.

const amount = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 100 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 0.5, 1.5, MAX, MAX - 1, 2 ** 53) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: MAX }) },
);
const limit = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 60 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, MAX, MAX - 50, 2 ** 53) },
);

const OPS = [
  ["openAccount", 2], ["credit", 4], ["debit", 3], ["transfer", 3], ["hold", 4], ["capture", 3], ["release", 2],
  ["check", 2], ["setOverdraftLimit", 1], ["freeze", 1], ["unfreeze", 1], ["close", 1], ["resend", 3], ["mutate", 1],
] as const;

const spec = fc.record({
    op: fc.oneof(...OPS.map(([op, weight]) => ({ weight, arbitrary: fc.constant(op) }))),
    id: fc.oneof({ weight: 3, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 5 }) }),
    partner: fc.integer({ min: 0, max: 1 }),
    account: fc.integer({ min: 0, max: 3 }),
    other: fc.integer({ min: 0, max: 3 }),
    currency: fc.option(fc.integer({ min: 0, max: 1 }), { freq: 3 }),
    amount,
    optionalAmount: fc.option(amount, { freq: 2 }),
    limit: fc.option(limit, { freq: 2 }),
    expiresInMs: fc.option(fc.integer({ min: 1, max: 100 }), { freq: 2 }),
    ref: fc.nat(63),
  });
type Spec = typeof spec extends fc.Arbitrary<infer T> ? T : never;

/** A batch: atomic or not, its time step (sometimes backwards: the stamp must not move), its commands. */
const batchSpec = (maxCommands: number, minCommands = 1) =>
  fc.record({
    atomic: fc.boolean(),
    dt: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 40 }) }, { weight: 1, arbitrary: fc.constant(-10) }),
    specs: fc.array(spec, { minLength: minCommands, maxLength: maxCommands }),
    filler: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 200, max: 900 }) }),
  });

/** Accounts opened (and funded) before the random part, so most commands find an account: each slot 5 in 6. */
const prelude = fc.array(
  fc.option(
    fc.record({
      currency: fc.integer({ min: 0, max: 1 }),
      // Often a limit of 0 and funds of 0 or 2^53-2, so small credits and credits of 2^53-1 meet the overflow bound.
      limit: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 30 }) }),
      funds: fc.oneof(
        { weight: 2, arbitrary: fc.constant(0) },
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 200 }) },
        { weight: 1, arbitrary: fc.constant(MAX - 2) },
      ),
    }),
    { freq: 6 },
  ),
  { minLength: 8, maxLength: 8 },
);

interface Batch {
  commands: Command[];
  atomic: boolean;
  timeMs: number;
  /** Filler: credits to an account that does not exist, only to fill the window. */
  filler?: boolean;
}

/**
 * A random log: a prelude batch, then up to `maxBatches` random batches of up to `maxCommands` commands (with
 * `filler`, some preceded by a filler batch).
 */
function log(options: { maxBatches: number; maxCommands: number; filler?: boolean; minBatches?: number; minCommands?: number }): fc.Arbitrary<Batch[]> {
  const batches = fc.array(batchSpec(options.maxCommands, options.minCommands), {
    minLength: options.minBatches ?? 1,
    maxLength: options.maxBatches,
  });
  return fc.tuple(prelude, batches).map(([opens, specs]) => resolve(opens, specs, options.filler ?? false));
}

function resolve(
  opens: ({ currency: number; limit: number; funds: number } | null)[],
  batches: { atomic: boolean; dt: number; specs: Spec[]; filler: number }[],
  filler: boolean,
): Batch[] {
  let fresh = 0;
  const history: Command[] = [];
  const holds: { partnerId: string; id: string }[] = [];
  const setup: Command[] = [];
  for (const [slot, o] of opens.entries()) {
    if (o === null) continue;
    const partnerId = PARTNERS[slot >> 2];
    const accountId = ACCOUNTS[slot & 3];
    const currency = CURRENCIES[o.currency];
    setup.push({ type: "openAccount", id: `o${fresh++}`, partnerId, accountId, currency, overdraftLimit: o.limit });
    if (o.funds > 0) setup.push({ type: "credit", id: `o${fresh++}`, partnerId, accountId, amount: o.funds });
  }
  const out: Batch[] = [{ commands: setup, atomic: false, timeMs: T0 }];
  let time = T0;
  for (const b of batches) {
    time += b.dt;
    if (filler && b.filler > 0) {
      const commands: Command[] = [];
      for (let i = 0; i < b.filler; i++) {
        commands.push({ type: "credit", id: `f${fresh++}`, partnerId: "p9", accountId: "none", amount: 1 });
      }
      const batch: Batch = { commands, atomic: false, timeMs: time, filler: true };
      // fast-check prints a filler batch in one line, not 900 commands.
      const ids = `${commands[0].id}..${commands.at(-1)!.id}`;
      const text = `{"filler":"${commands.length} credits p9/none ${ids}","timeMs":${time}}`;
      out.push(Object.defineProperty(batch, fc.toStringMethod, { value: () => text }));
    }
    let commands = b.specs.map((s) => command(s));
    if (b.atomic) {
      // An atomic group is one partner's, with distinct ids and no checks; anything else is an InvalidCommandError.
      const ids = new Set<string>();
      commands = commands.filter((c) => {
        if (c.partnerId !== commands[0].partnerId || c.id === undefined || ids.has(c.id)) return false;
        ids.add(c.id);
        return true;
      });
      if (commands.length === 0) continue;
    }
    history.push(...commands);
    for (const c of commands) if (c.type === "hold") holds.push({ partnerId: c.partnerId, id: c.id });
    out.push({ commands, atomic: b.atomic, timeMs: time });
  }
  if (out[0].commands.length === 0) out.shift();
  return out;

  function command(s: Spec): Command {
    const id = s.id === -1 ? `c${fresh++}` : `r${s.id}`;
    const partnerId = PARTNERS[s.partner];
    const accountId = ACCOUNTS[s.account];
    const currency = s.currency === null ? undefined : CURRENCIES[s.currency];
    const earlier = history.length > 0 ? history[history.length - 1 - (s.ref % history.length)] : undefined;
    switch (s.op) {
      case "openAccount": {
        const limit = s.limit === null ? {} : { overdraftLimit: s.limit };
        return { type: "openAccount", id, partnerId, accountId, currency: CURRENCIES[s.currency ?? 0], ...limit };
      }
      case "credit":
      case "debit":
        return { type: s.op, id, partnerId, accountId, amount: s.amount, ...(currency === undefined ? {} : { currency }) };
      case "transfer":
        return { type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId: ACCOUNTS[s.other], amount: s.amount };
      case "hold": {
        const expiry = s.expiresInMs === null ? {} : { expiresInMs: s.expiresInMs };
        return { type: "hold", id, partnerId, accountId, amount: s.amount, ...expiry };
      }
      case "capture":
      case "release": {
        // Mostly an earlier hold; sometimes an id that may name nothing.
        const hold = holds.length > 0 && s.ref % 4 !== 3 ? holds[s.ref % holds.length] : { partnerId, id: `r${s.account}` };
        if (s.op === "release") return { type: "release", id, partnerId: hold.partnerId, holdId: hold.id };
        const part = s.optionalAmount === null ? {} : { amount: s.optionalAmount };
        return { type: "capture", id, partnerId: hold.partnerId, holdId: hold.id, ...part };
      }
      case "check":
        return { type: "check", partnerId, accountId, amount: s.amount };
      case "setOverdraftLimit":
        return { type: "setOverdraftLimit", id, partnerId, accountId, overdraftLimit: s.limit ?? 0 };
      case "freeze":
      case "unfreeze":
      case "close":
        return { type: s.op, id, partnerId, accountId };
      case "resend":
        // The same command again: a duplicate while the window remembers it.
        return earlier ? { ...earlier } : { type: "check", partnerId, accountId, amount: s.amount };
      case "mutate": {
        // The same id with one field changed: id_reused while the window remembers it.
        if (!earlier || earlier.type === "check") return { type: "freeze", id, partnerId, accountId };
        const c = { ...earlier } as Record<string, unknown>;
        if (typeof c.amount === "number") c.amount = c.amount === s.amount ? c.amount + 1 : s.amount;
        else if (typeof c.accountId === "string") c.accountId = ACCOUNTS[(ACCOUNTS.indexOf(c.accountId) + 1) % 4];
        else if (typeof c.holdId === "string") c.holdId = `${c.holdId}x`;
        return c as unknown as Command;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const run = (engine: Engine | ReferenceLedger, b: Batch): Result[] =>
  engine.execute(b.commands, { atomic: b.atomic, timeMs: b.timeMs });

function* universe(): Generator<[string, string]> {
  for (const p of PARTNERS) for (const a of ACCOUNTS) yield [p, a];
}

/** Commands generated by the properties in this run; the last test asserts there were at least 10,000. */
let generated = 0;
const count = (batches: Batch[]): Batch[] => {
  for (const b of batches) if (!b.filler) generated += b.commands.length;
  return batches;
};

// ---------------------------------------------------------------------------------------------------------------

describe("ledger properties", () => {
  for (const { name, options, filler } of CONFIGS) {
    test(`model-based, ${name}: results and accounts equal the reference ledger's, batch by batch`, () => {
      fc.assert(
        fc.property(log({ maxBatches: 12, maxCommands: 8, filler }), (batches) => {
          count(batches);
          const engine = new Engine(options);
          const reference = new ReferenceLedger(options);
          const sent = new Set<string>();
          for (const [i, b] of batches.entries()) {
            assert.deepEqual(run(engine, b), run(reference, b), `results of batch ${i}`);
            assert.equal(engine.lastSequence, reference.lastSequence, `lastSequence after batch ${i}`);
            assert.equal(engine.timeMs, reference.timeMs, `timeMs after batch ${i}`);
            for (const [p, a] of universe()) {
              const got = engine.account(p, a);
              const want = reference.account(p, a);
              assert.deepEqual(got, want, `account ${p}/${a} after batch ${i}`);
            }
            // The window holds the same ids with the same results, for every id ever sent.
            for (const c of b.commands) if (c.id !== undefined) sent.add(JSON.stringify([c.partnerId, c.id]));
            for (const pair of sent) {
              const [p, id] = JSON.parse(pair) as [string, string];
              const want = reference.storedResult(p, id);
              assert.deepEqual(engine.storedResult(p, id), want, `stored result of ${p}/${id} after batch ${i}`);
            }
          }
        }),
        { numRuns: filler ? 40 : 120, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
      );
    });
  }

  test("model-based, one drain of many published units (as a durable shard drains): results equal the reference's", () => {
    // Batches far bigger than the ledger's prefetch chunk (256 slots), with atomic groups across chunk boundaries and
    // ids re-sent within the same drain: what a prefetched chunk knew must never answer for what changed since.
    const options = { ...BIG, ringSlots: 4096 };
    fc.assert(
      fc.property(log({ minBatches: 30, maxBatches: 60, minCommands: 12, maxCommands: 40 }), (batches) => {
        count(batches);
        const engine = new Engine(options);
        const reference = new ReferenceLedger(options);
        const published: { batch: Batch; first: number }[] = [];
        for (const b of batches) {
          if (b.atomic) {
            try {
              engine.checkGroup(b.commands);
            } catch {
              continue; // not a group the engine takes: execute would refuse it before sequencing, as it refuses here
            }
          }
          assert.ok(engine.tryPublish(b.commands, 0, b.commands.length, b.atomic, b.timeMs), "the ring has room");
          published.push({ batch: b, first: engine.sequencer.cursor.value - b.commands.length + 1 });
        }
        assert.ok(engine.sequencer.cursor.value - engine.lastSequence > 256, "one drain spans several prefetch chunks");
        engine.drain();
        for (const [i, { batch, first }] of published.entries()) {
          const got = batch.commands.map((c, k) => engine.resultAt((first + k) & engine.ring.mask, c.id ?? ""));
          assert.deepEqual(got, run(reference, batch), `results of unit ${i}`);
        }
        for (const [p, a] of universe()) assert.deepEqual(engine.account(p, a), reference.account(p, a), `account ${p}/${a}`);
        assert.equal(engine.stateHash(), Engine.restore(engine.snapshot(), options).stateHash());
      }),
      { numRuns: 60, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
    );
  });

  test("money is conserved, held equals the open holds, and no debit or hold takes available below zero", () => {
    fc.assert(
      fc.property(log({ maxBatches: 12, maxCommands: 8 }), (batches) => {
        count(batches);
        const engine = new Engine(BIG);
        // Open holds as the results report them: partner/hold -> account, amount, expiry; and every hold's amount.
        const open = new Map<string, { account: string; amount: number; expiresAt: number }>();
        const amounts = new Map<string, number>();
        /** The sum of balances (exact), and each account's available; checks held and the bounds on the way. */
        const sums = () => {
          let balance = 0n;
          const available = new Map<string, number>();
          for (const [p, a] of universe()) {
            const account = engine.account(p, a);
            if (!account) continue;
            const name = `${p}/${a}`;
            balance += BigInt(account.balance);
            available.set(name, account.available);
            let held = 0;
            for (const hold of open.values()) if (hold.account === name) held += hold.amount;
            assert.equal(account.held, held, `held of ${name} = its open holds`);
            assert.ok(account.balance + account.overdraftLimit <= MAX, `balance + overdraftLimit <= 2^53-1 on ${name}`);
            assert.equal(account.available, account.balance - account.held + account.overdraftLimit);
          }
          return { balance, available };
        };
        let before = sums();
        for (const b of batches) {
          const results = run(engine, b);
          const now = engine.timeMs;
          // Holds due at this batch's stamped time expired before its first command.
          for (const [name, hold] of open) if (hold.expiresAt <= now) open.delete(name);
          let expected = before.balance;
          const limitChanged = new Set<string>();
          for (const [i, c] of b.commands.entries()) {
            const r = results[i];
            if (r.status !== "ok" || r.duplicate) continue;
            switch (c.type) {
              case "credit":
                expected += BigInt(c.amount);
                break;
              case "debit":
                expected -= BigInt(c.amount);
                break;
              case "hold":
                open.set(`${c.partnerId}/${c.id}`, {
                  account: `${c.partnerId}/${c.accountId}`,
                  amount: c.amount,
                  expiresAt: c.expiresInMs === undefined ? Infinity : now + c.expiresInMs,
                });
                amounts.set(`${c.partnerId}/${c.id}`, c.amount);
                break;
              case "capture":
                expected -= BigInt(c.amount ?? amounts.get(`${c.partnerId}/${c.holdId}`)!);
                open.delete(`${c.partnerId}/${c.holdId}`);
                break;
              case "release":
                open.delete(`${c.partnerId}/${c.holdId}`);
                break;
              case "setOverdraftLimit":
                limitChanged.add(`${c.partnerId}/${c.accountId}`);
                break;
            }
            if (c.type === "debit" || c.type === "hold" || c.type === "transfer") {
              assert.ok(r.available! >= 0, `ok ${c.type} left available ${r.available}`);
            }
          }
          const after = sums();
          assert.equal(after.balance, expected, "sum of balances moves by ok credits - debits - captures");
          for (const [account, available] of after.available) {
            const was = before.available.get(account) ?? 0;
            // Below zero only after a lowered limit; from there nothing may push it further down.
            const why = `available of ${account} fell to ${available} from ${was}`;
            if (available < 0) assert.ok(limitChanged.has(account) || available >= was, why);
          }
          before = after;
        }
      }),
      { numRuns: 100, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
    );
  });

  test("a duplicate never changes state: re-sending executed commands changes nothing but the sequence", () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONFIGS), fc.gen(), ({ options, filler }, gen) => {
        const batches = count(gen(() => log({ maxBatches: 10, maxCommands: 8, filler })));
        // Twins: after each batch, `engine` re-sends every command sent so far that the window still remembers;
        // `twin` spends the same sequences on checks.
        const engine = new Engine(options);
        const twin = new Engine(options);
        const sent: Command[] = [];
        for (const b of batches) {
          run(engine, b);
          run(twin, b);
          if (!b.filler) sent.push(...b.commands);
          const again = sent.filter((c) => c.id !== undefined && engine.storedResult(c.partnerId, c.id) !== undefined);
          const stored = again.map((c) => engine.storedResult(c.partnerId, c.id!));
          const results = engine.execute(again, { timeMs: engine.timeMs });
          const checks = again.map((): Command => ({ type: "check", partnerId: "p1", accountId: "none", amount: 1 }));
          twin.execute(checks, { timeMs: twin.timeMs });
          for (const [i, r] of results.entries()) {
            if (r.code !== "id_reused") assert.deepEqual(r, stored[i], `re-sent ${again[i].partnerId}/${again[i].id}`);
          }
          assert.equal(engine.stateHash(), twin.stateHash(), "state after re-sending");
        }
      }),
      { numRuns: 100, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
    );
  });

  test("replay: the same log gives the same results and state; snapshot + restore + the rest gives the same end", () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONFIGS), fc.gen(), fc.nat(), ({ options, filler }, gen, cut) => {
        const batches = count(gen(() => log({ maxBatches: 10, maxCommands: 8, filler })));
        const at = cut % (batches.length + 1);
        const first = new Engine(options);
        const results: Result[][] = [];
        let snapshot: Uint8Array | undefined;
        let hashAtCut = first.stateHash();
        if (at === 0) snapshot = first.snapshot();
        for (const [i, b] of batches.entries()) {
          results.push(run(first, b));
          if (i + 1 === at) {
            snapshot = first.snapshot();
            hashAtCut = first.stateHash();
          }
        }
        const second = new Engine(options);
        assert.deepEqual(batches.map((b) => run(second, b)), results);
        assert.equal(second.stateHash(), first.stateHash());
        assert.deepEqual(second.snapshot(), first.snapshot());

        const restored = Engine.restore(snapshot!, options);
        assert.equal(restored.stateHash(), hashAtCut);
        assert.deepEqual(batches.slice(at).map((b) => run(restored, b)), results.slice(at));
        assert.equal(restored.stateHash(), first.stateHash());
        assert.equal(restored.lastSequence, first.lastSequence);
      }),
      { numRuns: 100, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
    );
  });

  test("a group spanning partners or repeating an id throws InvalidCommandError and applies nothing", () => {
    fc.assert(
      fc.property(log({ maxBatches: 4, maxCommands: 6 }), fc.boolean(), (batches, spanPartners) => {
        count(batches);
        const engine = new Engine(BIG);
        for (const b of batches) run(engine, b);
        const hash = engine.stateHash();
        const sequence = engine.lastSequence;
        const credit: Command = { type: "credit", id: "g1", partnerId: "p1", accountId: "a1", amount: 1 };
        const bad: Command[] = spanPartners
          ? [credit, { ...credit, id: "g2", partnerId: "p2" }]
          : [credit, { type: "debit", id: "g1", partnerId: "p1", accountId: "a1", amount: 1 }];
        assert.throws(() => engine.execute(bad, { atomic: true, timeMs: engine.timeMs + 1 }), InvalidCommandError);
        assert.equal(engine.stateHash(), hash);
        assert.equal(engine.lastSequence, sequence);
      }),
      { numRuns: 30, interruptAfterTimeLimit: SHRINK_LIMIT_MS },
    );
  });

  test("the properties above generated at least 10,000 commands", () => {
    assert.ok(generated >= 10_000, `only ${generated} commands generated`);
  });
});
