/**
 * The public data types: commands in, results out. Plain objects, so they cross JSON, protobuf and postMessage
 * unchanged. Amounts are integer minor units (1 <= amount <= 2^53-1).
 */
import type { AccountStatus, ResultCode } from "./codes.ts";

/** Open an account. Currency is fixed for the account's life. */
export interface OpenAccountCommand {
  type: "openAccount";
  id: string;
  partnerId: string;
  accountId: string;
  currency: string;
  /** How far below zero the balance may go, in minor units. Default 0. */
  overdraftLimit?: number;
}

/** Add money (top-up, incoming payment). `currency`, when given, must match the account's. */
export interface CreditCommand {
  type: "credit";
  id: string;
  partnerId: string;
  accountId: string;
  amount: number;
  currency?: string;
}

/** Take money (payout, purchase). Rejected `insufficient_funds` when amount > available. */
export interface DebitCommand {
  type: "debit";
  id: string;
  partnerId: string;
  accountId: string;
  amount: number;
  currency?: string;
}

/** Move money between two accounts of one partner and one currency (double entry). */
export interface TransferCommand {
  type: "transfer";
  id: string;
  partnerId: string;
  fromAccountId: string;
  toAccountId: string;
  amount: number;
}

/** Reserve money from available. The hold is named by this command's `id`. */
export interface HoldCommand {
  type: "hold";
  id: string;
  partnerId: string;
  accountId: string;
  amount: number;
  /** The hold is released automatically this long after the batch that placed it (stamped time). */
  expiresInMs?: number;
}

/** Take all (default) or part of a hold; the rest is released and the hold closes. */
export interface CaptureCommand {
  type: "capture";
  id: string;
  partnerId: string;
  holdId: string;
  amount?: number;
}

/** Give a hold back to available; the hold closes. */
export interface ReleaseCommand {
  type: "release";
  id: string;
  partnerId: string;
  holdId: string;
}

/** Read-only: is `amount` available? Ok or `insufficient_funds`, with `available` either way. No id needed. */
export interface CheckCommand {
  type: "check";
  id?: string;
  partnerId: string;
  accountId: string;
  amount: number;
}

/** Admin: change how far below zero the balance may go. */
export interface SetOverdraftLimitCommand {
  type: "setOverdraftLimit";
  id: string;
  partnerId: string;
  accountId: string;
  overdraftLimit: number;
}

/** Admin: freeze (no money moves), unfreeze, or close (only at zero balance and no holds). */
export interface AccountAdminCommand {
  type: "freeze" | "unfreeze" | "close";
  id: string;
  partnerId: string;
  accountId: string;
}

/** Any command the ledger accepts. */
export type Command =
  | OpenAccountCommand
  | CreditCommand
  | DebitCommand
  | TransferCommand
  | HoldCommand
  | CaptureCommand
  | ReleaseCommand
  | CheckCommand
  | SetOverdraftLimitCommand
  | AccountAdminCommand;

/** The outcome of one command. Rejections are results, not exceptions. */
export interface Result {
  /** The command's id ("" for a check without one). */
  id: string;
  status: "ok" | "rejected";
  code: ResultCode;
  /** The sequence the command was applied at (for a duplicate: the original's). */
  seq: number;
  /** The (source) account after the command, when the account exists. */
  balance?: number;
  held?: number;
  available?: number;
  /** True when this is the stored result of an earlier command with the same id. */
  duplicate?: boolean;
}

/** An account as the ledger holds it. */
export interface Account {
  partnerId: string;
  accountId: string;
  currency: string;
  balance: number;
  held: number;
  available: number;
  overdraftLimit: number;
  status: AccountStatus;
  /** The sequence of the last command that changed this account. */
  seq: number;
}

/** Sizes of one shard's preallocated tables. Every field has a documented default in core/limits.ts. */
export interface LedgerOptions {
  /** Most accounts. Default ACCOUNTS_DEFAULT (2^20). */
  accountsMax?: number;
  /** Most partners. Default PARTNERS_DEFAULT (2^14). */
  partnersMax?: number;
  /** Hold slots: open holds plus recently closed ones. Default HOLDS_DEFAULT (2^18). */
  holdsMax?: number;
  /** Idempotency window size in commands. Default IDEMPOTENCY_COMMANDS_DEFAULT (2^20). */
  idempotencyCommandsMax?: number;
  /** Idempotency window age in stamped milliseconds. Default 24 h. */
  idempotencyRetentionMs?: number;
}
