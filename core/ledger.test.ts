// Proves every rule of README "Ledger semantics" and every result code by driving small Engines with explicit
// stamped times and asserting both the results they return and the accounts, hashes and sequences they leave behind.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Engine, InvalidCommandError, RESULT_CODES, type Account, type Command, type Result } from "./index.ts";
import { seededRandom } from "./testing/random.ts";

type ResultCode = (typeof RESULT_CODES)[number];
type EngineOptions = NonNullable<ConstructorParameters<typeof Engine>[0]>;
type Of<T extends Command["type"]> = Extract<Command, { type: T }>;

const AMOUNT_MAX = Number.MAX_SAFE_INTEGER;
const P = "partner-1";
const T0 = 1_000_000;
const OPTIONS: EngineOptions = { accountsMax: 1024, partnersMax: 64, holdsMax: 256, idempotencyCommandsMax: 1024 };
/** Amounts README rejects `amount_invalid`: not an integer in 1..2^53-1. */
const INVALID_AMOUNTS = [0, -0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53];

/** A small engine whose clock is never the source of time: every test passes timeMs. */
function newEngine(overrides: EngineOptions = {}): Engine {
  return new Engine({ ...OPTIONS, clock: () => 0, ...overrides });
}

/** Command builders: the partner defaults to P, `extra` overrides any field. */
const cmd = {
  open: (id: string, accountId: string, extra: Partial<Of<"openAccount">> = {}): Command => ({
    type: "openAccount", id, partnerId: P, accountId, currency: "EUR", ...extra,
  }),
  credit: (id: string, accountId: string, amount: number, extra: Partial<Of<"credit">> = {}): Command => ({
    type: "credit", id, partnerId: P, accountId, amount, ...extra,
  }),
  debit: (id: string, accountId: string, amount: number, extra: Partial<Of<"debit">> = {}): Command => ({
    type: "debit", id, partnerId: P, accountId, amount, ...extra,
  }),
  transfer: (id: string, fromAccountId: string, toAccountId: string, amount: number): Command => ({
    type: "transfer", id, partnerId: P, fromAccountId, toAccountId, amount,
  }),
  hold: (id: string, accountId: string, amount: number, extra: Partial<Of<"hold">> = {}): Command => ({
    type: "hold", id, partnerId: P, accountId, amount, ...extra,
  }),
  capture: (id: string, holdId: string, extra: Partial<Of<"capture">> = {}): Command => ({
    type: "capture", id, partnerId: P, holdId, ...extra,
  }),
  release: (id: string, holdId: string, extra: Partial<Of<"release">> = {}): Command => ({
    type: "release", id, partnerId: P, holdId, ...extra,
  }),
  check: (accountId: string, amount: number, extra: Partial<Of<"check">> = {}): Command => ({
    type: "check", partnerId: P, accountId, amount, ...extra,
  }),
  limit: (id: string, accountId: string, overdraftLimit: number): Command => ({
    type: "setOverdraftLimit", id, partnerId: P, accountId, overdraftLimit,
  }),
  admin: (type: "freeze" | "unfreeze" | "close", id: string, accountId: string, partnerId = P): Command => ({
    type, id, partnerId, accountId,
  }),
};

function run(engine: Engine, commands: Command[], timeMs = T0, atomic = false): Result[] {
  const results = engine.execute(commands, { atomic, timeMs });
  assert.equal(results.length, commands.length, "one result per command");
  return results;
}

function one(engine: Engine, command: Command, timeMs = T0): Result {
  return run(engine, [command], timeMs)[0];
}

function expectCode(result: Result, code: ResultCode): void {
  assert.equal(result.code, code, `result ${JSON.stringify(result)}: expected ${code}`);
  assert.equal(result.status, code === "ok" ? "ok" : "rejected");
}

/** Runs one command, asserts its code and returns the result. */
function expect(engine: Engine, command: Command, code: ResultCode, timeMs = T0): Result {
  const result = one(engine, command, timeMs);
  expectCode(result, code);
  return result;
}

/** Every account id and partner the tests use: `accounts()` reads them all, so "nothing changed" is checkable. */
const ACCOUNT_IDS = ["a", "b", "c", "d", "e", "f", "u", "x", "y", "z", "other", "late", "nope", "pos", "neg", "held"];
const PARTNER_IDS = [P, "partner-2", "p1", "p2", "p3"];

/**
 * The ledger's state as users can see it: every account the tests may have touched (undefined when absent).
 * A rejected command or a duplicate still takes a sequence and may be stored in the idempotency window, so
 * `stateHash()` (which covers both) is not the measure of "changed nothing"; the accounts are.
 */
function accounts(engine: Engine): Array<Account | undefined> {
  return PARTNER_IDS.flatMap((partnerId) => ACCOUNT_IDS.map((accountId) => engine.account(partnerId, accountId)));
}

/** Runs one command that must be rejected with `code` and must not change any account. */
function expectRejected(engine: Engine, command: Command, code: ResultCode, timeMs = T0): Result {
  const before = accounts(engine);
  const result = expect(engine, command, code, timeMs);
  assert.deepEqual(accounts(engine), before, `${code} must not change any account`);
  return result;
}

function account(engine: Engine, accountId: string, partnerId = P): Account {
  const found = engine.account(partnerId, accountId);
  assert.ok(found, `account ${partnerId}/${accountId} exists`);
  return found;
}

/** The money fields of an account, for short assertions. */
function money(engine: Engine, accountId: string, partnerId = P): { balance: number; held: number; available: number } {
  const { balance, held, available } = account(engine, accountId, partnerId);
  return { balance, held, available };
}

/** Opens an account and credits it (when amount > 0); returns the engine for chaining. */
function funded(engine: Engine, accountId: string, amount: number, extra: Partial<Of<"openAccount">> = {}): Engine {
  expect(engine, cmd.open(`open:${accountId}:${extra.partnerId ?? P}`, accountId, extra), "ok");
  if (amount > 0) {
    expect(engine, cmd.credit(`fund:${accountId}:${extra.partnerId ?? P}`, accountId, amount, { partnerId: extra.partnerId ?? P }), "ok");
  }
  return engine;
}

/** Asserts the batch throws InvalidCommandError at `path` and that nothing was sequenced, stamped or applied. */
function expectInvalid(engine: Engine, commands: unknown[], path: string | undefined, atomic = false): void {
  const hash = engine.stateHash();
  const sequence = engine.lastSequence;
  const timeMs = engine.timeMs;
  assert.throws(
    () => engine.execute(commands as Command[], { atomic, timeMs: timeMs + 1 }),
    (error: unknown) => {
      assert.ok(error instanceof InvalidCommandError, `expected InvalidCommandError, got ${String(error)}`);
      assert.equal(error.name, "InvalidCommandError");
      assert.ok(error.message.length > 0);
      if (path !== undefined) assert.equal(error.path, path);
      return true;
    },
  );
  assert.equal(engine.stateHash(), hash, "state unchanged after InvalidCommandError");
  assert.equal(engine.lastSequence, sequence, "nothing sequenced after InvalidCommandError");
  assert.equal(engine.timeMs, timeMs, "nothing stamped after InvalidCommandError");
}

