/**
 * The EventTranslator: validates a plain command and writes it into a claimed ring slot in place. It is the only
 * writer of slots, so everything the processor reads has the right shape: identifiers are ASCII of the allowed
 * characters and fit their field, required fields are present, numbers are numbers. Values (amount ranges, ids in
 * the window, balances) are the ledger's business and come back as result codes.
 */
import { Type } from "./codes.ts";
import { InvalidCommandError } from "./errors.ts";
import { CURRENCY_BYTES_MAX, CURRENCY_BYTES_MIN, CURRENCY_CLASS, IDENTIFIER_CLASS, KEY_BYTES_MAX } from "./limits.ts";
import { Field, FIELD_COUNT, FIELD_OFFSET, Flag, RingBuffer, SLOT_TEXT_WORDS } from "./ring-buffer.ts";
import type { Command } from "./types.ts";
import { ABSENT, NUMBER_FIELDS, ScannedNumber, ScannedText, TEXT_FIELDS, type ScannedBatch } from "./command-batch-reader.ts";

/** 1 for each UTF-16 code unit allowed in an identifier; 64 KiB so any charCodeAt indexes it without a branch. */
const IDENTIFIER = charTable(IDENTIFIER_CLASS);
const CURRENCY = charTable(CURRENCY_CLASS);

/** 1 for each ASCII character in the regular-expression class `characterClass`; built once at load. */
function charTable(characterClass: string): Uint8Array {
  const table = new Uint8Array(65536);
  const allowed = new RegExp(`[${characterClass}]`);
  for (let char = 0; char < 128; char++) if (allowed.test(String.fromCharCode(char))) table[char] = 1;
  return table;
}

/** The numeric command type of a type name, or 0. A switch: no dynamic property lookup per command. */
function typeOf(name: unknown): number {
  switch (name) {
    case "credit":
      return Type.credit;
    case "debit":
      return Type.debit;
    case "transfer":
      return Type.transfer;
    case "hold":
      return Type.hold;
    case "capture":
      return Type.capture;
    case "release":
      return Type.release;
    case "check":
      return Type.check;
    case "openAccount":
      return Type.openAccount;
    case "setOverdraftLimit":
      return Type.setOverdraftLimit;
    case "freeze":
      return Type.freeze;
    case "unfreeze":
      return Type.unfreeze;
    case "close":
      return Type.close;
    default:
      return 0;
  }
}

type Row = Record<string, unknown>;

/** The slot `checkCommands` writes into and nobody reads (created at first use). */
let scratchSlot: RingBuffer | undefined;

/**
 * Throw the InvalidCommandError `translateCommand` would for any of commands `from..to - 1` (named by their position
 * in `commands`), touching no ring anyone reads: for a caller that must refuse a request before any part of it is
 * applied (one split into ring-sized pieces, or across shards).
 */
export function checkCommands(commands: readonly Command[], from = 0, to = commands.length): void {
  scratchSlot ??= new RingBuffer(2);
  for (let position = from; position < to; position++) translateCommand(scratchSlot, 0, commands[position], position);
}

/**
 * Write `command` into slot `index`. Throws InvalidCommandError naming `commands[position].field`; the slot is then
 * garbage and the caller gives the claim back.
 */
export function translateCommand(ring: RingBuffer, index: number, command: Command, position: number): void {
  if (typeof command !== "object" || command === null) throw new InvalidCommandError(pathOf(position), "must be an object");
  const row = command as unknown as Row;
  const type = typeOf(row.type);
  if (type === 0) throw new InvalidCommandError(`${pathOf(position)}.type`, `unknown command type ${JSON.stringify(row.type)}`);
  clearSlot(ring, index, type);
  if (type === Type.check) {
    if (row.id !== undefined) writeIdentifier(ring, index, Field.id, row.id, position, "id");
  } else {
    writeIdentifier(ring, index, Field.id, row.id, position, "id");
  }
  writeIdentifier(ring, index, Field.partner, row.partnerId, position, "partnerId");
  switch (type) {
    case Type.openAccount:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
      writeCurrency(ring, index, row.currency, position);
      if (row.overdraftLimit !== undefined) writeNumber(ring, index, row.overdraftLimit, position, "overdraftLimit");
      return;
    case Type.credit:
    case Type.debit:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
      writeNumber(ring, index, row.amount, position, "amount");
      if (row.currency !== undefined) writeCurrency(ring, index, row.currency, position);
      return;
    case Type.transfer:
      writeIdentifier(ring, index, Field.account, row.fromAccountId, position, "fromAccountId");
      writeIdentifier(ring, index, Field.target, row.toAccountId, position, "toAccountId");
      writeNumber(ring, index, row.amount, position, "amount");
      return;
    case Type.hold:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
      writeNumber(ring, index, row.amount, position, "amount");
      if (row.expiresInMs !== undefined) writeExpiry(ring, index, row.expiresInMs, position);
      return;
    case Type.capture:
      writeIdentifier(ring, index, Field.target, row.holdId, position, "holdId");
      if (row.amount !== undefined) writeNumber(ring, index, row.amount, position, "amount");
      return;
    case Type.release:
      writeIdentifier(ring, index, Field.target, row.holdId, position, "holdId");
      return;
    case Type.check:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
      writeNumber(ring, index, row.amount, position, "amount");
      return;
    case Type.setOverdraftLimit:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
      writeNumber(ring, index, row.overdraftLimit, position, "overdraftLimit");
      return;
    default:
      writeIdentifier(ring, index, Field.account, row.accountId, position, "accountId");
  }
}

