/**
 * The `POST /v1/commands` fast path's reader: a body scanned in place into a core `ScannedBatch` (byte ranges of
 * its strings, its numbers), no JSON.parse, no objects. It takes only a strict subset of JSON, the body every
 * client library writes for a plain batch:
 *
 *   {"commands": [{"type": "credit", "id": "...", "partnerId": "...", "accountId": "...", "amount": 100}, ...]}
 *
 * with optional `"atomic": false` and `"mode": "sync"`, whitespace anywhere JSON allows it, keys in any order. Each
 * command is of a non-admin type and has only the fields its shape (validate.ts `COMMAND_SHAPES`) allows, all it
 * requires, each once; strings are non-empty printable ASCII without escapes; numbers are plain decimal integers
 * below 10^15 (an amount at least 1). Anything else (escapes, non-ASCII, floats, exponents, nulls, repeated keys,
 * atomic or async requests, unknown fields, wrong types) gives undefined, and the caller reads the body the slow way,
 * which answers it as it always has: the subset only decides who parses, never what the answer is.
 * json-scan.test.ts holds the fast and slow paths to the same responses on generated bodies.
 */
import { COMMAND_TYPES, type CommandType } from "../../core/index.ts";
import { ABSENT, NUMBER_FIELDS, ScannedNumber, ScannedText, TEXT_FIELDS, type ScannedBatch } from "../../core/command-batch-reader.ts";
import { GROUP_COMMANDS_MAX } from "../../core/limits.ts";
import { ADMIN_COMMAND_TYPES, COMMAND_SHAPES } from "./validate.ts";

const encoder = new TextEncoder();

/** A command's JSON keys; a key's bit in the "present" mask is 1 << its index. */
const COMMAND_KEYS = ["type", "id", "partnerId", "accountId", "fromAccountId", "toAccountId", "holdId", "currency", "amount", "overdraftLimit", "expiresInMs"];
const KEY_BYTES = COMMAND_KEYS.map((key) => encoder.encode(key));
const TYPE_KEY = 0;
const AMOUNT_KEY = COMMAND_KEYS.indexOf("amount");
/** Where each key's value goes: a ScannedText field for the strings, a ScannedNumber field for the numbers. */
const TEXT_OF_KEY = [-1, ScannedText.id, ScannedText.partnerId, ScannedText.accountId, ScannedText.accountId, ScannedText.toAccountId, ScannedText.holdId, ScannedText.currency, -1, -1, -1];
const NUMBER_OF_KEY = [-1, -1, -1, -1, -1, -1, -1, -1, ScannedNumber.amount, ScannedNumber.overdraftLimit, ScannedNumber.expiresInMs];

/** The command types the fast path takes (index = Type number; undefined: left to the slow path). */
const FAST_TYPES: readonly (CommandType | undefined)[] = COMMAND_TYPES.map((name) =>
  name === "unspecified" || ADMIN_COMMAND_TYPES.has(name) ? undefined : name,
);
const TYPE_BYTES = FAST_TYPES.map((name) => (name === undefined ? undefined : encoder.encode(name)));
const bitsOf = (names: readonly string[]): number => names.reduce((bits, name) => bits | (1 << COMMAND_KEYS.indexOf(name)), 1 << TYPE_KEY);
/** By Type number: the keys a command may have, and those it must. */
const ALLOWED = FAST_TYPES.map((name) => (name === undefined ? 0 : bitsOf([...Object.keys(COMMAND_SHAPES[name].required), ...Object.keys(COMMAND_SHAPES[name].optional)])));
const REQUIRED = FAST_TYPES.map((name) => (name === undefined ? 0 : bitsOf(Object.keys(COMMAND_SHAPES[name].required))));
for (const name of COMMAND_KEYS.slice(1)) {
  if (!ALLOWED.some((bits) => (bits & (1 << COMMAND_KEYS.indexOf(name))) !== 0)) throw new Error(`json-scan: no command has the key ${name}`);
}
for (const shape of Object.values(COMMAND_SHAPES)) {
  for (const name of [...Object.keys(shape.required), ...Object.keys(shape.optional)]) {
    if (!COMMAND_KEYS.includes(name)) throw new Error(`json-scan: the key ${name} of a command shape is not scanned`);
  }
}