describe("openAccount", () => {
  test("opens with balance 0, limit 0, active; the result and the account agree", () => {
    const engine = newEngine();
    assert.equal(engine.lastSequence, 0);
    assert.equal(engine.account(P, "a"), undefined);
    const result = expect(engine, cmd.open("o1", "a"), "ok");
    assert.equal(result.id, "o1");
    assert.equal(result.seq, 1);
    assert.equal(result.balance, 0);
    assert.equal(result.held, 0);
    assert.equal(result.available, 0);
    assert.notEqual(result.duplicate, true);
    assert.deepEqual(engine.account(P, "a"), {
      partnerId: P, accountId: "a", currency: "EUR", balance: 0, held: 0, available: 0, overdraftLimit: 0,
      status: "active", seq: 1,
    });
    assert.equal(engine.lastSequence, 1);
    assert.equal(engine.timeMs, T0);
    assert.match(engine.stateHash(), /^[0-9a-f]+$/);
  });

  test("overdraftLimit makes available positive at balance 0; 0 and 2^53-1 are valid limits", () => {
    const engine = newEngine();
    const result = expect(engine, cmd.open("o1", "a", { overdraftLimit: 500 }), "ok");
    assert.equal(result.available, 500);
    assert.deepEqual(money(engine, "a"), { balance: 0, held: 0, available: 500 });
    assert.equal(account(engine, "a").overdraftLimit, 500);
    expect(engine, cmd.open("o2", "b", { overdraftLimit: 0 }), "ok");
    assert.equal(account(engine, "b").available, 0);
    expect(engine, cmd.open("o3", "c", { overdraftLimit: AMOUNT_MAX }), "ok");
    assert.equal(account(engine, "c").available, AMOUNT_MAX);
  });

  test("a limit of -0 (JSON \"-0\") is the limit 0: the same command on retry, the same state as 0", () => {
    const negativeZero = newEngine();
    const zero = newEngine();
    expect(negativeZero, cmd.open("o1", "a", { overdraftLimit: -0 }), "ok");
    expect(zero, cmd.open("o1", "a", { overdraftLimit: 0 }), "ok");
    assert.ok(Object.is(account(negativeZero, "a").overdraftLimit, 0));
    assert.equal(negativeZero.stateHash(), zero.stateHash());
    assert.equal(one(negativeZero, cmd.open("o1", "a", { overdraftLimit: 0 })).duplicate, true, "a retry with 0 is the same command");
    assert.equal(one(zero, cmd.open("o1", "a", { overdraftLimit: -0 })).duplicate, true, "and the other way round");
    expect(negativeZero, cmd.limit("l1", "a", -0), "ok");
    expect(zero, cmd.limit("l1", "a", 0), "ok");
    assert.equal(negativeZero.stateHash(), zero.stateHash());
  });

  test("a bad overdraftLimit is amount_invalid and opens nothing", () => {
    const engine = newEngine();
    for (const [index, limit] of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53].entries()) {
      const result = expectRejected(engine, cmd.open(`o${index}`, "a", { overdraftLimit: limit }), "amount_invalid");
      assert.equal(result.balance, undefined, "no account, no figures");
      assert.equal(engine.account(P, "a"), undefined);
    }
  });

  test("opening an existing account is account_exists and keeps the first currency and limit", () => {
    const engine = newEngine();
    expect(engine, cmd.open("o1", "a", { overdraftLimit: 7 }), "ok");
    const before = account(engine, "a");
    const result = expectRejected(engine, cmd.open("o2", "a", { currency: "USD", overdraftLimit: 9 }), "account_exists");
    assert.equal(result.seq, 2);
    assert.deepEqual(account(engine, "a"), before);
    assert.equal(account(engine, "a").currency, "EUR");
  });

  test("the same accountId under two partners names two accounts", () => {
    const engine = newEngine();
    expect(engine, cmd.open("o1", "a"), "ok");
    expect(engine, cmd.open("o1", "a", { partnerId: "partner-2", currency: "USD" }), "ok");
    expect(engine, cmd.credit("c1", "a", 10), "ok");
    assert.equal(account(engine, "a").balance, 10);
    assert.equal(account(engine, "a", "partner-2").balance, 0);
    assert.equal(account(engine, "a", "partner-2").currency, "USD");
  });

  test("currency is 3-12 of [A-Z0-9]: other forms throw InvalidCommandError at commands[0].currency", () => {
    const engine = newEngine();
    for (const [index, currency] of ["USD", "X9Z", "ABCDEFGHIJ12", "000"].entries()) {
      expect(engine, cmd.open(`ok${index}`, `a${index}`, { currency }), "ok");
      assert.equal(account(engine, `a${index}`).currency, currency);
    }
    for (const currency of ["", "EU", "eur", "Eur", "ABCDEFGHIJ123", "EU R", "EU-R", "€UR", "ÉUR"]) {
      expectInvalid(engine, [cmd.open("bad", "z", { currency })], "commands[0].currency");
    }
    expectInvalid(engine, [{ type: "openAccount", id: "bad", partnerId: P, accountId: "z" }], "commands[0].currency");
    expectInvalid(engine, [cmd.open("bad", "z", { currency: 978 as unknown as string })], "commands[0].currency");
    assert.equal(engine.account(P, "z"), undefined);
  });

  test("a full accounts table is capacity_exceeded; accounts already open keep working", () => {
    const engine = newEngine({ accountsMax: 4 });
    for (let index = 0; index < 4; index++) expect(engine, cmd.open(`o${index}`, `a${index}`), "ok");
    expectRejected(engine, cmd.open("o4", "a4"), "capacity_exceeded");
    assert.equal(engine.account(P, "a4"), undefined);
    expect(engine, cmd.credit("c1", "a3", 5), "ok");
    assert.equal(account(engine, "a3").balance, 5);
  });

  test("a full partners table is capacity_exceeded for a new partner's first account", () => {
    const engine = newEngine({ partnersMax: 2 });
    expect(engine, cmd.open("o1", "a", { partnerId: "p1" }), "ok");
    expect(engine, cmd.open("o1", "a", { partnerId: "p2" }), "ok");
    expectRejected(engine, cmd.open("o1", "a", { partnerId: "p3" }), "capacity_exceeded");
    assert.equal(engine.account("p3", "a"), undefined);
    expect(engine, cmd.open("o2", "b", { partnerId: "p2" }), "ok");
  });
});

describe("credit and debit", () => {
  test("credit adds to balance; the result carries the account's figures and seq; the account records seq", () => {
    const engine = newEngine();
    expect(engine, cmd.open("o1", "a"), "ok");
    const result = expect(engine, cmd.credit("c1", "a", 250), "ok");
    assert.deepEqual(
      { id: result.id, seq: result.seq, balance: result.balance, held: result.held, available: result.available },
      { id: "c1", seq: 2, balance: 250, held: 0, available: 250 },
    );
    assert.deepEqual(money(engine, "a"), { balance: 250, held: 0, available: 250 });
    assert.equal(account(engine, "a").seq, 2);
    expect(engine, cmd.credit("c2", "a", 50), "ok");
    assert.equal(account(engine, "a").balance, 300);
    assert.equal(account(engine, "a").seq, 3);
  });

  test("debit of exactly available is ok; available+1 is insufficient_funds and changes nothing", () => {
    const engine = funded(newEngine(), "a", 100);
    const rejected = expectRejected(engine, cmd.debit("d1", "a", 101), "insufficient_funds");
    assert.equal(rejected.balance, 100);
    assert.equal(rejected.available, 100);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
    const result = expect(engine, cmd.debit("d2", "a", 100), "ok");
    assert.equal(result.balance, 0);
    assert.equal(result.available, 0);
    assert.deepEqual(money(engine, "a"), { balance: 0, held: 0, available: 0 });
    expectRejected(engine, cmd.debit("d3", "a", 1), "insufficient_funds");
  });

  test("overdraft: the balance may go down to -overdraftLimit and no further", () => {
    const engine = funded(newEngine(), "a", 100, { overdraftLimit: 50 });
    assert.equal(account(engine, "a").available, 150);
    expectRejected(engine, cmd.debit("d1", "a", 151), "insufficient_funds");
    const result = expect(engine, cmd.debit("d2", "a", 150), "ok");
    assert.equal(result.balance, -50);
    assert.deepEqual(money(engine, "a"), { balance: -50, held: 0, available: 0 });
    expectRejected(engine, cmd.debit("d3", "a", 1), "insufficient_funds");
    expect(engine, cmd.credit("c1", "a", 60), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 10, held: 0, available: 60 });
  });

  test("credit or debit of a missing account is account_not_found, without figures", () => {
    const engine = funded(newEngine(), "a", 10);
    for (const command of [cmd.credit("c1", "nope", 5), cmd.debit("d1", "nope", 5)]) {
      const result = expectRejected(engine, command, "account_not_found");
      assert.equal(result.balance, undefined);
      assert.equal(result.held, undefined);
      assert.equal(result.available, undefined);
    }
    expectRejected(engine, cmd.credit("c2", "a", 5, { partnerId: "unknown-partner" }), "account_not_found");
    assert.equal(engine.account(P, "nope"), undefined);
    assert.equal(account(engine, "a").balance, 10);
  });

  test("the optional currency guard must match the account's currency", () => {
    const engine = funded(newEngine(), "a", 100);
    expectRejected(engine, cmd.credit("c1", "a", 5, { currency: "USD" }), "currency_mismatch");
    expectRejected(engine, cmd.debit("d1", "a", 5, { currency: "USD" }), "currency_mismatch");
    assert.equal(account(engine, "a").balance, 100);
    expect(engine, cmd.credit("c2", "a", 5, { currency: "EUR" }), "ok");
    expect(engine, cmd.debit("d2", "a", 10, { currency: "EUR" }), "ok");
    assert.equal(account(engine, "a").balance, 95);
    expectInvalid(engine, [cmd.credit("c3", "a", 5, { currency: "eur" })], "commands[0].currency");
  });

  test("amounts that are not integers in 1..2^53-1 are amount_invalid for credit and debit", () => {
    const engine = funded(newEngine(), "a", 100);
    for (const [index, amount] of INVALID_AMOUNTS.entries()) {
      expectRejected(engine, cmd.credit(`c${index}`, "a", amount), "amount_invalid");
      expectRejected(engine, cmd.debit(`d${index}`, "a", amount), "amount_invalid");
    }
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
  });

  test("2^53-1 is a valid amount; a credit crossing 2^53-1 is amount_overflow", () => {
    const engine = funded(newEngine(), "a", 0);
    expect(engine, cmd.credit("c1", "a", AMOUNT_MAX), "ok");
    assert.equal(account(engine, "a").balance, AMOUNT_MAX);
    const result = expectRejected(engine, cmd.credit("c2", "a", 1), "amount_overflow");
    assert.equal(result.balance, AMOUNT_MAX);
    expect(engine, cmd.debit("d1", "a", AMOUNT_MAX), "ok");
    assert.equal(account(engine, "a").balance, 0);
  });

  test("balance + overdraftLimit may reach but never cross 2^53-1", () => {
    const engine = funded(newEngine(), "a", 0, { overdraftLimit: 10 });
    expectRejected(engine, cmd.credit("c1", "a", AMOUNT_MAX - 9), "amount_overflow");
    expect(engine, cmd.credit("c2", "a", AMOUNT_MAX - 10), "ok");
    assert.equal(account(engine, "a").available, AMOUNT_MAX);
    expectRejected(engine, cmd.credit("c3", "a", 1), "amount_overflow");
    assert.equal(account(engine, "a").balance, AMOUNT_MAX - 10);
  });

  test("a non-number amount throws InvalidCommandError at commands[0].amount", () => {
    const engine = funded(newEngine(), "a", 100);
    for (const amount of ["5", null, 5n, {}, [5], true]) {
      expectInvalid(engine, [cmd.credit("c1", "a", amount as unknown as number)], "commands[0].amount");
      expectInvalid(engine, [cmd.debit("d1", "a", amount as unknown as number)], "commands[0].amount");
    }
    expectInvalid(engine, [{ type: "credit", id: "c1", partnerId: P, accountId: "a" }], "commands[0].amount");
    expectInvalid(engine, [cmd.transfer("t1", "a", "a", "5" as unknown as number)], "commands[0].amount");
    expectInvalid(engine, [cmd.hold("h1", "a", "5" as unknown as number)], "commands[0].amount");
    expectInvalid(engine, [cmd.check("a", "5" as unknown as number)], "commands[0].amount");
    expectInvalid(engine, [cmd.capture("k1", "h1", { amount: "5" as unknown as number })], "commands[0].amount");
    expectInvalid(engine, [cmd.limit("l1", "a", "5" as unknown as number)], "commands[0].overdraftLimit");
    expectInvalid(engine, [cmd.open("o2", "b", { overdraftLimit: "5" as unknown as number })], "commands[0].overdraftLimit");
    assert.equal(account(engine, "a").balance, 100);
  });
});