/**
 * Write command `k` of a scanned CommandBatch into slot `index`, copying its bytes (no strings): the slot holds what
 * translateCommand writes for the same command (a test holds the two to the same slots). Fields a type does not take
 * are not read: refusing them is the transport's contract, as for JSON. Throws InvalidCommandError as
 * translateCommand does (the messages may differ); the slot is then garbage and the caller gives the claim back.
 */
export function translateScanned(ring: RingBuffer, index: number, scan: ScannedBatch, k: number, position: number): void {
  const type = scan.types[k];
  if (type < Type.openAccount || type > Type.close) throw new InvalidCommandError(`${pathOf(position)}.type`, `unknown command type ${type}`);
  clearSlot(ring, index, type);
  const bytes = scan.bytes;
  const ranges = scan.ranges;
  const at = k * TEXT_FIELDS * 2;
  const numbers = k * NUMBER_FIELDS;
  const partner = at + ScannedText.partnerId * 2;
  copyIdentifier(ring, index, Field.id, bytes, ranges[at + ScannedText.id * 2], ranges[at + ScannedText.id * 2 + 1], type !== Type.check, position, "id");
  copyIdentifier(ring, index, Field.partner, bytes, ranges[partner], ranges[partner + 1], true, position, "partnerId");
  // Where each field's (start, end) pair is in `ranges`.
  const account = at + ScannedText.accountId * 2;
  const target = at + ScannedText.toAccountId * 2;
  const hold = at + ScannedText.holdId * 2;
  const currency = at + ScannedText.currency * 2;
  switch (type) {
    case Type.openAccount:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
      copyIdentifier(ring, index, Field.currency, bytes, ranges[currency], ranges[currency + 1], true, position, "currency");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.overdraftLimit], false, false, position, "overdraftLimit");
      return;
    case Type.credit:
    case Type.debit:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.amount], true, false, position, "amount");
      copyIdentifier(ring, index, Field.currency, bytes, ranges[currency], ranges[currency + 1], false, position, "currency");
      return;
    case Type.transfer:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "fromAccountId");
      copyIdentifier(ring, index, Field.target, bytes, ranges[target], ranges[target + 1], true, position, "toAccountId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.amount], true, false, position, "amount");
      return;
    case Type.hold:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.amount], true, false, position, "amount");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.expiresInMs], false, true, position, "expiresInMs");
      return;
    case Type.capture:
      copyIdentifier(ring, index, Field.target, bytes, ranges[hold], ranges[hold + 1], true, position, "holdId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.amount], false, false, position, "amount");
      return;
    case Type.release:
      copyIdentifier(ring, index, Field.target, bytes, ranges[hold], ranges[hold + 1], true, position, "holdId");
      return;
    case Type.check:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.amount], true, false, position, "amount");
      return;
    case Type.setOverdraftLimit:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
      copyNumber(ring, index, scan.numbers[numbers + ScannedNumber.overdraftLimit], true, false, position, "overdraftLimit");
      return;
    default:
      copyIdentifier(ring, index, Field.account, bytes, ranges[account], ranges[account + 1], true, position, "accountId");
  }
}

/** A scanned number into `amount` (or `expiresInMs` when `expiry`); ABSENT is refused when `required`. */
function copyNumber(ring: RingBuffer, index: number, value: number, required: boolean, expiry: boolean, position: number, name: string): void {
  if (value === ABSENT) {
    if (required) throw new InvalidCommandError(`${pathOf(position)}.${name}`, "is required");
  } else if (expiry) writeExpiry(ring, index, value, position);
  else writeNumber(ring, index, value, position, name);
}

/** Copy bytes `[start, end)` into a slot's text field (absent when empty), checking them as writeIdentifier does. */
function copyIdentifier(ring: RingBuffer, index: number, field: number, bytes: Uint8Array, start: number, end: number, required: boolean, position: number, name: string): void {
  const length = end - start;
  if (length === 0) {
    if (required) throw new InvalidCommandError(`${pathOf(position)}.${name}`, "is required");
    return;
  }
  const currency = field === Field.currency;
  const min = currency ? CURRENCY_BYTES_MIN : 1;
  const max = currency ? CURRENCY_BYTES_MAX : KEY_BYTES_MAX;
  if (length < min || length > max) throw new InvalidCommandError(`${pathOf(position)}.${name}`, `must be ${min}-${max} characters, got ${length}`);
  const allowed = currency ? CURRENCY : IDENTIFIER;
  const words = ring.textWords;
  let word = index * SLOT_TEXT_WORDS + (FIELD_OFFSET[field] >>> 2);
  let valid = 1;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const c0 = bytes[i];
    const c1 = bytes[i + 1];
    const c2 = bytes[i + 2];
    const c3 = bytes[i + 3];
    valid &= allowed[c0] & allowed[c1] & allowed[c2] & allowed[c3];
    words[word++] = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
  }
  if (i < end) {
    let last = 0;
    for (let shift = 0; i < end; i++, shift += 8) {
      valid &= allowed[bytes[i]];
      last |= bytes[i] << shift;
    }
    words[word] = last;
  }
  if (valid !== 1) throw new InvalidCommandError(`${pathOf(position)}.${name}`, `must be characters of [${currency ? CURRENCY_CLASS : IDENTIFIER_CLASS}]`);
  ring.fieldLength[index * FIELD_COUNT + field] = length;
  if (field === Field.id) ring.flags[index] |= Flag.id;
  else if (currency) ring.flags[index] |= Flag.currency;
}

