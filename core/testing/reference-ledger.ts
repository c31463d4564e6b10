/**
 * A small, obviously-correct model of the README's "Ledger semantics", for model-based tests: plain Maps and
 * objects, a whole-state copy per atomic group, no performance tricks. It assumes well-formed input (the engine's
 * InvalidCommandError checks are not modelled) and account and hold tables that never fill (closed holds are
 * remembered forever).
 *
 * Where the README leaves a choice open, the model makes the engine's choice, stated here so it can be argued with:
 * - A command's own fields are checked before any lookup (amount, limit, expiry: `amount_invalid`), then the
 *   account or hold, then its status, then currency, then funds or overflow. A transfer checks `same_account`
 *   before looking accounts up, and that both exist before either's status.
 * - A result carries the source account's figures when the command got as far as finding that account: never
 *   for `amount_invalid`, `linked_failed` or an `id_reused` answered from the window (a hold refused because a
 *   remembered hold has its id found its account, and carries its figures).
 * - An atomic group whose ids are all in the window with the same commands answers with the stored results; when
 *   only some are, or one with another command, the first such command is `id_reused`, the others
 *   `linked_failed`, and nothing is stored. A failing group stores every result: the failing command's code, with
 *   the figures after the undo, and `linked_failed` for the others.
 * - A hold whose id still names a hold (open or closed) is `id_reused` (after the funds check).
 */
import type { Command, Result } from "../types.ts";
import type { AccountStatus, ResultCode } from "../codes.ts";

const AMOUNT_MAX = Number.MAX_SAFE_INTEGER;
const HOLD_EXPIRY_MS_MAX = 366 * 24 * 60 * 60 * 1000;

/** An account as the model keeps it. */
export interface RefAccount {
  partnerId: string;
  accountId: string;
  currency: string;
  balance: number;
  held: number;
  overdraftLimit: number;
  status: AccountStatus;
  /** The sequence of the last command that changed the account (an expiry is not a command). */
  seq: number;
}

interface RefHold {
  accountKey: string;
  amount: number;
  expiresAt: number | undefined;
  seq: number;
  state: "open" | "closed" | "expired";
}

interface WindowEntry {
  fingerprint: string;
  result: Result;
  timeMs: number;
}

interface State {
  accounts: Map<string, RefAccount>;
  holds: Map<string, RefHold>;
  /** The idempotency window by (partner, id); a Map iterates oldest first. */
  window: Map<string, WindowEntry>;
}

/** Window bounds, as the engine's constructor takes them. */
export interface ReferenceOptions {
  idempotencyCommandsMax?: number;
  idempotencyRetentionMs?: number;
}

const key = (partnerId: string, id: string): string => JSON.stringify([partnerId, id]);

/** Every field of a command, in a canonical order: two commands are "the same" iff their fingerprints are equal. */
export function fingerprint(command: Command): string {
  const fields = Object.entries(command).filter(([, value]) => value !== undefined);
  fields.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(fields);
}

const validAmount = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= AMOUNT_MAX;
const validLimit = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= AMOUNT_MAX;
const validExpiry = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= HOLD_EXPIRY_MS_MAX;
const available = (a: RefAccount): number => a.balance - a.held + a.overdraftLimit;

/** An outcome: the code and the account whose figures the result shows, if any. */
type Outcome = [ResultCode, RefAccount?];

/** The reference ledger. */
export class ReferenceLedger {
  private state: State = { accounts: new Map(), holds: new Map(), window: new Map() };
  private readonly commandsMax: number;
  private readonly retentionMs: number;
  lastSequence = 0;
  timeMs = 0;

  constructor(options: ReferenceOptions = {}) {
    this.commandsMax = options.idempotencyCommandsMax ?? 2 ** 20;
    this.retentionMs = options.idempotencyRetentionMs ?? 24 * 60 * 60 * 1000;
  }

  /** The account, with `available`, or undefined. */
  account(partnerId: string, accountId: string): (RefAccount & { available: number }) | undefined {
    const a = this.state.accounts.get(key(partnerId, accountId));
    return a && { ...a, available: available(a) };
  }

  /** The window's stored result for this id, marked duplicate, or undefined. */
  storedResult(partnerId: string, id: string): Result | undefined {
    const entry = this.state.window.get(key(partnerId, id));
    return entry && { ...entry.result, duplicate: true };
  }