/** The body's top-level keys. */
const BODY_KEYS = ["commands", "atomic", "mode"].map((key) => encoder.encode(key));
const COMMANDS = 0;
const ATOMIC = 1;
const MODE = 2;
const FALSE = encoder.encode("false");
const SYNC = encoder.encode("sync");

/** Decimal digits of the largest number taken: below 10^15, so always a safe integer. */
const DIGITS_MAX = 15;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** The scan's columns, grown by doubling while commands keep coming. */
interface Columns {
  types: Int32Array;
  ranges: Int32Array;
  numbers: Float64Array;
}

function grow(columns: Columns, capacity: number): void {
  const types = new Int32Array(capacity);
  types.set(columns.types);
  const ranges = new Int32Array(capacity * TEXT_FIELDS * 2);
  ranges.set(columns.ranges);
  const numbers = new Float64Array(capacity * NUMBER_FIELDS);
  numbers.set(columns.numbers);
  columns.types = types;
  columns.ranges = ranges;
  columns.numbers = numbers;
}

/** A cursor over the body. Every method returns false (or -1) the moment the bytes leave the subset. */
class Scanner {
  i = 0;
  /** The last string's bounds (without its quotes). */
  start = 0;
  end = 0;
  /** The last number. */
  value = 0;

  constructor(readonly bytes: Uint8Array) {}

  ws(): void {
    const bytes = this.bytes;
    let i = this.i;
    for (; i < bytes.length; i++) {
      const b = bytes[i];
      if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) break;
    }
    this.i = i;
  }

  /** Whitespace, then `byte`. */
  eat(byte: number): boolean {
    this.ws();
    if (this.bytes[this.i] !== byte) return false;
    this.i++;
    return true;
  }

  /** A string of printable ASCII without escapes: its bounds in `start`, `end`. */
  string(): boolean {
    if (!this.eat(QUOTE)) return false;
    const bytes = this.bytes;
    const start = this.i;
    let i = start;
    for (; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === QUOTE) break;
      if (b < 0x20 || b >= 0x7f || b === 0x5c) return false;
    }
    if (i === bytes.length) return false;
    this.start = start;
    this.end = i;
    this.i = i + 1;
    return true;
  }

  /** A key and its colon: the index of the key among `names`, or -1 (unknown, or not in the subset). */
  key(names: readonly Uint8Array[]): number {
    if (!this.string() || !this.eat(COLON)) return -1;
    return match(this.bytes, this.start, this.end, names);
  }

  /** A decimal integer below 10^15 with no sign, fraction or exponent, into `value`. */
  number(): boolean {
    this.ws();
    const bytes = this.bytes;
    const start = this.i;
    let value = 0;
    let i = start;
    for (; i < bytes.length && i - start <= DIGITS_MAX; i++) {
      const digit = bytes[i] - 0x30;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
    }
    const length = i - start;
    if (length === 0 || length > DIGITS_MAX || (length > 1 && bytes[start] === 0x30)) return false;
    const next = bytes[i];
    if (next === 0x2e || next === 0x65 || next === 0x45) return false; // ".", "e", "E"
    this.value = value;
    this.i = i;
    return true;
  }

  /** Exactly `word` (a literal such as `false`). */
  literal(word: Uint8Array): boolean {
    this.ws();
    for (let k = 0; k < word.length; k++) if (this.bytes[this.i + k] !== word[k]) return false;
    this.i += word.length;
    return true;
  }

  /** `,` (true, more to come) or `close` (false, done); -1 for anything else. */
  next(close: number): number {
    this.ws();
    const b = this.bytes[this.i++];
    if (b === COMMA) return 1;
    if (b === close) return 0;
    return -1;
  }
}

/** The index of bytes `[start, end)` among `names`, or -1. */
function match(bytes: Uint8Array, start: number, end: number, names: readonly (Uint8Array | undefined)[]): number {
  const length = end - start;
  for (let n = 0; n < names.length; n++) {
    const name = names[n];
    if (name === undefined || name.length !== length) continue;
    let k = 0;
    while (k < length && bytes[start + k] === name[k]) k++;
    if (k === length) return n;
  }
  return -1;
}