describe("transfer", () => {
  test("moves money between two accounts of one partner: the sum is conserved, both accounts record seq", () => {
    const engine = funded(funded(newEngine(), "a", 100), "b", 5);
    const result = expect(engine, cmd.transfer("t1", "a", "b", 30), "ok");
    assert.equal(result.balance, 70, "the result carries the source account");
    assert.equal(result.available, 70);
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 });
    assert.deepEqual(money(engine, "b"), { balance: 35, held: 0, available: 35 });
    assert.equal(account(engine, "a").balance + account(engine, "b").balance, 105);
    assert.equal(account(engine, "a").seq, result.seq);
    assert.equal(account(engine, "b").seq, result.seq);
  });

  test("exactly available is ok, available+1 is insufficient_funds; overdraft and holds count", () => {
    const engine = funded(funded(newEngine(), "a", 100, { overdraftLimit: 20 }), "b", 0);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    expectRejected(engine, cmd.transfer("t1", "a", "b", 91), "insufficient_funds");
    expect(engine, cmd.transfer("t2", "a", "b", 90), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 10, held: 30, available: 0 });
    assert.deepEqual(money(engine, "b"), { balance: 90, held: 0, available: 90 });
  });

  test("same_account, account_not_found either side, currency_mismatch", () => {
    const engine = funded(funded(funded(newEngine(), "a", 100), "b", 0), "u", 0, { currency: "USD" });
    expectRejected(engine, cmd.transfer("t1", "a", "a", 10), "same_account");
    const missingTarget = expectRejected(engine, cmd.transfer("t2", "a", "nope", 10), "account_not_found");
    assert.equal(missingTarget.balance, 100, "the source exists, so its figures are there");
    const missingSource = expectRejected(engine, cmd.transfer("t3", "nope", "a", 10), "account_not_found");
    assert.equal(missingSource.balance, undefined);
    expectRejected(engine, cmd.transfer("t4", "a", "u", 10), "currency_mismatch");
    expectRejected(engine, cmd.transfer("t5", "u", "a", 0 + 1), "currency_mismatch");
    assert.equal(account(engine, "a").balance, 100);
    assert.equal(account(engine, "u").balance, 0);
  });

  test("a frozen account on either side is account_frozen; a closed one is account_closed", () => {
    const engine = funded(funded(funded(newEngine(), "a", 100), "b", 100), "c", 0);
    expect(engine, cmd.admin("freeze", "f1", "b"), "ok");
    expectRejected(engine, cmd.transfer("t1", "a", "b", 10), "account_frozen");
    expectRejected(engine, cmd.transfer("t2", "b", "a", 10), "account_frozen");
    expect(engine, cmd.admin("close", "x1", "c"), "ok");
    expectRejected(engine, cmd.transfer("t3", "a", "c", 10), "account_closed");
    expectRejected(engine, cmd.transfer("t4", "c", "a", 10), "account_closed");
    assert.equal(account(engine, "a").balance, 100);
    assert.equal(account(engine, "b").balance, 100);
  });

  test("a target that would cross 2^53-1 is amount_overflow and neither side moves", () => {
    const engine = funded(funded(newEngine(), "a", 100), "b", AMOUNT_MAX - 5);
    expectRejected(engine, cmd.transfer("t1", "a", "b", 6), "amount_overflow");
    assert.equal(account(engine, "a").balance, 100);
    assert.equal(account(engine, "b").balance, AMOUNT_MAX - 5);
    expect(engine, cmd.transfer("t2", "a", "b", 5), "ok");
    assert.equal(account(engine, "b").balance, AMOUNT_MAX);
    assert.equal(account(engine, "a").balance, 95);
  });

  test("amounts that are not integers in 1..2^53-1 are amount_invalid; 2^53-1 moves", () => {
    const engine = funded(funded(newEngine(), "a", AMOUNT_MAX), "b", 0);
    for (const [index, amount] of INVALID_AMOUNTS.entries()) {
      expectRejected(engine, cmd.transfer(`t${index}`, "a", "b", amount), "amount_invalid");
    }
    expect(engine, cmd.transfer("tmax", "a", "b", AMOUNT_MAX), "ok");
    assert.equal(account(engine, "a").balance, 0);
    assert.equal(account(engine, "b").balance, AMOUNT_MAX);
  });
});

describe("holds", () => {
  test("a hold moves money from available to held; the balance stays", () => {
    const engine = funded(newEngine(), "a", 100);
    const result = expect(engine, cmd.hold("h1", "a", 30), "ok");
    assert.deepEqual([result.balance, result.held, result.available], [100, 30, 70]);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
    expectRejected(engine, cmd.debit("d1", "a", 71), "insufficient_funds");
    expectRejected(engine, cmd.hold("h2", "a", 71), "insufficient_funds");
    expect(engine, cmd.hold("h3", "a", 70), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 100, available: 0 });
  });

  test("amounts that are not integers in 1..2^53-1 are amount_invalid; 2^53-1 holds", () => {
    const engine = funded(newEngine(), "a", AMOUNT_MAX);
    for (const [index, amount] of INVALID_AMOUNTS.entries()) {
      expectRejected(engine, cmd.hold(`h${index}`, "a", amount), "amount_invalid");
    }
    expect(engine, cmd.hold("hmax", "a", AMOUNT_MAX), "ok");
    assert.deepEqual(money(engine, "a"), { balance: AMOUNT_MAX, held: AMOUNT_MAX, available: 0 });
  });

  test("capture without amount takes the whole hold and closes it", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    const result = expect(engine, cmd.capture("k1", "h1"), "ok");
    assert.deepEqual([result.balance, result.held, result.available], [70, 0, 70]);
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 });
  });

  test("a partial capture takes the amount and releases the rest", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    expect(engine, cmd.hold("h2", "a", 10), "ok");
    expect(engine, cmd.capture("k1", "h1", { amount: 20 }), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 80, held: 10, available: 70 });
    expectRejected(engine, cmd.capture("k2", "h1", { amount: 5 }), "hold_closed");
  });

  test("capture_exceeds_hold leaves the hold open; the exact amount then captures", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    expectRejected(engine, cmd.capture("k1", "h1", { amount: 31 }), "capture_exceeds_hold");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
    expect(engine, cmd.capture("k2", "h1", { amount: 30 }), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 });
  });

  test("a capture amount that is not an integer >= 1 is amount_invalid", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    for (const [index, amount] of [0, -1, 1.5, Number.NaN].entries()) {
      expectRejected(engine, cmd.capture(`k${index}`, "h1", { amount }), "amount_invalid");
    }
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
  });

  test("release gives the hold back to available and closes it", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    const result = expect(engine, cmd.release("r1", "h1"), "ok");
    assert.deepEqual([result.balance, result.held, result.available], [100, 0, 100]);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
  });

  test("a closed hold says hold_closed to capture and release, whichever closed it", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    expect(engine, cmd.capture("k1", "h1"), "ok");
    expectRejected(engine, cmd.capture("k2", "h1"), "hold_closed");
    expectRejected(engine, cmd.release("r1", "h1"), "hold_closed");
    expect(engine, cmd.hold("h2", "a", 10), "ok");
    expect(engine, cmd.release("r2", "h2"), "ok");
    expectRejected(engine, cmd.capture("k3", "h2"), "hold_closed");
    expectRejected(engine, cmd.release("r3", "h2"), "hold_closed");
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 });
  });

  test("an unknown hold, or another partner's hold, is hold_not_found", () => {
    const engine = funded(funded(newEngine(), "a", 100), "a", 100, { partnerId: "partner-2" });
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    const result = expectRejected(engine, cmd.capture("k1", "nope"), "hold_not_found");
    assert.equal(result.balance, undefined);
    expectRejected(engine, cmd.release("r1", "nope"), "hold_not_found");
    expectRejected(engine, cmd.capture("k2", "h1", { partnerId: "partner-2" }), "hold_not_found");
    expectRejected(engine, cmd.release("r2", "h1", { partnerId: "partner-2" }), "hold_not_found");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
  });

  test("a hold expires at the first batch at or after time + expiresInMs, without being touched", () => {
    const engine = funded(funded(newEngine(), "a", 100), "other", 0);
    expect(engine, cmd.hold("h1", "a", 30, { expiresInMs: 500 }), "ok", T0);
    expect(engine, cmd.credit("c1", "other", 1), "ok", T0 + 499);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
    expect(engine, cmd.credit("c2", "other", 1), "ok", T0 + 500);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
    expectRejected(engine, cmd.capture("k1", "h1"), "hold_expired", T0 + 501);
    expectRejected(engine, cmd.release("r1", "h1"), "hold_expired", T0 + 502);
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
  });

  test("a capture in the batch stamped exactly at expiry is hold_expired; one millisecond earlier it captures", () => {
    const engine = funded(newEngine(), "a", 100);
    expect(engine, cmd.hold("h1", "a", 30, { expiresInMs: 500 }), "ok", T0);
    expect(engine, cmd.hold("h2", "a", 20, { expiresInMs: 500 }), "ok", T0);
    expect(engine, cmd.capture("k1", "h1"), "ok", T0 + 499);
    expect(engine, cmd.capture("k2", "h2"), "hold_expired", T0 + 500);
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 }, "h2 expired, nothing captured");
    expectRejected(engine, cmd.capture("k3", "h1"), "hold_closed", T0 + 500);
  });

  test("expiry counts from the stamped time, which never goes backwards; holds without expiresInMs stay", () => {
    const engine = funded(newEngine(), "a", 100);
    run(engine, [cmd.credit("c1", "a", 1)], T0 + 1000);
    assert.equal(engine.timeMs, T0 + 1000);
    expect(engine, cmd.hold("h1", "a", 30, { expiresInMs: 100 }), "ok", T0);
    assert.equal(engine.timeMs, T0 + 1000, "stamped time is max(previous, timeMs)");
    expect(engine, cmd.hold("h2", "a", 10), "ok", T0);
    expect(engine, cmd.check("a", 1), "ok", T0 + 1099);
    assert.equal(account(engine, "a").held, 40);
    expect(engine, cmd.check("a", 1), "ok", T0 + 1100);
    assert.equal(account(engine, "a").held, 10);
    expect(engine, cmd.check("a", 1), "ok", T0 + 400 * 24 * 3600 * 1000);
    assert.equal(account(engine, "a").held, 10);
    expect(engine, cmd.capture("k1", "h2"), "ok", T0 + 400 * 24 * 3600 * 1000);
    assert.deepEqual(money(engine, "a"), { balance: 91, held: 0, available: 91 });
  });

  test("a full hold table is capacity_exceeded; the oldest closed hold is forgotten first (then hold_not_found)", () => {
    const engine = funded(newEngine({ holdsMax: 4 }), "a", 1000);
    expect(engine, cmd.hold("h1", "a", 1), "ok");
    expect(engine, cmd.release("r1", "h1"), "ok");
    for (const id of ["h2", "h3", "h4"]) expect(engine, cmd.hold(id, "a", 1), "ok");
    expectRejected(engine, cmd.capture("k0", "h1"), "hold_closed");
    expect(engine, cmd.hold("h5", "a", 1), "ok");
    expectRejected(engine, cmd.release("r2", "h1"), "hold_not_found");
    expectRejected(engine, cmd.hold("h6", "a", 1), "capacity_exceeded");
    assert.deepEqual(money(engine, "a"), { balance: 1000, held: 4, available: 996 });
    expect(engine, cmd.capture("k1", "h2"), "ok");
    expect(engine, cmd.hold("h7", "a", 1), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 999, held: 4, available: 995 });
  });

  test("holds falling due right after an atomic group expire, however many (they record no undo)", () => {
    const holds = 4_100; // more than one group's undo budget (UNDO_ENTRIES_MAX = 4,000)
    const engine = funded(newEngine({ holdsMax: 8192, ringSlots: 8192 }), "a", 1_000_000);
    for (let start = 0; start < holds; start += 1000) {
      const batch = Array.from({ length: Math.min(1000, holds - start) }, (_, k) => cmd.hold(`h${start + k}`, "a", 1, { expiresInMs: 10 }));
      assert.ok(run(engine, batch).every((result) => result.code === "ok"));
    }
    assert.equal(money(engine, "a").held, holds);
    assert.deepEqual(run(engine, [cmd.credit("g1", "a", 1), cmd.credit("g2", "a", 1)], T0, true).map((result) => result.code), ["ok", "ok"]);
    const late = expect(engine, cmd.credit("late", "a", 1), "ok", T0 + 100);
    assert.equal(late.held, 0, "every hold expired before the late credit");
    const restored = Engine.restore(engine.snapshot(), { ...OPTIONS, holdsMax: 8192, ringSlots: 8192 });
    assert.equal(restored.stateHash(), engine.stateHash());
  });
});

