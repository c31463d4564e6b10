/**
 * The EventTranslator: validates a plain command and writes it into a claimed ring slot in place. It is the only
 * writer of slots, so everything the processor reads has the right shape: identifiers are ASCII of the allowed
 * characters and fit their field, required fields are present, numbers are numbers. Values (amount ranges, ids in
 * the window, balances) are the ledger's business and come back as result codes.
 */
import { Type } from "./codes.ts";
import { InvalidCommandError } from "./errors.ts";
import { CURRENCY_BYTES_MAX, CURRENCY_BYTES_MIN, KEY_BYTES_MAX } from "./limits.ts";
import { Field, FIELD_COUNT, FIELD_OFFSET, Flag, type RingBuffer, SLOT_TEXT_BYTES } from "./ring-buffer.ts";
import type { Command } from "./types.ts";

const IDENTIFIER = charTable("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-");
const CURRENCY = charTable("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");

function charTable(allowed: string): Uint8Array {
  const table = new Uint8Array(128);
  for (let i = 0; i < allowed.length; i++) table[allowed.charCodeAt(i)] = 1;
  return table;
}

type Row = Record<string, unknown>;

/**
 * Write `command` into slot `index`. Throws InvalidCommandError naming `commands[position].field`; the slot is then
 * garbage and the caller gives the claim back.
 */
export function translateCommand(ring: RingBuffer, index: number, command: Command, position: number): void {
  if (typeof command !== "object" || command === null) throw new InvalidCommandError(pathOf(position), "must be an object");
  const row = command as unknown as Row;
  const type = typeof row.type === "string" && Object.hasOwn(Type, row.type) ? Type[row.type as keyof typeof Type] : 0;
  if (type === 0) throw new InvalidCommandError(`${pathOf(position)}.type`, `unknown command type ${JSON.stringify(row.type)}`);
  ring.type[index] = type;
  ring.flags[index] = 0;
  const lengths = index * FIELD_COUNT;
  for (let f = 0; f < FIELD_COUNT; f++) ring.fieldLength[lengths + f] = 0;
  ring.amount[index] = 0;
  ring.expiresInMs[index] = 0;
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

function writeIdentifier(ring: RingBuffer, index: number, field: number, value: unknown, position: number, name: string): void {
  if (typeof value !== "string") throw new InvalidCommandError(`${pathOf(position)}.${name}`, "must be a string");
  const length = value.length;
  if (length < 1 || length > KEY_BYTES_MAX) {
    throw new InvalidCommandError(`${pathOf(position)}.${name}`, `must be 1-${KEY_BYTES_MAX} characters, got ${length}`);
  }
  const text = ring.text;
  const start = index * SLOT_TEXT_BYTES + FIELD_OFFSET[field];
  for (let i = 0; i < length; i++) {
    const char = value.charCodeAt(i);
    if (char >= 128 || IDENTIFIER[char] === 0) {
      throw new InvalidCommandError(`${pathOf(position)}.${name}`, `character ${i} is not one of [A-Za-z0-9._:-]`);
    }
    text[start + i] = char;
  }
  padToWord(text, start + length);
  ring.fieldLength[index * FIELD_COUNT + field] = length;
  if (field === Field.id) ring.flags[index] |= Flag.id;
}

function writeCurrency(ring: RingBuffer, index: number, value: unknown, position: number): void {
  if (typeof value !== "string") throw new InvalidCommandError(`${pathOf(position)}.currency`, "must be a string");
  const length = value.length;
  if (length < CURRENCY_BYTES_MIN || length > CURRENCY_BYTES_MAX) {
    throw new InvalidCommandError(`${pathOf(position)}.currency`, `must be ${CURRENCY_BYTES_MIN}-${CURRENCY_BYTES_MAX} characters`);
  }
  const text = ring.text;
  const start = index * SLOT_TEXT_BYTES + FIELD_OFFSET[Field.currency];
  for (let i = 0; i < length; i++) {
    const char = value.charCodeAt(i);
    if (char >= 128 || CURRENCY[char] === 0) {
      throw new InvalidCommandError(`${pathOf(position)}.currency`, `character ${i} is not one of [A-Z0-9]`);
    }
    text[start + i] = char;
  }
  padToWord(text, start + length);
  ring.fieldLength[index * FIELD_COUNT + Field.currency] = length;
  ring.flags[index] |= Flag.currency;
}

/** Zero the rest of the last word, so keys hash and compare a whole word at a time. */
function padToWord(text: Uint8Array, end: number): void {
  for (let i = end; (i & 3) !== 0; i++) text[i] = 0;
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