/** Slot `index` holds a command of `type` with no fields yet. */
function clearSlot(ring: RingBuffer, index: number, type: number): void {
  ring.type[index] = type;
  ring.flags[index] = 0;
  const lengths = index * FIELD_COUNT;
  for (let f = 0; f < FIELD_COUNT; f++) ring.fieldLength[lengths + f] = 0;
  ring.amount[index] = 0;
  ring.expiresInMs[index] = 0;
}

function writeIdentifier(ring: RingBuffer, index: number, field: number, value: unknown, position: number, name: string): void {
  if (typeof value !== "string") throw new InvalidCommandError(`${pathOf(position)}.${name}`, "must be a string");
  const length = value.length;
  if (length < 1 || length > KEY_BYTES_MAX) {
    throw new InvalidCommandError(`${pathOf(position)}.${name}`, `must be 1-${KEY_BYTES_MAX} characters, got ${length}`);
  }
  if (!writeText(ring, index, field, value, IDENTIFIER)) {
    throw new InvalidCommandError(`${pathOf(position)}.${name}`, `character ${firstBad(value, IDENTIFIER)} is not one of [${IDENTIFIER_CLASS}]`);
  }
  if (field === Field.id) ring.flags[index] |= Flag.id;
}

function writeCurrency(ring: RingBuffer, index: number, value: unknown, position: number): void {
  if (typeof value !== "string") throw new InvalidCommandError(`${pathOf(position)}.currency`, "must be a string");
  const length = value.length;
  if (length < CURRENCY_BYTES_MIN || length > CURRENCY_BYTES_MAX) {
    throw new InvalidCommandError(`${pathOf(position)}.currency`, `must be ${CURRENCY_BYTES_MIN}-${CURRENCY_BYTES_MAX} characters`);
  }
  if (!writeText(ring, index, Field.currency, value, CURRENCY)) {
    throw new InvalidCommandError(`${pathOf(position)}.currency`, `character ${firstBad(value, CURRENCY)} is not one of [${CURRENCY_CLASS}]`);
  }
  ring.flags[index] |= Flag.currency;
}

/**
 * Write `value` as ASCII into a slot's text field, four characters per 32-bit word (little-endian, asserted at
 * load), the last word zero-padded. Returns false when a character is not in `allowed`; validity is accumulated
 * without branching and checked once.
 */
function writeText(ring: RingBuffer, index: number, field: number, value: string, allowed: Uint8Array): boolean {
  const length = value.length;
  const words = ring.textWords;
  let word = index * SLOT_TEXT_WORDS + (FIELD_OFFSET[field] >>> 2);
  let valid = 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    const c0 = value.charCodeAt(i);
    const c1 = value.charCodeAt(i + 1);
    const c2 = value.charCodeAt(i + 2);
    const c3 = value.charCodeAt(i + 3);
    valid &= allowed[c0] & allowed[c1] & allowed[c2] & allowed[c3];
    words[word++] = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
  }
  if (i < length) {
    let last = 0;
    for (let shift = 0; i < length; i++, shift += 8) {
      const c = value.charCodeAt(i);
      valid &= allowed[c];
      last |= (c & 0xff) << shift;
    }
    words[word] = last;
  }
  ring.fieldLength[index * FIELD_COUNT + field] = length;
  return valid === 1;
}

function firstBad(value: string, allowed: Uint8Array): number {
  for (let i = 0; i < value.length; i++) if (allowed[value.charCodeAt(i)] === 0) return i;
  return -1;
}

function writeNumber(ring: RingBuffer, index: number, value: unknown, position: number, name: string): void {
  if (typeof value !== "number") throw new InvalidCommandError(`${pathOf(position)}.${name}`, "must be a number");
  // + 0 turns -0 (JSON "-0") into 0: the same limit is the same command (its fingerprint) and the same state (hash).
  ring.amount[index] = value + 0;
  ring.flags[index] |= Flag.amount;
}

function writeExpiry(ring: RingBuffer, index: number, value: unknown, position: number): void {
  if (typeof value !== "number") throw new InvalidCommandError(`${pathOf(position)}.expiresInMs`, "must be a number");
  ring.expiresInMs[index] = value + 0;
  ring.flags[index] |= Flag.expiry;
}

/** The path of command `position` in error messages; built only when there is an error. */
export function pathOf(position: number): string {
  return `commands[${position}]`;
}