describe("check", () => {
  test("ok when amount <= available, insufficient_funds above; returns available; changes nothing; seq advances", () => {
    const engine = funded(newEngine(), "a", 100, { overdraftLimit: 10 });
    expect(engine, cmd.hold("h1", "a", 30), "ok");
    const before = account(engine, "a");
    const sequence = engine.lastSequence;
    const atAvailable = expect(engine, cmd.check("a", 80), "ok");
    assert.equal(atAvailable.id, "");
    assert.equal(atAvailable.available, 80);
    assert.equal(atAvailable.balance, 100);
    assert.equal(atAvailable.held, 30);
    assert.equal(atAvailable.seq, sequence + 1);
    const above = expect(engine, cmd.check("a", 81), "insufficient_funds");
    assert.equal(above.available, 80);
    assert.equal(above.seq, sequence + 2);
    assert.equal(engine.lastSequence, sequence + 2);
    assert.deepEqual(account(engine, "a"), before, "a check changes no account, not even its seq");
    const withId = expect(engine, cmd.check("a", 1, { id: "chk-1" }), "ok");
    assert.equal(withId.id, "chk-1");
  });

  test("account_not_found, account_frozen, account_closed and amount_invalid", () => {
    const engine = funded(funded(funded(newEngine(), "a", 100), "f", 100), "x", 0);
    expect(engine, cmd.check("nope", 1), "account_not_found");
    expect(engine, cmd.admin("freeze", "fr1", "f"), "ok");
    expect(engine, cmd.check("f", 1), "account_frozen");
    expect(engine, cmd.admin("close", "cl1", "x"), "ok");
    expect(engine, cmd.check("x", 1), "account_closed");
    for (const amount of INVALID_AMOUNTS) expect(engine, cmd.check("a", amount), "amount_invalid");
    expect(engine, cmd.check("a", 100), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
  });
});

describe("setOverdraftLimit", () => {
  test("raises and lowers the limit; lowering may leave available below zero, after which no debit or hold passes", () => {
    const engine = funded(newEngine(), "a", 0);
    const raised = expect(engine, cmd.limit("l1", "a", 100), "ok");
    assert.equal(raised.available, 100);
    assert.equal(account(engine, "a").overdraftLimit, 100);
    expect(engine, cmd.debit("d1", "a", 80), "ok");
    assert.deepEqual(money(engine, "a"), { balance: -80, held: 0, available: 20 });
    expect(engine, cmd.limit("l2", "a", 0), "ok");
    assert.deepEqual(money(engine, "a"), { balance: -80, held: 0, available: -80 });
    assert.equal(account(engine, "a").overdraftLimit, 0);
    expectRejected(engine, cmd.debit("d2", "a", 1), "insufficient_funds");
    expectRejected(engine, cmd.hold("h1", "a", 1), "insufficient_funds");
    expect(engine, cmd.check("a", 1), "insufficient_funds");
    expect(engine, cmd.credit("c1", "a", 100), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 20, held: 0, available: 20 });
  });

  test("amount_invalid for a bad limit, amount_overflow when balance + limit would cross 2^53-1", () => {
    const engine = funded(newEngine(), "a", 10);
    for (const [index, limit] of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53].entries()) {
      expectRejected(engine, cmd.limit(`l${index}`, "a", limit), "amount_invalid");
    }
    expectRejected(engine, cmd.limit("lx", "a", AMOUNT_MAX - 9), "amount_overflow");
    expect(engine, cmd.limit("ly", "a", AMOUNT_MAX - 10), "ok");
    assert.equal(account(engine, "a").available, AMOUNT_MAX);
    assert.equal(account(engine, "a").overdraftLimit, AMOUNT_MAX - 10);
  });

  test("account_not_found and account_closed", () => {
    const engine = funded(newEngine(), "a", 0);
    expectRejected(engine, cmd.limit("l1", "nope", 5), "account_not_found");
    expect(engine, cmd.admin("close", "x1", "a"), "ok");
    expectRejected(engine, cmd.limit("l2", "a", 5), "account_closed");
    assert.equal(account(engine, "a").overdraftLimit, 0);
  });
});

describe("freeze, unfreeze, close", () => {
  test("a frozen account rejects credit, debit, transfer, hold, capture and check; release still works", () => {
    const engine = funded(funded(newEngine(), "a", 100), "b", 100);
    expect(engine, cmd.hold("h1", "a", 10), "ok");
    expect(engine, cmd.hold("h2", "a", 20), "ok");
    const frozen = expect(engine, cmd.admin("freeze", "f1", "a"), "ok");
    assert.equal(frozen.balance, 100);
    assert.equal(account(engine, "a").status, "frozen");
    expectRejected(engine, cmd.credit("c1", "a", 1), "account_frozen");
    expectRejected(engine, cmd.debit("d1", "a", 1), "account_frozen");
    expectRejected(engine, cmd.transfer("t1", "a", "b", 1), "account_frozen");
    expectRejected(engine, cmd.transfer("t2", "b", "a", 1), "account_frozen");
    expectRejected(engine, cmd.hold("h3", "a", 1), "account_frozen");
    expectRejected(engine, cmd.capture("k1", "h1"), "account_frozen");
    expect(engine, cmd.check("a", 1), "account_frozen");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 30, available: 70 });
    expect(engine, cmd.release("r1", "h2"), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 10, available: 90 });
    expect(engine, cmd.admin("unfreeze", "u1", "a"), "ok");
    assert.equal(account(engine, "a").status, "active");
    expect(engine, cmd.capture("k2", "h1"), "ok");
    expect(engine, cmd.credit("c2", "a", 5), "ok");
    assert.deepEqual(money(engine, "a"), { balance: 95, held: 0, available: 95 });
  });

  test("close at zero balance and no holds; afterwards everything is account_closed", () => {
    const engine = funded(funded(newEngine(), "a", 10), "b", 10);
    expect(engine, cmd.debit("d1", "a", 10), "ok");
    expect(engine, cmd.admin("close", "x1", "a"), "ok");
    assert.equal(account(engine, "a").status, "closed");
    const rejected: Command[] = [
      cmd.credit("c1", "a", 1),
      cmd.debit("d2", "a", 1),
      cmd.transfer("t1", "a", "b", 1),
      cmd.transfer("t2", "b", "a", 1),
      cmd.hold("h1", "a", 1),
      cmd.limit("l1", "a", 5),
      cmd.admin("freeze", "f1", "a"),
      cmd.admin("unfreeze", "u1", "a"),
      cmd.admin("close", "x2", "a"),
    ];
    for (const command of rejected) expectRejected(engine, command, "account_closed");
    expect(engine, cmd.check("a", 1), "account_closed");
    assert.deepEqual(account(engine, "a").status, "closed");
    assert.equal(account(engine, "b").balance, 10);
  });

  test("close_nonzero with a positive balance, a negative balance, or a hold", () => {
    const engine = funded(funded(funded(newEngine(), "pos", 1), "neg", 0, { overdraftLimit: 100 }), "held", 0, {
      overdraftLimit: 100,
    });
    expectRejected(engine, cmd.admin("close", "x1", "pos"), "close_nonzero");
    expect(engine, cmd.debit("d1", "neg", 1), "ok");
    expectRejected(engine, cmd.admin("close", "x2", "neg"), "close_nonzero");
    expect(engine, cmd.hold("h1", "held", 50), "ok");
    assert.deepEqual(money(engine, "held"), { balance: 0, held: 50, available: 50 });
    expectRejected(engine, cmd.admin("close", "x3", "held"), "close_nonzero");
    for (const id of ["pos", "neg", "held"]) assert.equal(account(engine, id).status, "active");
    expect(engine, cmd.release("r1", "h1"), "ok");
    expect(engine, cmd.admin("close", "x4", "held"), "ok");
  });

  test("freeze, unfreeze and close of a missing account are account_not_found", () => {
    const engine = funded(newEngine(), "a", 0);
    for (const type of ["freeze", "unfreeze", "close"] as const) {
      expectRejected(engine, cmd.admin(type, `${type}-1`, "nope"), "account_not_found");
    }
  });
});

