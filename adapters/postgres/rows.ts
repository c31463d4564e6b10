/**
 * Output events flattened into column arrays, and those arrays encoded as Postgres array literals. A deliver
 * writes each table with one statement, `INSERT ... SELECT unnest($1::bigint[]), unnest($2::text[]), ...`: one
 * parameter per column whatever the number of rows, so the statement text is the same for every batch and no
 * batch runs into the protocol's 65,535-parameter limit.
 *
 * The literals are built here rather than by the driver: postgres.js infers an array parameter's type from its
 * first element (a boolean array goes out as a boolean) and PGlite has its own rules, while a string cast to
 * `bigint[]` or `text[]` in the statement means the same to both.
 */
import { assert } from "../../core/assert.ts";
import type { OutputEvent } from "../../core/outputs.ts";

/** results rows, one per event, column by column. */
export interface ResultColumns {
  seq: number[];
  eventId: string[];
  commandId: (string | null)[];
  partnerId: string[];
  type: string[];
  code: string[];
  status: string[];
  duplicate: boolean[];
  amount: (number | null)[];
  balance: (number | null)[];
  held: (number | null)[];
  available: (number | null)[];
  timeMs: number[];
}

/** entries rows, one per account whose balance an event moved. */
export interface EntryColumns {
  partnerId: string[];
  accountId: string[];
  seq: number[];
  eventId: string[];
  commandId: (string | null)[];
  type: string[];
  amount: number[];
  balanceAfter: number[];
  timeMs: number[];
}

/** accounts rows: each account's last state within the batch, once (one statement cannot update a row twice). */
export interface AccountColumns {
  partnerId: string[];
  accountId: string[];
  currency: string[];
  balance: number[];
  held: number[];
  available: number[];
  overdraftLimit: number[];
  status: string[];
  seq: number[];
  timeMs: number[];
}

/** What one deliver writes. */
export interface BatchColumns {
  results: ResultColumns;
  entries: EntryColumns;
  accounts: AccountColumns;
}

/** Flattens `events` (any order of accounts within an event; events in sequence order) into column arrays. */
export function eventColumns(events: readonly OutputEvent[]): BatchColumns {
  const results: ResultColumns = {
    seq: [], eventId: [], commandId: [], partnerId: [], type: [], code: [], status: [], duplicate: [],
    amount: [], balance: [], held: [], available: [], timeMs: [],
  };
  const entries: EntryColumns = {
    partnerId: [], accountId: [], seq: [], eventId: [], commandId: [], type: [], amount: [], balanceAfter: [], timeMs: [],
  };
  const accounts: AccountColumns = {
    partnerId: [], accountId: [], currency: [], balance: [], held: [], available: [], overdraftLimit: [], status: [],
    seq: [], timeMs: [],
  };
  /** Row index in `accounts` by partner and account (a NUL never occurs in an identifier). */
  const accountRow = new Map<string, number>();
  for (const event of events) {
    addResult(results, event);
    const commandId = event.command.id ?? null;
    for (const change of event.accounts) {
      if (change.balanceDelta !== 0) {
        entries.partnerId.push(change.partnerId);
        entries.accountId.push(change.accountId);
        entries.seq.push(event.seq);
        entries.eventId.push(event.eventId);
        entries.commandId.push(commandId);
        entries.type.push(event.command.type);
        entries.amount.push(change.balanceDelta);
        entries.balanceAfter.push(change.balance);
        entries.timeMs.push(event.timeMs);
      }
      const key = `${change.partnerId}\u0000${change.accountId}`;
      let row = accountRow.get(key);
      if (row === undefined) {
        row = accounts.partnerId.length;
        accountRow.set(key, row);
        accounts.partnerId.push(change.partnerId);
        accounts.accountId.push(change.accountId);
      }
      accounts.currency[row] = change.currency;
      accounts.balance[row] = change.balance;
      accounts.held[row] = change.held;
      accounts.available[row] = change.available;
      accounts.overdraftLimit[row] = change.overdraftLimit;
      accounts.status[row] = change.status;
      accounts.seq[row] = event.seq;
      accounts.timeMs[row] = event.timeMs;
    }
  }
  return { results, entries, accounts };
}

function addResult(results: ResultColumns, event: OutputEvent): void {
  const { command, result } = event;
  results.seq.push(event.seq);
  results.eventId.push(event.eventId);
  results.commandId.push(command.id ?? null);
  results.partnerId.push(command.partnerId);
  results.type.push(command.type);
  results.code.push(result.code);
  results.status.push(result.status);
  results.duplicate.push(result.duplicate === true);
  results.amount.push("amount" in command && command.amount !== undefined ? command.amount : null);
  results.balance.push(result.balance ?? null);
  results.held.push(result.held ?? null);
  results.available.push(result.available ?? null);
  results.timeMs.push(event.timeMs);
}

/**
 * A Postgres array literal of `values`, as `$n::bigint[]`, `$n::text[]` or `$n::boolean[]` reads it.
 *
 * JSON.stringify does the work: it is native, several times faster than building the string element by element,
 * and for these values its output is already an array literal between its brackets. Safe integers print as
 * integers (bigintArrayLiteral makes sure they are), null as null (NULL to Postgres, in any case), booleans as
 * true and false (Postgres reads both), and a string is quoted, with a double quote or a backslash in it escaped
 * by a backslash: Postgres's rule too. Only JSON's other escapes (\n, \u0001 ..., for control characters, which
 * identifiers never contain) would mean something else to Postgres, so a string with one takes the slow path.
 */
export function arrayLiteral(values: readonly (number | string | boolean | null)[]): string {
  const json = JSON.stringify(values);
  if (!JSON_ESCAPE_OTHER_THAN_QUOTE_OR_BACKSLASH.test(json)) return `{${json.slice(1, -1)}}`;
  let literal = "{";
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ",";
    literal += typeof value === "string" ? `"${value.replace(/[\\"]/g, "\\$&")}"` : String(value);
  }
  return `${literal}}`;
}

/** arrayLiteral of `values`, asserting that each is a safe integer or null (JSON would print NaN as null). */
export function bigintArrayLiteral(values: readonly (number | null)[]): string {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    // The message is built only on failure: a template literal per element costs more than the check.
    if (value !== null && !Number.isSafeInteger(value)) assert(false, `a bigint column holds ${value}, not a safe integer`);
  }
  return arrayLiteral(values);
}

/**
 * A backslash followed by anything but a double quote or a backslash: a JSON escape Postgres would misread. (In an
 * escaped backslash followed by a letter it matches falsely, which only sends that string down the slow path.)
 */
const JSON_ESCAPE_OTHER_THAN_QUOTE_OR_BACKSLASH = /\\[^"\\]/;
