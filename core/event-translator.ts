/**
 * The EventTranslator: validates a plain command and writes it into a claimed ring slot in place. It is the only
 * writer of slots, so everything the processor reads has the right shape: identifiers are ASCII of the allowed
 * characters and fit their field, required fields are present, numbers are numbers. Values (amount ranges, ids in
 * the window, balances) are the ledger's business and come back as result codes.
 */
import { Type } from "./codes.ts";
import { InvalidCommandError } from "./errors.ts";
import { CURRENCY_BYTES_MAX, CURRENCY_BYTES_MIN, CURRENCY_CLASS, IDENTIFIER_CLASS, KEY_BYTES_MAX } from "./limits.ts";
import { Field, FIELD_COUNT, FIELD_OFFSET, Flag, type RingBuffer, SLOT_TEXT_WORDS } from "./ring-buffer.ts";
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

/** One text field a type takes from a scanned command: the slot field it goes to, where it comes from, its name. */
type TextRule = readonly [slotField: number, source: number, required: boolean, name: string];
/** One number field: where it comes from, whether it goes to `expiresInMs` (else `amount`), required, name. */
type NumberRule = readonly [source: number, expiry: boolean, required: boolean, name: string];

const ACCOUNT: TextRule = [Field.account, ScannedText.accountId, true, "accountId"];
const AMOUNT: NumberRule = [ScannedNumber.amount, false, true, "amount"];

/**
 * What each type takes from a scanned command, the same fields translateCommand writes (a test holds the two to the
 * same slots). Fields a type does not take are not read: refusing them is the transport's contract (as for JSON).
 */
const SCANNED_RULES: readonly { texts: readonly TextRule[]; numbers: readonly NumberRule[] }[] = (() => {
  const rules = new Array<{ texts: readonly TextRule[]; numbers: readonly NumberRule[] }>(Type.close + 1);
  rules[Type.openAccount] = { texts: [ACCOUNT, [Field.currency, ScannedText.currency, true, "currency"]], numbers: [[ScannedNumber.overdraftLimit, false, false, "overdraftLimit"]] };
  rules[Type.credit] = rules[Type.debit] = { texts: [ACCOUNT, [Field.currency, ScannedText.currency, false, "currency"]], numbers: [AMOUNT] };
  rules[Type.transfer] = { texts: [[Field.account, ScannedText.accountId, true, "fromAccountId"], [Field.target, ScannedText.toAccountId, true, "toAccountId"]], numbers: [AMOUNT] };
  rules[Type.hold] = { texts: [ACCOUNT], numbers: [AMOUNT, [ScannedNumber.expiresInMs, true, false, "expiresInMs"]] };
  rules[Type.capture] = { texts: [[Field.target, ScannedText.holdId, true, "holdId"]], numbers: [[ScannedNumber.amount, false, false, "amount"]] };
  rules[Type.release] = { texts: [[Field.target, ScannedText.holdId, true, "holdId"]], numbers: [] };
  rules[Type.check] = { texts: [ACCOUNT], numbers: [AMOUNT] };
  rules[Type.setOverdraftLimit] = { texts: [ACCOUNT], numbers: [[ScannedNumber.overdraftLimit, false, true, "overdraftLimit"]] };
  rules[Type.freeze] = rules[Type.unfreeze] = rules[Type.close] = { texts: [ACCOUNT], numbers: [] };
  return rules;
})();

/**
 * Write command `k` of a scanned CommandBatch into slot `index`, copying its bytes (no strings): the slot holds what
 * translateCommand writes for the same command. Throws InvalidCommandError as translateCommand does (the messages
 * may differ); the slot is then garbage and the caller gives the claim back.
 */
export function translateScanned(ring: RingBuffer, index: number, scan: ScannedBatch, k: number, position: number): void {
  const type = scan.types[k];
  const rules = type >= 1 && type < SCANNED_RULES.length ? SCANNED_RULES[type] : undefined;
  if (rules === undefined) throw new InvalidCommandError(`${pathOf(position)}.type`, `unknown command type ${type}`);
  clearSlot(ring, index, type);
  const ranges = scan.ranges;
  const at = k * TEXT_FIELDS * 2;
  copyIdentifier(ring, index, Field.id, scan.bytes, ranges[at], ranges[at + 1], type !== Type.check, position, "id");
  copyIdentifier(ring, index, Field.partner, scan.bytes, ranges[at + 2], ranges[at + 3], true, position, "partnerId");
  // Index loops, not for-of with destructuring: this runs for every command of a request.
  const texts = rules.texts;
  for (let r = 0; r < texts.length; r++) {
    const [slotField, source, required, name] = texts[r];
    copyIdentifier(ring, index, slotField, scan.bytes, ranges[at + source * 2], ranges[at + source * 2 + 1], required, position, name);
  }
  const numbers = rules.numbers;
  for (let r = 0; r < numbers.length; r++) {
    const [source, expiry, required, name] = numbers[r];
    const value = scan.numbers[k * NUMBER_FIELDS + source];
    if (value === ABSENT) {
      if (required) throw new InvalidCommandError(`${pathOf(position)}.${name}`, "is required");
    } else if (expiry) writeExpiry(ring, index, value, position);
    else writeNumber(ring, index, value, position, name);
  }
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
  ring.amount[index] = value;
  ring.flags[index] |= Flag.amount;
}

function writeExpiry(ring: RingBuffer, index: number, value: unknown, position: number): void {
  if (typeof value !== "number") throw new InvalidCommandError(`${pathOf(position)}.expiresInMs`, "must be a number");
  ring.expiresInMs[index] = value;
  ring.flags[index] |= Flag.expiry;
}

/** The path of command `position` in error messages; built only when there is an error. */
export function pathOf(position: number): string {
  return `commands[${position}]`;
}