describe("bad input", () => {
  test("a batch larger than the ring with a bad command in a later ring-full: nothing is applied", () => {
    const engine = funded(newEngine({ ringSlots: 64 }), "a", 0);
    const commands = Array.from({ length: 150 }, (_, i) => cmd.credit(`c${i}`, "a", 1));
    (commands[130] as { amount: unknown }).amount = "1";
    expectInvalid(engine, commands, "commands[130].amount");
    assert.equal(account(engine, "a").balance, 0);
    assert.equal(run(engine, commands.slice(0, 130).concat(commands.slice(131))).length, 149, "valid, the same batch goes through in pieces");
    assert.equal(account(engine, "a").balance, 149);
  });

  test("a timeMs that is not a safe integer >= 0 throws InvalidCommandError at timeMs, from execute and tryPublish alike", () => {
    const engine = funded(newEngine(), "a", 0);
    const hash = engine.stateHash();
    const cursor = engine.sequencer.cursor.value;
    const credit = [cmd.credit("c1", "a", 1)];
    // Published, 2^60 or Infinity became the ledger's time: every later snapshot and state hash failed an assertion.
    for (const timeMs of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      const isTimeError = (error: unknown) => error instanceof InvalidCommandError && error.path === "timeMs";
      assert.throws(() => engine.execute(credit, { timeMs }), isTimeError, `execute at ${timeMs}`);
      assert.throws(() => engine.tryPublish(credit, 0, 1, false, timeMs), isTimeError, `tryPublish at ${timeMs}`);
      assert.equal(engine.sequencer.cursor.value, cursor, `nothing sequenced at ${timeMs}`);
    }
    engine.drain();
    assert.equal(engine.stateHash(), hash);
    assert.ok(engine.tryPublish(credit, 0, 1, false, T0 + 1));
    engine.drain();
    assert.equal(account(engine, "a").balance, 1);
  });
});

describe("identifiers", () => {
  const BAD = ["", "x".repeat(65), "a b", " a", "a\tb", "é", "ü".repeat(4), "a/b", "a@b", "a\u0000b", "日本"];
  const FIELDS: Array<[string, (value: string) => Command]> = [
    ["id", (value) => cmd.credit(value, "a", 1)],
    ["partnerId", (value) => cmd.credit("c1", "a", 1, { partnerId: value })],
    ["accountId", (value) => cmd.credit("c1", value, 1)],
    ["accountId", (value) => cmd.open("o1", value)],
    ["id", (value) => cmd.open(value, "b")],
    ["accountId", (value) => cmd.debit("d1", value, 1)],
    ["fromAccountId", (value) => cmd.transfer("t1", value, "a", 1)],
    ["toAccountId", (value) => cmd.transfer("t1", "a", value, 1)],
    ["id", (value) => cmd.hold(value, "a", 1)],
    ["holdId", (value) => cmd.capture("k1", value)],
    ["holdId", (value) => cmd.release("r1", value)],
    ["accountId", (value) => cmd.check(value, 1)],
    ["accountId", (value) => cmd.limit("l1", value, 1)],
    ["accountId", (value) => cmd.admin("freeze", "f1", value)],
  ];

  test("empty, 65 characters, spaces, non-ASCII or other punctuation throw InvalidCommandError naming the field", () => {
    const engine = funded(newEngine(), "a", 100);
    for (const [field, make] of FIELDS) {
      for (const value of BAD) expectInvalid(engine, [make(value)], `commands[0].${field}`);
    }
    assert.deepEqual(money(engine, "a"), { balance: 100, held: 0, available: 100 });
  });

  test("a missing or non-string identifier throws InvalidCommandError naming the field", () => {
    const engine = funded(newEngine(), "a", 100);
    for (const [field, make] of FIELDS) {
      const missing = { ...make("valid") } as Record<string, unknown>;
      delete missing[field];
      expectInvalid(engine, [missing], `commands[0].${field}`);
      for (const value of [5, null, {}]) {
        expectInvalid(engine, [{ ...make("valid"), [field]: value }], `commands[0].${field}`);
      }
    }
  });

  test("an invalid command later in the batch throws before anything in the batch is applied", () => {
    const engine = funded(newEngine(), "a", 100);
    expectInvalid(engine, [cmd.credit("c1", "a", 5), cmd.debit("d1", "a", 5), cmd.credit("c2", "a b", 5)], "commands[2].accountId");
    assert.deepEqual(account(engine, "a").balance, 100);
    assert.equal(engine.storedResult(P, "c1"), undefined, "the valid command before it was not sequenced");
    expect(engine, cmd.credit("c1", "a", 5), "ok");
    assert.equal(account(engine, "a").balance, 105);
  });

  test("an unknown or missing type throws InvalidCommandError at commands[i].type", () => {
    const engine = funded(newEngine(), "a", 100);
    expectInvalid(engine, [{ type: "mint", id: "m1", partnerId: P, accountId: "a", amount: 5 }], "commands[0].type");
    expectInvalid(engine, [{ type: "unspecified", id: "m1", partnerId: P, accountId: "a" }], "commands[0].type");
    expectInvalid(engine, [cmd.check("a", 1), { id: "m1", partnerId: P, accountId: "a", amount: 5 }], "commands[1].type");
  });

  test("a check's optional id, when given, must be a well-formed identifier", () => {
    const engine = funded(newEngine(), "a", 100);
    expectInvalid(engine, [cmd.check("a", 1, { id: "a b" })], "commands[0].id");
    expectInvalid(engine, [cmd.check("a", 1, { id: "x".repeat(65) })], "commands[0].id");
  });

  test("64 characters of [A-Za-z0-9._:-] are valid in every identifier field", () => {
    const engine = newEngine();
    const partner = "P".repeat(64);
    const source = "s".repeat(63) + "1";
    const target = "A-z.0_9:".repeat(8);
    const holdId = "h".repeat(64);
    assert.equal(target.length, 64);
    const results = run(engine, [
      cmd.open("o".repeat(64), source, { partnerId: partner }),
      cmd.open("o".repeat(63) + "2", target, { partnerId: partner }),
      cmd.credit("c".repeat(64), source, 100, { partnerId: partner }),
      { type: "transfer", id: "t".repeat(64), partnerId: partner, fromAccountId: source, toAccountId: target, amount: 40 },
      cmd.hold(holdId, source, 10, { partnerId: partner }),
      cmd.capture("k".repeat(64), holdId, { partnerId: partner }),
      cmd.check(source, 1, { partnerId: partner, id: "q".repeat(64) }),
    ]);
    for (const result of results) expectCode(result, "ok");
    assert.equal(results[2].id, "c".repeat(64));
    assert.deepEqual(money(engine, source, partner), { balance: 50, held: 0, available: 50 });
    assert.deepEqual(money(engine, target, partner), { balance: 40, held: 0, available: 40 });
  });
});