  /** Stamp the batch, expire due holds and age out the window, then apply the commands singly or as one group. */
  execute(commands: Command[], options: { atomic?: boolean; timeMs?: number } = {}): Result[] {
    this.timeMs = Math.max(this.timeMs, options.timeMs ?? this.timeMs);
    this.expireHolds();
    for (const [k, entry] of this.state.window) {
      if (this.timeMs - entry.timeMs < this.retentionMs) break;
      this.state.window.delete(k);
    }
    if (!options.atomic) return commands.map((c) => this.applySingle(c));
    return this.applyGroup(commands);
  }

  /** Holds due at the batch's stamped time close as expired, in (expiresAt, seq) order. */
  private expireHolds(): void {
    const due = [...this.state.holds.values()].filter(
      (h) => h.state === "open" && h.expiresAt !== undefined && h.expiresAt <= this.timeMs,
    );
    due.sort((a, b) => a.expiresAt! - b.expiresAt! || a.seq - b.seq);
    for (const hold of due) {
      this.state.accounts.get(hold.accountKey)!.held -= hold.amount;
      hold.state = "expired";
    }
  }

  private applySingle(command: Command): Result {
    const seq = ++this.lastSequence;
    if (command.type !== "check") {
      const entry = this.state.window.get(key(command.partnerId, command.id));
      if (entry?.fingerprint === fingerprint(command)) return { ...entry.result, duplicate: true };
      if (entry) return result(command, ["id_reused"], seq);
    }
    const r = result(command, this.effect(command, seq), seq);
    this.remember(command, r);
    return r;
  }

  private applyGroup(commands: Command[]): Result[] {
    const seqs = commands.map(() => ++this.lastSequence);
    const entries = commands.map((c) => (c.type === "check" ? undefined : this.state.window.get(key(c.partnerId, c.id))));
    if (entries.some((e) => e !== undefined)) {
      const same = entries.map((e, i) => e !== undefined && e.fingerprint === fingerprint(commands[i]));
      if (same.every(Boolean)) return entries.map((e) => ({ ...e!.result, duplicate: true }));
      let reused = entries.findIndex((e, i) => e !== undefined && !same[i]);
      if (reused === -1) reused = same.indexOf(true);
      return commands.map((c, i) => result(c, [i === reused ? "id_reused" : "linked_failed"], seqs[i]));
    }

    const before = structuredClone(this.state);
    let results: Result[] = [];
    for (const [i, c] of commands.entries()) {
      const [code, account] = this.effect(c, seqs[i]);
      results.push(result(c, [code, account], seqs[i]));
      if (code === "ok") continue;
      // Undo everything: the failing command keeps its code (and the figures after the undo), the others fail.
      this.state = before;
      const after = account && this.state.accounts.get(key(account.partnerId, account.accountId));
      results = commands.map((c, j) => result(c, j === i ? [code, after] : ["linked_failed"], seqs[j]));
      break;
    }
    commands.forEach((c, i) => this.remember(c, results[i]));
    return results;
  }

  /** Store a result in the window (not a check's), forgetting the oldest entry when it is full. */
  private remember(command: Command, r: Result): void {
    if (command.type === "check") return;
    const window = this.state.window;
    window.set(key(command.partnerId, command.id), { fingerprint: fingerprint(command), result: r, timeMs: this.timeMs });
    if (window.size > this.commandsMax) window.delete(window.keys().next().value!);
  }

