/**
 * Result codes and command types: the numbers are the wire values of `ResultCode` and `CommandType` in
 * core/proto/hotledger/v1/ledger.proto (a test asserts the two agree), the strings are what users see.
 */

/** Every outcome the ledger can produce, in wire order. Index = numeric code. */
export const RESULT_CODES = [
  "ok",
  "insufficient_funds",
  "account_not_found",
  "account_exists",
  "account_frozen",
  "account_closed",
  "currency_mismatch",
  "amount_invalid",
  "amount_overflow",
  "hold_not_found",
  "hold_expired",
  "hold_closed",
  "capture_exceeds_hold",
  "id_reused",
  "linked_failed",
  "close_nonzero",
  "same_account",
  "capacity_exceeded",
] as const;

/** A result code as users see it, e.g. `"insufficient_funds"`. */
export type ResultCode = (typeof RESULT_CODES)[number];

/** Numeric result codes, used in the ring and the window (typed arrays hold numbers, not strings). */
export const Code = {
  ok: 0,
  insufficient_funds: 1,
  account_not_found: 2,
  account_exists: 3,
  account_frozen: 4,
  account_closed: 5,
  currency_mismatch: 6,
  amount_invalid: 7,
  amount_overflow: 8,
  hold_not_found: 9,
  hold_expired: 10,
  hold_closed: 11,
  capture_exceeds_hold: 12,
  id_reused: 13,
  linked_failed: 14,
  close_nonzero: 15,
  same_account: 16,
  capacity_exceeded: 17,
} as const satisfies Record<ResultCode, number>;

/** Every command type, in wire order. Index = numeric type. Index 0 is reserved for "empty slot". */
export const COMMAND_TYPES = [
  "unspecified",
  "openAccount",
  "credit",
  "debit",
  "transfer",
  "hold",
  "capture",
  "release",
  "check",
  "setOverdraftLimit",
  "freeze",
  "unfreeze",
  "close",
] as const;

/** A command type as users write it, e.g. `"credit"`. */
export type CommandType = Exclude<(typeof COMMAND_TYPES)[number], "unspecified">;

/** Numeric command types, as stored in ring slots and journal records. */
export const Type = {
  openAccount: 1,
  credit: 2,
  debit: 3,
  transfer: 4,
  hold: 5,
  capture: 6,
  release: 7,
  check: 8,
  setOverdraftLimit: 9,
  freeze: 10,
  unfreeze: 11,
  close: 12,
} as const satisfies Record<CommandType, number>;

/** Account status as users see it; index = stored number. */
export const ACCOUNT_STATUSES = ["active", "frozen", "closed"] as const;

/** An account's status. */
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];

/** Numeric account status, as stored in the accounts table. */
export const Status = { active: 0, frozen: 1, closed: 2 } as const;