describe("atomic groups", () => {
  test("all ok: every command applies, in order, with consecutive sequences", () => {
    const engine = funded(newEngine(), "a", 100);
    const sequence = engine.lastSequence;
    const results = run(
      engine,
      [cmd.open("o-b", "b"), cmd.credit("c-b", "b", 50), cmd.transfer("t1", "a", "b", 30), cmd.hold("h1", "b", 60)],
      T0,
      true,
    );
    for (const result of results) expectCode(result, "ok");
    assert.deepEqual(results.map((result) => result.seq), [1, 2, 3, 4].map((offset) => sequence + offset));
    assert.deepEqual(money(engine, "a"), { balance: 70, held: 0, available: 70 });
    assert.deepEqual(money(engine, "b"), { balance: 80, held: 60, available: 20 });
    expect(engine, cmd.capture("k1", "h1"), "ok");
    assert.deepEqual(money(engine, "b"), { balance: 20, held: 0, available: 20 });
  });

  test("one rejected: it carries its code, every other linked_failed, and no state changes (opens and holds too)", () => {
    const engine = funded(newEngine(), "a", 100);
    const before = accounts(engine);
    const group = [
      cmd.open("o-b", "b"),
      cmd.credit("c-b", "b", 50),
      cmd.hold("h1", "a", 40),
      cmd.transfer("t1", "a", "b", 10),
      cmd.debit("d1", "a", 1000),
      cmd.credit("c-a", "a", 5),
    ];
    const results = run(engine, group, T0, true);
    assert.deepEqual(
      results.map((result) => result.code),
      ["linked_failed", "linked_failed", "linked_failed", "linked_failed", "insufficient_funds", "linked_failed"],
    );
    for (const result of results) assert.equal(result.status, "rejected");
    assert.deepEqual(accounts(engine), before, "a failed group changes no account");
    assert.equal(engine.account(P, "b"), undefined, "the opened account was rolled back");
    expectRejected(engine, cmd.release("r1", "h1"), "hold_not_found");
    expect(engine, cmd.open("o-b2", "b"), "ok");
    assert.deepEqual(money(engine, "b"), { balance: 0, held: 0, available: 0 });
  });

  test("a command can fail because of an earlier one in the same group", () => {
    const engine = funded(newEngine(), "a", 100);
    const results = run(engine, [cmd.debit("d1", "a", 60), cmd.debit("d2", "a", 60)], T0, true);
    assert.deepEqual(results.map((result) => result.code), ["linked_failed", "insufficient_funds"]);
    assert.equal(account(engine, "a").balance, 100);
    const plain = run(engine, [cmd.debit("d3", "a", 60), cmd.debit("d4", "a", 60)], T0, false);
    assert.deepEqual(plain.map((result) => result.code), ["ok", "insufficient_funds"], "without atomic, each stands alone");
    assert.equal(account(engine, "a").balance, 40);
  });

  test("a failed group gives back the table slots it took (accounts and holds)", () => {
    const engine = funded(newEngine({ accountsMax: 4, holdsMax: 2 }), "a", 100);
    expect(engine, cmd.open("o-b", "b"), "ok");
    expect(engine, cmd.hold("h1", "a", 1), "ok");
    const results = run(
      engine,
      [cmd.open("o-c", "c"), cmd.open("o-d", "d"), cmd.hold("h2", "a", 1), cmd.debit("d1", "b", 1)],
      T0,
      true,
    );
    assert.deepEqual(results.map((result) => result.code), ["linked_failed", "linked_failed", "linked_failed", "insufficient_funds"]);
    expect(engine, cmd.open("o-c2", "c"), "ok");
    expect(engine, cmd.open("o-d2", "d"), "ok");
    expectRejected(engine, cmd.open("o-e", "e"), "capacity_exceeded");
    expect(engine, cmd.hold("h3", "a", 1), "ok");
    expectRejected(engine, cmd.hold("h4", "a", 1), "capacity_exceeded");
  });

  test("a group spanning two partners throws InvalidCommandError at the foreign command's partnerId", () => {
    const engine = funded(funded(newEngine(), "a", 100), "a", 100, { partnerId: "partner-2" });
    expectInvalid(engine, [cmd.credit("c1", "a", 1), cmd.credit("c2", "a", 1, { partnerId: "partner-2" })], "commands[1].partnerId", true);
    assert.equal(account(engine, "a").balance, 100);
    assert.equal(account(engine, "a", "partner-2").balance, 100);
  });

  test("a repeated id in a group throws InvalidCommandError at the repeat", () => {
    const engine = funded(newEngine(), "a", 100);
    expectInvalid(engine, [cmd.credit("c1", "a", 1), cmd.debit("d1", "a", 1), cmd.credit("c1", "a", 1)], "commands[2].id", true);
    expectInvalid(engine, [cmd.hold("x1", "a", 1), cmd.capture("x1", "x1")], "commands[1].id", true);
    assert.equal(account(engine, "a").balance, 100);
  });

  test("tryPublish refuses the groups execute refuses (two partners, a check, a repeated id) before sequencing", () => {
    const engine = funded(funded(newEngine(), "a", 100), "a", 100, { partnerId: "partner-2" });
    const hash = engine.stateHash();
    const cursor = engine.sequencer.cursor.value;
    const groups: [Command[], string][] = [
      // Applied, the ledger took the group's partner from its first command: partner-2's debit hit partner-1's "a".
      [[cmd.credit("g1", "a", 1), cmd.debit("g2", "a", 50, { partnerId: "partner-2" })], "commands[1].partnerId"],
      // Applied, the check went into the window with no id: an assertion in the processor after the credit.
      [[cmd.credit("g3", "a", 1), cmd.check("a", 1)], "commands[1].type"],
      [[cmd.credit("g4", "a", 1), cmd.debit("g4", "a", 1)], "commands[1].id"],
    ];
    for (const [group, path] of groups) {
      assert.throws(() => engine.tryPublish(group, 0, group.length, true, T0 + 1), (error: unknown) => {
        assert.ok(error instanceof InvalidCommandError, `expected InvalidCommandError, got ${String(error)}`);
        assert.equal(error.path, path);
        return true;
      });
      assert.equal(engine.sequencer.cursor.value, cursor, `nothing sequenced for ${path}`);
    }
    engine.drain();
    assert.equal(engine.stateHash(), hash);
    // The group is the range published: the foreign command before `start` is not part of it.
    const commands = [cmd.credit("x0", "a", 1, { partnerId: "partner-2" }), cmd.credit("x1", "a", 1), cmd.debit("x2", "a", 2)];
    assert.ok(engine.tryPublish(commands, 1, 2, true, T0 + 1));
    engine.drain();
    assert.deepEqual(money(engine, "a"), { balance: 99, held: 0, available: 99 });
    assert.equal(account(engine, "a", "partner-2").balance, 100);
  });

  test("a group of 1000 commands applies; 1001 throws InvalidCommandError", () => {
    const engine = funded(newEngine({ idempotencyCommandsMax: 4096 }), "a", 0);
    const credits = (prefix: string, count: number): Command[] =>
      Array.from({ length: count }, (_, index) => cmd.credit(`${prefix}${index}`, "a", 1));
    expectInvalid(engine, credits("big", 1001), undefined, true);
    assert.equal(account(engine, "a").balance, 0);
    const results = run(engine, credits("max", 1000), T0, true);
    assert.ok(results.every((result) => result.code === "ok"));
    assert.equal(account(engine, "a").balance, 1000);
  });

  test("retrying a failed group returns the same results, duplicate, even after the cause is gone", () => {
    const engine = funded(newEngine(), "a", 100);
    const group = [cmd.credit("c1", "a", 5), cmd.debit("d1", "a", 500)];
    const first = run(engine, group, T0, true);
    assert.deepEqual(first.map((result) => result.code), ["linked_failed", "insufficient_funds"]);
    expect(engine, cmd.credit("c-more", "a", 1000), "ok");
    const before = accounts(engine);
    const retry = run(engine, group, T0 + 10, true);
    assert.deepEqual(retry, first.map((result) => ({ ...result, duplicate: true })));
    assert.deepEqual(accounts(engine), before);
    assert.equal(account(engine, "a").balance, 1100);
  });

  test("retrying a successful group returns its results, duplicate, and applies nothing twice", () => {
    const engine = funded(newEngine(), "a", 100);
    const group = [cmd.open("o-b", "b"), cmd.transfer("t1", "a", "b", 30)];
    const first = run(engine, group, T0, true);
    assert.deepEqual(first.map((result) => result.code), ["ok", "ok"]);
    const before = accounts(engine);
    const retry = run(engine, group, T0, true);
    assert.deepEqual(retry, first.map((result) => ({ ...result, duplicate: true })));
    assert.deepEqual(accounts(engine), before);
    assert.equal(account(engine, "b").balance, 30);
  });
});