  /** The command's checks in order, then its effect. State changes only when the code is "ok". */
  private effect(c: Command, seq: number): Outcome {
    const { accounts, holds } = this.state;
    const find = (accountId: string) => accounts.get(key(c.partnerId, accountId));
    switch (c.type) {
      case "openAccount": {
        if (c.overdraftLimit !== undefined && !validLimit(c.overdraftLimit)) return ["amount_invalid"];
        const existing = find(c.accountId);
        if (existing) return ["account_exists", existing];
        const account: RefAccount = {
          partnerId: c.partnerId,
          accountId: c.accountId,
          currency: c.currency,
          balance: 0,
          held: 0,
          overdraftLimit: c.overdraftLimit ?? 0,
          status: "active",
          seq,
        };
        accounts.set(key(c.partnerId, c.accountId), account);
        return ["ok", account];
      }
      case "credit":
      case "debit":
      case "hold":
      case "check": {
        if (!validAmount(c.amount)) return ["amount_invalid"];
        if (c.type === "hold" && c.expiresInMs !== undefined && !validExpiry(c.expiresInMs)) return ["amount_invalid"];
        const account = find(c.accountId);
        if (!account) return ["account_not_found"];
        const blocked = blockedBy(account);
        if (blocked) return [blocked, account];
        if (c.type === "credit") {
          if (c.currency !== undefined && c.currency !== account.currency) return ["currency_mismatch", account];
          if (account.balance + account.overdraftLimit + c.amount > AMOUNT_MAX) return ["amount_overflow", account];
          account.balance += c.amount;
          account.seq = seq;
          return ["ok", account];
        }
        if (c.type === "debit" && c.currency !== undefined && c.currency !== account.currency) {
          return ["currency_mismatch", account];
        }
        if (c.amount > available(account)) return ["insufficient_funds", account];
        if (c.type === "check") return ["ok", account];
        if (c.type === "debit") account.balance -= c.amount;
        if (c.type === "hold") {
          if (holds.has(key(c.partnerId, c.id))) return ["id_reused", account];
          account.held += c.amount;
          const expiresAt = c.expiresInMs === undefined ? undefined : this.timeMs + c.expiresInMs;
          holds.set(key(c.partnerId, c.id), { accountKey: key(c.partnerId, c.accountId), amount: c.amount, expiresAt, seq, state: "open" });
        }
        account.seq = seq;
        return ["ok", account];
      }
      case "transfer": {
        if (!validAmount(c.amount)) return ["amount_invalid"];
        const from = find(c.fromAccountId);
        if (c.fromAccountId === c.toAccountId) return ["same_account", from];
        const to = find(c.toAccountId);
        if (!from || !to) return ["account_not_found", from];
        const blocked = blockedBy(from) ?? blockedBy(to);
        if (blocked) return [blocked, from];
        if (from.currency !== to.currency) return ["currency_mismatch", from];
        if (c.amount > available(from)) return ["insufficient_funds", from];
        if (to.balance + to.overdraftLimit + c.amount > AMOUNT_MAX) return ["amount_overflow", from];
        from.balance -= c.amount;
        to.balance += c.amount;
        from.seq = seq;
        to.seq = seq;
        return ["ok", from];
      }
      case "capture":
      case "release": {
        if (c.type === "capture" && c.amount !== undefined && !validAmount(c.amount)) return ["amount_invalid"];
        const hold = holds.get(key(c.partnerId, c.holdId));
        if (!hold) return ["hold_not_found"];
        const account = accounts.get(hold.accountKey)!;
        if (hold.state === "expired") return ["hold_expired", account];
        if (hold.state === "closed") return ["hold_closed", account];
        if (c.type === "capture") {
          if (account.status === "frozen") return ["account_frozen", account];
          if (c.amount !== undefined && c.amount > hold.amount) return ["capture_exceeds_hold", account];
          account.balance -= c.amount ?? hold.amount;
        }
        account.held -= hold.amount;
        account.seq = seq;
        hold.state = "closed";
        return ["ok", account];
      }
      case "setOverdraftLimit": {
        if (!validLimit(c.overdraftLimit)) return ["amount_invalid"];
        const account = find(c.accountId);
        if (!account) return ["account_not_found"];
        if (account.status === "closed") return ["account_closed", account];
        if (account.balance + c.overdraftLimit > AMOUNT_MAX) return ["amount_overflow", account];
        account.overdraftLimit = c.overdraftLimit;
        account.seq = seq;
        return ["ok", account];
      }
      case "freeze":
      case "unfreeze":
      case "close": {
        const account = find(c.accountId);
        if (!account) return ["account_not_found"];
        if (account.status === "closed") return ["account_closed", account];
        if (c.type === "close" && (account.balance !== 0 || account.held !== 0)) return ["close_nonzero", account];
        account.status = c.type === "freeze" ? "frozen" : c.type === "unfreeze" ? "active" : "closed";
        account.seq = seq;
        return ["ok", account];
      }
    }
  }
}

/** A result with the figures of `account` as they are now, when there is one. */
function result(command: Command, [code, account]: Outcome, seq: number): Result {
  const r: Result = { id: command.id ?? "", status: code === "ok" ? "ok" : "rejected", code, seq };
  if (account) {
    r.balance = account.balance;
    r.held = account.held;
    r.available = available(account);
  }
  return r;
}

/** account_closed or account_frozen when no money may move, else undefined. */
function blockedBy(account: RefAccount): ResultCode | undefined {
  if (account.status === "closed") return "account_closed";
  if (account.status === "frozen") return "account_frozen";
  return undefined;
}