/** Command `k`: an object of the subset, into the columns. */
function command(scanner: Scanner, columns: Columns, k: number): boolean {
  if (!scanner.eat(OPEN_BRACE)) return false;
  const textBase = k * TEXT_FIELDS * 2;
  const numberBase = k * NUMBER_FIELDS;
  const { ranges, numbers } = columns;
  for (let f = 0; f < TEXT_FIELDS * 2; f++) ranges[textBase + f] = 0;
  for (let f = 0; f < NUMBER_FIELDS; f++) numbers[numberBase + f] = ABSENT;
  let present = 0;
  let type = 0;
  for (;;) {
    const key = scanner.key(KEY_BYTES);
    if (key < 0 || (present & (1 << key)) !== 0) return false;
    present |= 1 << key;
    if (key === TYPE_KEY) {
      if (!scanner.string()) return false;
      type = match(scanner.bytes, scanner.start, scanner.end, TYPE_BYTES);
      if (type < 0) return false;
    } else if (TEXT_OF_KEY[key] >= 0) {
      if (!scanner.string() || scanner.end === scanner.start) return false;
      const at = textBase + TEXT_OF_KEY[key] * 2;
      ranges[at] = scanner.start;
      ranges[at + 1] = scanner.end;
    } else {
      if (!scanner.number() || (key === AMOUNT_KEY && scanner.value < 1)) return false;
      numbers[numberBase + NUMBER_OF_KEY[key]] = scanner.value;
    }
    const more = scanner.next(CLOSE_BRACE);
    if (more < 0) return false;
    if (more === 0) break;
  }
  if (type === 0 || (present & ~ALLOWED[type]) !== 0 || (present & REQUIRED[type]) !== REQUIRED[type]) return false;
  columns.types[k] = type;
  return true;
}

/** The `commands` array: its length, or -1. */
function commandList(scanner: Scanner, columns: Columns): number {
  if (!scanner.eat(OPEN_BRACKET)) return -1;
  let count = 0;
  for (;;) {
    if (count === GROUP_COMMANDS_MAX) return -1;
    if (count === columns.types.length) grow(columns, columns.types.length * 2);
    if (!command(scanner, columns, count)) return -1;
    count++;
    const more = scanner.next(CLOSE_BRACKET);
    if (more < 0) return -1;
    if (more === 0) return count;
  }
}

/** The body scanned in place when it is in the fast path's subset (see above), else undefined. */
export function scanJsonCommands(bytes: Uint8Array): ScannedBatch | undefined {
  const scanner = new Scanner(bytes);
  if (!scanner.eat(OPEN_BRACE)) return undefined;
  // A first guess at the count from the size (~100 bytes a command), doubled as needed.
  const guess = Math.min(GROUP_COMMANDS_MAX, Math.max(4, Math.ceil(bytes.length / 96)));
  const columns: Columns = { types: new Int32Array(guess), ranges: new Int32Array(guess * TEXT_FIELDS * 2), numbers: new Float64Array(guess * NUMBER_FIELDS) };
  let seen = 0;
  let count = -1;
  for (;;) {
    const key = scanner.key(BODY_KEYS);
    if (key < 0 || (seen & (1 << key)) !== 0) return undefined;
    seen |= 1 << key;
    if (key === COMMANDS) count = commandList(scanner, columns);
    else if (key === ATOMIC && !scanner.literal(FALSE)) return undefined;
    else if (key === MODE && !(scanner.string() && match(bytes, scanner.start, scanner.end, [SYNC]) === 0)) return undefined;
    if (key === COMMANDS && count < 0) return undefined;
    const more = scanner.next(CLOSE_BRACE);
    if (more < 0) return undefined;
    if (more === 0) break;
  }
  scanner.ws();
  if (count < 1 || scanner.i !== bytes.length) return undefined;
  return { bytes, count, atomic: false, types: columns.types, ranges: columns.ranges, numbers: columns.numbers };
}