describe("idempotency", () => {
  test("a duplicate returns the original result (figures and seq included), duplicate: true, and changes nothing", () => {
    const engine = funded(newEngine(), "a", 0);
    const original = expect(engine, cmd.credit("c1", "a", 100), "ok");
    expect(engine, cmd.credit("c2", "a", 50), "ok");
    const before = accounts(engine);
    const duplicate = one(engine, cmd.credit("c1", "a", 100), T0 + 5);
    assert.deepEqual(duplicate, { ...original, duplicate: true });
    assert.equal(duplicate.seq, original.seq);
    assert.equal(duplicate.balance, 100, "the original's figures, not today's");
    assert.deepEqual(accounts(engine), before);
    assert.equal(account(engine, "a").balance, 150);
    assert.deepEqual(engine.storedResult(P, "c1"), { ...original, duplicate: true });
  });

  test("rejections are replayed too, even when the command would now pass", () => {
    const engine = funded(newEngine(), "a", 100);
    const original = expect(engine, cmd.debit("d1", "a", 500), "insufficient_funds");
    expect(engine, cmd.credit("c1", "a", 1000), "ok");
    const before = accounts(engine);
    assert.deepEqual(one(engine, cmd.debit("d1", "a", 500)), { ...original, duplicate: true });
    assert.deepEqual(accounts(engine), before);
    assert.equal(account(engine, "a").balance, 1100);
    const missing = expect(engine, cmd.credit("c2", "late", 5), "account_not_found");
    expect(engine, cmd.open("o-late", "late"), "ok");
    assert.deepEqual(one(engine, cmd.credit("c2", "late", 5)), { ...missing, duplicate: true });
    assert.equal(account(engine, "late").balance, 0);
  });

  test("every state-changing type replays: open, hold, capture, release, limit, freeze, unfreeze, close, transfer", () => {
    const engine = newEngine();
    const commands: Command[] = [
      cmd.open("o-a", "a"), cmd.open("o-b", "b"), cmd.credit("c1", "a", 100), cmd.transfer("t1", "a", "b", 10),
      cmd.hold("h1", "a", 5), cmd.capture("k1", "h1"), cmd.hold("h2", "a", 5), cmd.release("r1", "h2"),
      cmd.limit("l1", "a", 7), cmd.admin("freeze", "f1", "b"), cmd.admin("unfreeze", "u1", "b"),
      cmd.debit("d1", "b", 10), cmd.admin("close", "x1", "b"),
    ];
    const first = run(engine, commands);
    for (const result of first) expectCode(result, "ok");
    const before = accounts(engine);
    const replay = run(engine, commands, T0 + 1);
    assert.deepEqual(replay, first.map((result) => ({ ...result, duplicate: true })));
    for (const [index, command] of commands.entries()) {
      assert.deepEqual(engine.storedResult(P, (command as { id: string }).id), replay[index]);
    }
    assert.deepEqual(accounts(engine), before);
    assert.deepEqual(money(engine, "a"), { balance: 85, held: 0, available: 92 });
  });

  test("the same id with a different command is id_reused and changes nothing; the original still replays", () => {
    const engine = funded(funded(newEngine(), "a", 100), "b", 0);
    const original = expect(engine, cmd.credit("c1", "a", 10), "ok");
    const before = accounts(engine);
    const variants: Command[] = [
      cmd.credit("c1", "a", 11),
      cmd.credit("c1", "b", 10),
      cmd.debit("c1", "a", 10),
      cmd.credit("c1", "a", 10, { currency: "EUR" }),
      cmd.hold("c1", "a", 10),
      cmd.open("c1", "a"),
    ];
    for (const variant of variants) {
      const result = one(engine, variant);
      expectCode(result, "id_reused");
      assert.notEqual(result.duplicate, true);
      assert.deepEqual(accounts(engine), before, `${JSON.stringify(variant)} must change nothing`);
    }
    assert.equal(account(engine, "a").balance, 110);
    assert.equal(account(engine, "b").balance, 0);
    assert.deepEqual(one(engine, cmd.credit("c1", "a", 10)), { ...original, duplicate: true });
    assert.deepEqual(engine.storedResult(P, "c1"), { ...original, duplicate: true });
  });

  test("a group resent in part: id_reused lands on the command in the window, whatever the ring's slots held before", () => {
    const partial = (primeSlots: number) => {
      const engine = funded(newEngine({ ringSlots: 8 }), "a", 100);
      expect(engine, cmd.credit("c1", "a", 10), "ok");
      // Retries of c1, each answered as a duplicate, pass through every slot of the ring first.
      for (let i = 0; i < primeSlots; i++) assert.equal(one(engine, cmd.credit("c1", "a", 10)).duplicate, true);
      return run(engine, [cmd.credit("new1", "a", 5), cmd.credit("c1", "a", 10)], T0, true).map((result) => result.code);
    };
    assert.deepEqual(partial(0), ["linked_failed", "id_reused"]);
    assert.deepEqual(partial(8), ["linked_failed", "id_reused"], "the same commands, the same results, after the ring came round");
    assert.deepEqual(partial(13), ["linked_failed", "id_reused"]);
  });

  test("ids are per partner: the same id under two partners are two commands", () => {
    const engine = funded(funded(newEngine(), "a", 0), "a", 0, { partnerId: "partner-2" });
    const first = expect(engine, cmd.credit("same", "a", 10), "ok");
    const second = expect(engine, cmd.credit("same", "a", 10, { partnerId: "partner-2" }), "ok");
    assert.notEqual(second.duplicate, true);
    assert.notEqual(second.seq, first.seq);
    assert.equal(account(engine, "a").balance, 10);
    assert.equal(account(engine, "a", "partner-2").balance, 10);
    assert.equal(engine.storedResult(P, "same")?.seq, first.seq);
    assert.equal(engine.storedResult("partner-2", "same")?.seq, second.seq);
  });

  test("storedResult is undefined for unknown ids, other partners and checks", () => {
    const engine = funded(newEngine(), "a", 10);
    assert.equal(engine.storedResult(P, "never"), undefined);
    assert.equal(engine.storedResult("partner-2", `fund:a:${P}`), undefined);
    assert.equal(engine.storedResult(P, `fund:a:${P}`)?.duplicate, true);
    expect(engine, cmd.check("a", 1, { id: "chk" }), "ok");
    assert.equal(engine.storedResult(P, "chk"), undefined, "checks change nothing, so they are not remembered");
  });

  test("the window holds the newest idempotencyCommandsMax commands: the oldest is forgotten and re-executes", () => {
    const windowMax = 1024;
    const engine = funded(newEngine({ idempotencyCommandsMax: windowMax }), "a", 0);
    const credits = Array.from({ length: windowMax }, (_, index) => cmd.credit(`c${index}`, "a", 1));
    for (let start = 0; start < credits.length; start += 256) run(engine, credits.slice(start, start + 256));
    assert.equal(account(engine, "a").balance, windowMax);
    const firstOriginal = engine.storedResult(P, "c0");
    assert.ok(firstOriginal, "c0 is still in a window of exactly windowMax commands");
    assert.equal(one(engine, credits[0]).duplicate, true);
    expect(engine, cmd.credit("push", "a", 1), "ok");
    assert.equal(engine.storedResult(P, "c0"), undefined, "c0 fell out of the window");
    assert.equal(one(engine, credits[1]).duplicate, true, "c1 is still inside");
    const balance = account(engine, "a").balance;
    const again = expect(engine, credits[0], "ok");
    assert.notEqual(again.duplicate, true);
    assert.ok(again.seq > firstOriginal.seq);
    assert.equal(account(engine, "a").balance, balance + 1);
  });

  test("the window forgets commands older than idempotencyRetentionMs of stamped time", () => {
    const retentionMs = 10_000;
    const engine = funded(newEngine({ idempotencyRetentionMs: retentionMs }), "a", 0);
    expect(engine, cmd.credit("c1", "a", 10), "ok", T0);
    assert.equal(one(engine, cmd.credit("c1", "a", 10), T0 + retentionMs - 1).duplicate, true);
    assert.equal(account(engine, "a").balance, 10);
    const again = expect(engine, cmd.credit("c1", "a", 10), "ok", T0 + retentionMs + 1);
    assert.notEqual(again.duplicate, true);
    assert.equal(account(engine, "a").balance, 20);
    assert.equal(engine.storedResult(P, "c1")?.seq, again.seq);
  });

  test("retention boundary: an entry is kept while younger than idempotencyRetentionMs, forgotten at exactly it", () => {
    const retentionMs = 10_000;
    const engine = funded(newEngine({ idempotencyRetentionMs: retentionMs }), "a", 0);
    expect(engine, cmd.credit("c1", "a", 10), "ok", T0);
    assert.equal(one(engine, cmd.credit("c1", "a", 10), T0 + retentionMs - 1).duplicate, true);
    assert.equal(account(engine, "a").balance, 10);
    const again = one(engine, cmd.credit("c1", "a", 10), T0 + retentionMs);
    assert.equal(again.duplicate, undefined, "an entry exactly idempotencyRetentionMs old is forgotten");
    assert.equal(account(engine, "a").balance, 20);
  });

  test("storedResult answers as a retry stamped timeMs would: an entry past retention is unknown before a command forgets it", () => {
    const retentionMs = 10_000;
    const engine = funded(newEngine({ idempotencyRetentionMs: retentionMs }), "a", 0);
    const original = expect(engine, cmd.credit("c1", "a", 10), "ok", T0);
    const hash = engine.stateHash();
    const stored = { ...original, duplicate: true };
    assert.deepEqual(engine.storedResult(P, "c1", { timeMs: T0 + retentionMs - 1 }), stored, "younger than retention");
    assert.equal(engine.storedResult(P, "c1", { timeMs: T0 + retentionMs }), undefined, "exactly retention old: unknown");
    assert.deepEqual(engine.storedResult(P, "c1"), stored, "as of the last stamped time it is still in the window");
    assert.deepEqual(engine.storedResult(P, "c1", { timeMs: 0 }), stored, "a time before the last stamped one is that one");
    assert.throws(() => engine.storedResult(P, "c1", { timeMs: -1 }), InvalidCommandError);
    assert.equal(engine.stateHash(), hash, "a read forgets nothing");
    const again = one(engine, cmd.credit("c1", "a", 10), T0 + retentionMs);
    assert.equal(again.duplicate, undefined, "the retry the read foretold is applied anew");
    assert.equal(account(engine, "a").balance, 20);
  });
});

describe("stateHash", () => {
  test("a duplicate leaves the state hash unchanged", () => {
    const engine = funded(newEngine(), "a", 100);
    const hash = engine.stateHash();
    const duplicate = one(engine, cmd.credit(`fund:a:${P}`, "a", 100), T0);
    assert.equal(duplicate.duplicate, true);
    assert.equal(engine.stateHash(), hash, "a duplicate changes nothing, so the state hash must not move");
  });

  test("a failed atomic group (opening accounts, placing holds) changes no account or hold; only its results are stored", () => {
    const engine = funded(newEngine(), "a", 100);
    const before = account(engine, "a");
    const group = [cmd.open("o-b", "b"), cmd.hold("h1", "a", 10), cmd.debit("d1", "a", 1000)];
    const results = run(engine, group, T0, true);
    assert.deepEqual(results.map((result) => result.code), ["linked_failed", "linked_failed", "insufficient_funds"]);
    assert.deepEqual(account(engine, "a"), before);
    assert.equal(engine.account(P, "b"), undefined);
    assert.equal(one(engine, cmd.capture("cap-h1", "h1"), T0).code, "hold_not_found");
    const hash = engine.stateHash();
    const retry = run(engine, group, T0, true);
    assert.deepEqual(retry.map((result) => result.duplicate), [true, true, true]);
    assert.deepEqual(retry.map((result) => result.code), results.map((result) => result.code));
    assert.equal(engine.stateHash(), hash, "a retried group is answered from the window and changes nothing");
  });

  test("equal histories give equal hashes; any applied change moves it", () => {
    const left = funded(newEngine(), "a", 100);
    const right = funded(newEngine(), "a", 100);
    assert.equal(left.stateHash(), right.stateHash());
    expect(right, cmd.credit("c1", "a", 1), "ok");
    assert.notEqual(left.stateHash(), right.stateHash());
  });
});

const random = seededRandom;

interface Batch {
  commands: Command[];
  atomic: boolean;
  timeMs: number;
}

/** A mixed workload over two partners and two currencies: every command type, rejections, groups, retries. */
function scenario(seed: number, batchCount: number): Batch[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
  const amount = (max: number): number => 1 + Math.floor(next() * max);
  const partners = ["pa", "pb"];
  const accounts = ["a0", "a1", "a2", "a3", "u0", "u1"];
  const holds: Record<string, string[]> = { pa: [], pb: [] };
  const sent: Command[] = [];
  const batches: Batch[] = [];
  let timeMs = T0;
  let counter = 0;
  for (let index = 0; index < batchCount; index++) {
    timeMs += Math.floor(next() * 1500);
    const atomic = next() < 0.2;
    const groupPartner = pick(partners);
    const size = 1 + Math.floor(next() * (atomic ? 5 : 12));
    const commands: Command[] = [];
    for (let position = 0; position < size; position++) {
      const partnerId = atomic ? groupPartner : pick(partners);
      if (!atomic && sent.length > 0 && next() < 0.05) {
        const retry = pick(sent);
        if (!commands.some((command) => command.id !== undefined && command.id === retry.id && command.partnerId === retry.partnerId)) {
          commands.push(retry);
        }
        continue;
      }
      const id = `x${counter++}`;
      const accountId = pick(accounts);
      const currency = accountId.startsWith("u") ? "USD" : "EUR";
      const roll = next();
      let command: Command;
      if (roll < 0.08) command = { type: "openAccount", id, partnerId, accountId, currency, overdraftLimit: next() < 0.5 ? 0 : amount(300) };
      else if (roll < 0.3) command = { type: "credit", id, partnerId, accountId, amount: next() < 0.03 ? 0 : amount(1000) };
      else if (roll < 0.42) command = { type: "debit", id, partnerId, accountId, amount: amount(800) };
      else if (roll < 0.55) command = { type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId: pick(accounts), amount: amount(600) };
      else if (roll < 0.67) {
        command = { type: "hold", id, partnerId, accountId, amount: amount(400), expiresInMs: next() < 0.5 ? amount(4000) : undefined };
        if (command.expiresInMs === undefined) delete command.expiresInMs;
        holds[partnerId].push(id);
      } else if (roll < 0.77) {
        const holdId = holds[partnerId].length > 0 && next() < 0.9 ? pick(holds[partnerId]) : "no-such-hold";
        command = next() < 0.5 ? { type: "capture", id, partnerId, holdId } : { type: "capture", id, partnerId, holdId, amount: amount(450) };
      } else if (roll < 0.83) {
        command = { type: "release", id, partnerId, holdId: holds[partnerId].length > 0 ? pick(holds[partnerId]) : "no-such-hold" };
      } else if (roll < 0.9 && !atomic) command = { type: "check", partnerId, accountId, amount: amount(1000) };
      else if (roll < 0.9) command = { type: "credit", id, partnerId, accountId, amount: amount(10) };
      else if (roll < 0.94) command = { type: "setOverdraftLimit", id, partnerId, accountId, overdraftLimit: Math.floor(next() * 300) };
      else command = { type: pick(["freeze", "unfreeze", "unfreeze", "close"] as const), id, partnerId, accountId };
      commands.push(command);
      if (command.type !== "check") sent.push(command);
    }
    if (commands.length > 0) batches.push({ commands, atomic, timeMs });
  }
  return batches;
}

interface ModelAccount {
  balance: number;
  overdraftLimit: number;
  status: string;
}

interface ModelHold {
  accountKey: string;
  amount: number;
  expiresAt: number;
  open: boolean;
}

describe("determinism and invariants", () => {
  test("the same command list on two fresh engines gives identical results, state hashes and snapshots", () => {
    const batches = scenario(42, 600);
    const left = newEngine({ idempotencyCommandsMax: 8192 });
    const right = newEngine({ idempotencyCommandsMax: 8192 });
    for (const batch of batches) {
      const leftResults = run(left, batch.commands, batch.timeMs, batch.atomic);
      const rightResults = run(right, batch.commands, batch.timeMs, batch.atomic);
      assert.deepEqual(rightResults, leftResults);
    }
    assert.ok(left.lastSequence > 2000, `the scenario is not trivial (${left.lastSequence} commands)`);
    assert.equal(right.stateHash(), left.stateHash());
    assert.deepEqual(right.snapshot(), left.snapshot());
    assert.equal(right.lastSequence, left.lastSequence);
    assert.equal(right.timeMs, left.timeMs);
    const other = newEngine({ idempotencyCommandsMax: 8192 });
    for (const batch of scenario(43, 50)) run(other, batch.commands, batch.timeMs, batch.atomic);
    assert.notEqual(other.stateHash(), left.stateHash(), "different histories give different hashes");
  });

  test("accounts always equal the sum of their ok results: balance, held (open holds), limit, status, available", () => {
    const engine = newEngine({ idempotencyCommandsMax: 8192 });
    const accounts = new Map<string, ModelAccount>();
    const holds = new Map<string, ModelHold>();
    const firstResults = new Map<string, Result>();
    const codes = new Set<string>();
    const key = (partnerId: string, id: string): string => `${partnerId}/${id}`;
    for (const batch of scenario(7, 600)) {
      for (const hold of holds.values()) if (hold.open && hold.expiresAt <= batch.timeMs) hold.open = false;
      const results = run(engine, batch.commands, batch.timeMs, batch.atomic);
      for (const [index, command] of batch.commands.entries()) {
        const result = results[index];
        codes.add(result.code);
        if (command.type !== "check" && result.code !== "id_reused") {
          const earlier = firstResults.get(key(command.partnerId, command.id));
          if (earlier) {
            assert.deepEqual(result, { ...earlier, duplicate: true }, `retry of ${command.id}`);
            continue;
          }
          firstResults.set(key(command.partnerId, command.id), result);
        }
        assert.notEqual(result.duplicate, true);
        if (result.code !== "ok") continue;
        const p = command.partnerId;
        switch (command.type) {
          case "openAccount":
            accounts.set(key(p, command.accountId), { balance: 0, overdraftLimit: command.overdraftLimit ?? 0, status: "active" });
            break;
          case "credit":
            accounts.get(key(p, command.accountId))!.balance += command.amount;
            break;
          case "debit":
            accounts.get(key(p, command.accountId))!.balance -= command.amount;
            break;
          case "transfer":
            accounts.get(key(p, command.fromAccountId))!.balance -= command.amount;
            accounts.get(key(p, command.toAccountId))!.balance += command.amount;
            break;
          case "hold":
            holds.set(key(p, command.id), {
              accountKey: key(p, command.accountId), amount: command.amount, open: true,
              expiresAt: command.expiresInMs === undefined ? Number.POSITIVE_INFINITY : engine.timeMs + command.expiresInMs,
            });
            break;
          case "capture": {
            const hold = holds.get(key(p, command.holdId))!;
            assert.ok(hold.open, `captured hold ${command.holdId} was open`);
            hold.open = false;
            accounts.get(hold.accountKey)!.balance -= command.amount ?? hold.amount;
            break;
          }
          case "release": {
            const hold = holds.get(key(p, command.holdId))!;
            assert.ok(hold.open, `released hold ${command.holdId} was open`);
            hold.open = false;
            break;
          }
          case "setOverdraftLimit":
            accounts.get(key(p, command.accountId))!.overdraftLimit = command.overdraftLimit;
            break;
          case "freeze":
          case "unfreeze":
          case "close":
            accounts.get(key(p, command.accountId))!.status = { freeze: "frozen", unfreeze: "active", close: "closed" }[command.type];
            break;
          case "check":
            break;
        }
      }
      for (const [accountKey, model] of accounts) {
        const [partnerId, accountId] = accountKey.split("/");
        const actual = account(engine, accountId, partnerId);
        let held = 0;
        for (const hold of holds.values()) if (hold.open && hold.accountKey === accountKey) held += hold.amount;
        assert.deepEqual(
          { balance: actual.balance, held: actual.held, overdraftLimit: actual.overdraftLimit, status: actual.status },
          { balance: model.balance, held, overdraftLimit: model.overdraftLimit, status: model.status },
          `${accountKey} after batch at ${batch.timeMs}`,
        );
        assert.equal(actual.available, actual.balance - actual.held + actual.overdraftLimit);
      }
    }
    for (const code of ["ok", "insufficient_funds", "account_exists", "hold_closed", "linked_failed", "same_account"]) {
      assert.ok(codes.has(code), `the scenario produced ${code}`);
    }
  });
});

describe("result codes", () => {
  test("a scripted scenario produces every code in RESULT_CODES and nothing else", () => {
    const engine = newEngine({ accountsMax: 4 });
    const seen = new Set<string>();
    const batch = (commands: Command[], timeMs = T0, atomic = false): void => {
      for (const result of run(engine, commands, timeMs, atomic)) seen.add(result.code);
    };
    batch([cmd.open("o-a", "a"), cmd.open("o-b", "b"), cmd.open("o-u", "u", { currency: "USD" }), cmd.open("o-z", "z")]);
    batch([cmd.open("o-a2", "a")]); // account_exists
    batch([cmd.open("o-y", "y")]); // capacity_exceeded
    batch([cmd.credit("c1", "a", 100), cmd.credit("c-b", "b", 5)]);
    batch([cmd.debit("d1", "a", 1000)]); // insufficient_funds
    batch([cmd.credit("c2", "nope", 1)]); // account_not_found
    batch([cmd.admin("freeze", "f-b", "b"), cmd.credit("c3", "b", 1)]); // account_frozen
    batch([cmd.admin("close", "x-z", "z"), cmd.credit("c4", "z", 1)]); // account_closed
    batch([cmd.transfer("t1", "a", "u", 1)]); // currency_mismatch
    batch([cmd.credit("c5", "a", 0)]); // amount_invalid
    batch([cmd.credit("c6", "a", AMOUNT_MAX)]); // amount_overflow
    batch([cmd.capture("k0", "nohold")]); // hold_not_found
    batch([cmd.hold("h1", "a", 10, { expiresInMs: 100 })]);
    batch([cmd.capture("k1", "h1")], T0 + 100); // hold_expired
    batch([cmd.hold("h2", "a", 10), cmd.capture("k2", "h2", { amount: 11 })], T0 + 100); // capture_exceeds_hold
    batch([cmd.capture("k3", "h2"), cmd.capture("k4", "h2")], T0 + 100); // hold_closed
    batch([cmd.credit("c1", "a", 99)], T0 + 100); // id_reused
    batch([cmd.credit("c7", "a", 1), cmd.debit("d2", "a", 1_000_000)], T0 + 100, true); // linked_failed
    batch([cmd.admin("close", "x-a", "a")], T0 + 100); // close_nonzero
    batch([cmd.transfer("t2", "a", "a", 1)], T0 + 100); // same_account
    assert.deepEqual([...seen].sort(), [...RESULT_CODES].sort());
  });
});
