/**
 * Snapshots: the full ledger state as bytes and back. The body is the `Snapshot` message of the .proto contract,
 * with columns as packed little-endian typed-array bytes (a few memory copies for 1M accounts instead of 1M
 * messages). The frame around it:
 *
 *   offset 0  4 bytes  magic "HLSN"
 *   offset 4  u32 LE   format version (SNAPSHOT_VERSION)
 *   offset 8  u32 LE   body length in bytes
 *   offset 12 u32 LE   CRC32C of the body
 *   offset 16 body     protobuf `hotledger.v1.Snapshot`
 *
 * Rows are canonical (accounts in creation order; open holds by placing sequence, then closed holds oldest closed
 * first; window oldest first; partners and currencies in first-seen order), so the same state always gives the same
 * bytes and restore rebuilds the hash indexes from scratch.
 */
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { assert } from "./assert.ts";
import { crc32c } from "./crc32c.ts";
import { SnapshotError } from "./errors.ts";
import { hashWords } from "./hash.ts";
import { KeyStore, KeyTable } from "./key-table.ts";
import { HoldState, Ledger, ledgerSizes } from "./ledger.ts";
import { KEY_BYTES_MAX } from "./limits.ts";
import { type Snapshot, SnapshotSchema } from "./gen/hotledger/v1/ledger_pb.ts";
import { type Field, writeFramed } from "./snapshot-writer.ts";
import type { LedgerOptions } from "./types.ts";

/** Version of the snapshot frame and column layout. Bump on any change; readers refuse what they don't know. */
export const SNAPSHOT_VERSION = 1;
const MAGIC = 0x4e534c48; // "HLSN" read as little-endian u32
const HEADER_BYTES = 16;

assert(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1, "snapshot columns assume a little-endian platform");

/** Encode the ledger's full state. Deterministic: the same state gives the same bytes. */
export function encodeSnapshot(ledger: Ledger): Uint8Array {
  return finish(writeSnapshot(snapshotParts(ledger)));
}

/** Run a generator to its end without yielding to anyone (the synchronous encoders). */
function finish<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * The framed snapshot of `parts`, written piece by piece (a yield between pieces; see snapshot-writer.ts), into
 * memory from `allocate` (default: a new array).
 */
export function* writeSnapshot(parts: SnapshotParts, allocate?: (bytes: number) => Uint8Array): Generator<void, Uint8Array, void> {
  const { bytes, crc } = yield* writeFramed(snapshotFields(parts), HEADER_BYTES, allocate);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, SNAPSHOT_VERSION, true);
  view.setUint32(8, bytes.length - HEADER_BYTES, true);
  view.setUint32(12, crc, true);
  return bytes;
}

/** Rebuild a ledger from snapshot bytes. `options` may only enlarge the recorded table sizes. */
export function decodeSnapshot(bytes: Uint8Array, options: LedgerOptions = {}): Ledger {
  const message = parseFrame(bytes);
  checkRecordedSizes(message);
  refuseSmaller("accountsMax", options.accountsMax, message.accountsMax);
  refuseSmaller("partnersMax", options.partnersMax, message.partnersMax);
  refuseSmaller("holdsMax", options.holdsMax, message.holdsMax);
  refuseSmaller("idempotencyCommandsMax", options.idempotencyCommandsMax, message.idempotencyCommandsMax);
  const ledger = new Ledger({
    accountsMax: options.accountsMax ?? message.accountsMax,
    partnersMax: options.partnersMax ?? message.partnersMax,
    holdsMax: options.holdsMax ?? message.holdsMax,
    idempotencyCommandsMax: options.idempotencyCommandsMax ?? message.idempotencyCommandsMax,
    idempotencyRetentionMs: options.idempotencyRetentionMs ?? safeNumber(message.idempotencyRetentionMs, "idempotency_retention_ms"),
  });
  restore(ledger, message);
  return ledger;
}

/**
 * A hex 64-bit hash of the canonical state (two independent 32-bit hashes of the snapshot body): accounts, holds,
 * the idempotency window, partners, currencies, stamped time and table sizes. Not the sequence counter, which is
 * the log position rather than state: a duplicate or a check advances it and changes nothing else.
 */
export function stateHash(ledger: Ledger): string {
  const framed = finish(writeSnapshot({ ...snapshotParts(ledger), lastSequence: 0 }));
  const body = framed.subarray(HEADER_BYTES);
  const words = new Uint32Array((body.length + 3) >>> 2);
  new Uint8Array(words.buffer).set(body);
  const a = crc32c(body);
  const b = hashWords(words, 0, words.length, body.length) >>> 0;
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

/**
 * The table sizes the snapshot records, checked against core/limits.ts before any table is allocated, by
 * `ledgerSizes` (the one definition of those bounds, and it allocates nothing). A valid checksum only proves the
 * body is what some writer wrote: a damaged or foreign writer can still record a size out of range, which the
 * Ledger constructor refuses with a RangeError (a configuration error) instead of the SnapshotError that tells
 * recovery the snapshot is bad. Checked even when `options` enlarges the tables: no engine writes such a size.
 */
function checkRecordedSizes(message: Snapshot): void {
  const recorded = {
    accountsMax: message.accountsMax,
    partnersMax: message.partnersMax,
    holdsMax: message.holdsMax,
    idempotencyCommandsMax: message.idempotencyCommandsMax,
    idempotencyRetentionMs: safeNumber(message.idempotencyRetentionMs, "idempotency_retention_ms"),
  };
  try {
    ledgerSizes(recorded);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new SnapshotError(`snapshot records a table size out of range: ${error.message}`, { cause: error });
  }
}

/** Tables only grow across a restore: shrinking could drop rows or change what the window and holds remember. */
function refuseSmaller(name: string, requested: number | undefined, recorded: number): void {
  if (requested !== undefined && requested < recorded) {
    throw new SnapshotError(`cannot restore into ${name} ${requested}: the snapshot was taken with ${recorded}`);
  }
}

function parseFrame(bytes: Uint8Array): Snapshot {
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER_BYTES) {
    throw new SnapshotError(`snapshot too short: ${bytes?.length ?? 0} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new SnapshotError("not a hotledger snapshot (bad magic)");
  const version = view.getUint32(4, true);
  if (version !== SNAPSHOT_VERSION) throw new SnapshotError(`snapshot version ${version} is not supported (want ${SNAPSHOT_VERSION})`);
  const length = view.getUint32(8, true);
  if (length !== bytes.length - HEADER_BYTES) {
    throw new SnapshotError(`snapshot body is ${bytes.length - HEADER_BYTES} bytes, header says ${length}`);
  }
  const body = bytes.subarray(HEADER_BYTES);
  const expected = view.getUint32(12, true);
  const actual = crc32c(body);
  if (actual !== expected) throw new SnapshotError(`snapshot checksum mismatch: CRC32C ${actual} != ${expected}`);
  try {
    return fromBinary(SnapshotSchema, body);
  } catch (cause) {
    throw new SnapshotError("snapshot body is not a valid Snapshot message", { cause });
  }
}

/** A snapshot's contents as plain values: the scalar fields, the string lists and the column sets. */
export interface SnapshotParts {
  lastSequence: number;
  timeMs: number;
  partners: string[];
  currencies: string[];
  accounts: Columns;
  holds: Columns;
  window: Columns;
  accountsMax: number;
  holdsMax: number;
  idempotencyCommandsMax: number;
  idempotencyRetentionMs: number;
  partnersMax: number;
}

/** A column set: row count(s) and one little-endian byte column per field, named as in the .proto (camelCase). */
export type Columns = Record<string, number | Uint8Array>;

/** Field numbers of the column messages, in order (from ledger.proto). */
const ACCOUNT_FIELDS = ["count", "partnerIndex", "keyLength", "keyBytes", "currencyIndex", "status", "balance", "held", "overdraftLimit", "seq"];
const HOLD_FIELDS = ["count", "closedCount", "partnerIndex", "keyLength", "keyBytes", "accountIndex", "amount", "expiresAtMs", "seq", "state"];
const WINDOW_FIELDS = ["count", "partnerIndex", "keyLength", "keyBytes", "fingerprint", "timeMs", "code", "seq", "balance", "held", "available"];

function columnFields(columns: Columns, names: string[]): Field[] {
  return names.map((name, i): Field => {
    const value = columns[name];
    return typeof value === "number" ? [i + 1, "varint", value] : [i + 1, "bytes", value];
  });
}

/** The Snapshot message's fields in number order. */
export function snapshotFields(parts: SnapshotParts): Field[] {
  return [
    [1, "varint", SNAPSHOT_VERSION],
    [2, "varint", parts.lastSequence],
    [3, "varint", parts.timeMs],
    [4, "strings", parts.partners],
    [5, "strings", parts.currencies],
    [6, "message", columnFields(parts.accounts, ACCOUNT_FIELDS)],
    [7, "message", columnFields(parts.holds, HOLD_FIELDS)],
    [8, "message", columnFields(parts.window, WINDOW_FIELDS)],
    [9, "varint", parts.accountsMax],
    [10, "varint", parts.holdsMax],
    [11, "varint", parts.idempotencyCommandsMax],
    [12, "varint", parts.idempotencyRetentionMs],
    [13, "varint", parts.partnersMax],
  ];
}

/** The same contents as a protobuf-es message (tests compare the hand-written encoding with toBinary of this). */
export function snapshotMessage(parts: SnapshotParts): Snapshot {
  return create(SnapshotSchema, {
    ...parts,
    version: SNAPSHOT_VERSION,
    lastSequence: BigInt(parts.lastSequence),
    timeMs: BigInt(parts.timeMs),
    idempotencyRetentionMs: BigInt(parts.idempotencyRetentionMs),
  } as MessageInitShape<typeof SnapshotSchema>);
}

/** Everything of a snapshot but the account and window columns (a SnapshotJob takes these at its start). */
export function snapshotHeader(ledger: Ledger): Omit<SnapshotParts, "accounts" | "window"> {
  return {
    lastSequence: ledger.lastSequence,
    timeMs: ledger.timeMs,
    partners: tableStrings(ledger.partners, ledger.partners.count),
    currencies: tableStrings(ledger.currencies, ledger.currencyCount),
    holds: holdColumns(ledger),
    accountsMax: ledger.sizes.accountsMax,
    holdsMax: ledger.sizes.holdsMax,
    idempotencyCommandsMax: ledger.sizes.idempotencyCommandsMax,
    idempotencyRetentionMs: ledger.sizes.idempotencyRetentionMs,
    partnersMax: ledger.sizes.partnersMax,
  };
}

/** The ledger's whole state as snapshot parts. */
export function snapshotParts(ledger: Ledger): SnapshotParts {
  return { ...snapshotHeader(ledger), accounts: accountColumns(ledger), window: windowColumns(ledger) };
}

function tableStrings(table: KeyStore, count: number): string[] {
  const strings = new Array<string>(count);
  for (let i = 0; i < count; i++) strings[i] = table.keyString(i);
  return strings;
}

/** Bytes of typed array rows picked by `rows` (or the first `count` rows when `rows` is undefined). */
function column<T extends Float64Array | Uint32Array | Uint16Array | Uint8Array>(
  source: T,
  count: number,
  rows?: Int32Array,
): Uint8Array {
  const Type = source.constructor as new (length: number) => T;
  const out = new Type(count);
  if (rows === undefined) out.set(source.subarray(0, count));
  else for (let i = 0; i < count; i++) out[i] = source[rows[i]];
  return new Uint8Array(out.buffer, 0, out.byteLength);
}

/** Concatenated key bytes of `rows` (or the first `count` entries). */
function keyBytes(table: KeyStore, count: number, rows?: Int32Array): Uint8Array {
  let total = 0;
  for (let i = 0; i < count; i++) total += table.keyLength[rows === undefined ? i : rows[i]];
  const out = new Uint8Array(total);
  const source = table.keyBytes;
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const entry = rows === undefined ? i : rows[i];
    const length = table.keyLength[entry];
    const base = entry * KEY_BYTES_MAX;
    for (let b = 0; b < length; b++) out[offset + b] = source[base + b];
    offset += length;
  }
  return out;
}

function accountColumns(ledger: Ledger): Columns {
  const count = ledger.accountCount;
  return {
    count,
    partnerIndex: column(ledger.accounts.owner, count),
    keyLength: column(ledger.accounts.keyLength, count),
    keyBytes: keyBytes(ledger.accounts, count),
    currencyIndex: column(ledger.currency, count),
    status: column(ledger.status, count),
    balance: column(ledger.balance, count),
    held: column(ledger.held, count),
    overdraftLimit: column(ledger.overdraftLimit, count),
    seq: column(ledger.accountSeq, count),
  };
}

/** Hold rows: open holds by placing sequence, then closed holds oldest closed first. */
function holdRows(ledger: Ledger): { rows: Int32Array; closedCount: number } {
  const open: number[] = [];
  for (let hold = 0; hold < ledger.sizes.holdsMax; hold++) {
    if (ledger.holdState[hold] === HoldState.open) open.push(hold);
  }
  open.sort((a, b) => ledger.holdSeq[a] - ledger.holdSeq[b]);
  const rows = new Int32Array(open.length + ledger.holdClosedCount);
  rows.set(open);
  for (let i = 0; i < ledger.holdClosedCount; i++) {
    rows[open.length + i] = ledger.holdClosed[(ledger.holdClosedHead + i) % ledger.sizes.holdsMax];
  }
  return { rows, closedCount: ledger.holdClosedCount };
}

function holdColumns(ledger: Ledger): Columns {
  const { rows, closedCount } = holdRows(ledger);
  const count = rows.length;
  return {
    count,
    closedCount,
    partnerIndex: column(ledger.holds.owner, count, rows),
    keyLength: column(ledger.holds.keyLength, count, rows),
    keyBytes: keyBytes(ledger.holds, count, rows),
    accountIndex: column(new Uint32Array(ledger.holdAccount.buffer), count, rows),
    amount: column(ledger.holdAmount, count, rows),
    expiresAtMs: column(ledger.holdExpiresAt, count, rows),
    seq: column(ledger.holdSeq, count, rows),
    state: column(ledger.holdState, count, rows),
  };
}

function windowColumns(ledger: Ledger): Columns {
  const count = ledger.windowCount;
  const head = ledger.windowHead;
  const capacity = ledger.sizes.idempotencyCommandsMax;
  const rows = new Int32Array(count);
  for (let i = 0; i < count; i++) rows[i] = head + i < capacity ? head + i : head + i - capacity;
  // The window is a FIFO ring: its rows are at most two contiguous ranges, copied as memory blocks.
  const ring = <T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(source: T, width = 1): Uint8Array => {
    const Type = source.constructor as new (length: number) => T;
    const out = new Type(count * width);
    const first = Math.min(count, capacity - head);
    out.set(source.subarray(head * width, (head + first) * width));
    if (first < count) out.set(source.subarray(0, (count - first) * width), first * width);
    return new Uint8Array(out.buffer, 0, out.byteLength);
  };
  return {
    count,
    partnerIndex: ring(ledger.window.owner),
    keyLength: ring(ledger.window.keyLength),
    keyBytes: keyBytes(ledger.window, count, rows),
    fingerprint: ring(ledger.windowFingerprint, 2),
    timeMs: ring(ledger.windowTime),
    code: ring(ledger.windowCode),
    seq: ring(ledger.windowSeq),
    balance: ring(ledger.windowBalance),
    held: ring(ledger.windowHeld),
    available: ring(ledger.windowAvailable),
  };
}

// Restore.

/** A typed view of a column, checked for length. Copies so the view is aligned. */
function read<T>(bytes: Uint8Array, count: number, Type: { new (b: ArrayBuffer): T; BYTES_PER_ELEMENT: number }, name: string): T {
  if (bytes.length !== count * Type.BYTES_PER_ELEMENT) {
    throw new SnapshotError(`snapshot column ${name} has ${bytes.length} bytes, want ${count * Type.BYTES_PER_ELEMENT}`);
  }
  return new Type(bytes.slice().buffer);
}

/**
 * Copy a column of `count` elements straight into `target`'s first elements (byte for byte, little-endian as
 * written): no aligned temporary copy as `read` makes, which at 1M accounts was ~80 MB of extra allocation.
 */
function readInto(bytes: Uint8Array, count: number, target: Float64Array | Uint8Array, name: string): void {
  if (bytes.length !== count * target.BYTES_PER_ELEMENT) {
    throw new SnapshotError(`snapshot column ${name} has ${bytes.length} bytes, want ${count * target.BYTES_PER_ELEMENT}`);
  }
  new Uint8Array(target.buffer, target.byteOffset, bytes.length).set(bytes);
}

/** Inserts keys from a concatenated key column, returning a function that yields the next key into the table. */
class KeyReader {
  private offset = 0;
  private readonly words = new Uint32Array(KEY_BYTES_MAX / 4);
  private readonly bytes = new Uint8Array(this.words.buffer);

  constructor(
    private readonly keys: Uint8Array,
    private readonly lengths: Uint8Array,
    private readonly name: string,
  ) {}

  insertInto(table: KeyStore, row: number, entry: number, owner: number): void {
    const length = this.lengths[row];
    const keys = this.keys;
    const offset = this.offset;
    if (length < 1 || length > KEY_BYTES_MAX || offset + length > keys.length) {
      throw new SnapshotError(`snapshot ${this.name} key ${row} has a bad length`);
    }
    const wordCount = (length + 3) >>> 2;
    this.words[wordCount - 1] = 0;
    for (let b = 0; b < length; b++) this.bytes[b] = keys[offset + b];
    this.offset = offset + length;
    const hash = KeyStore.hash(owner, this.words, 0, length);
    if (!table.insertIfAbsent(entry, owner, this.words, 0, length, hash)) {
      throw new SnapshotError(`snapshot ${this.name} key ${row} is repeated`);
    }
  }

  finish(): void {
    if (this.offset !== this.keys.length) throw new SnapshotError(`snapshot ${this.name} keys have trailing bytes`);
  }
}

function restore(ledger: Ledger, message: Snapshot): void {
  if (message.version !== SNAPSHOT_VERSION) throw new SnapshotError(`snapshot message version ${message.version} unknown`);
  ledger.lastSequence = safeNumber(message.lastSequence, "last_sequence");
  ledger.timeMs = safeNumber(message.timeMs, "time_ms");
  restoreStrings(ledger.partners, message.partners, ledger.sizes.partnersMax, "partners");
  restoreStrings(ledger.currencies, message.currencies, ledger.currencies.capacity, "currencies");
  ledger.currencyCount = message.currencies.length;
  restoreAccounts(ledger, message);
  restoreHolds(ledger, message);
  restoreWindow(ledger, message);
}

/** An int64 field as a number, refused when outside the safe range. */
function safeNumber(value: bigint, name: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new SnapshotError(`snapshot ${name} out of range: ${value}`);
  return Number(value);
}

function restoreStrings(table: KeyTable, strings: string[], capacity: number, name: string): void {
  if (strings.length > capacity) throw new SnapshotError(`snapshot has ${strings.length} ${name}, room for ${capacity}`);
  const encoder = new TextEncoder();
  const keys = strings.map((text) => encoder.encode(text));
  const joined = new Uint8Array(keys.reduce((sum, key) => sum + key.length, 0));
  const lengths = new Uint8Array(keys.length);
  let offset = 0;
  keys.forEach((key, i) => {
    joined.set(key, offset);
    offset += key.length;
    lengths[i] = key.length;
  });
  const reader = new KeyReader(joined, lengths, name);
  for (let i = 0; i < keys.length; i++) reader.insertInto(table, i, i, 0);
}

function restoreAccounts(ledger: Ledger, message: Snapshot): void {
  const c = message.accounts;
  const count = c?.count ?? 0;
  if (c === undefined || count > ledger.sizes.accountsMax) throw new SnapshotError(`snapshot has ${count} accounts, room for ${ledger.sizes.accountsMax}`);
  const partner = read(c.partnerIndex, count, Uint32Array, "accounts.partner_index");
  const currency = read(c.currencyIndex, count, Uint16Array, "accounts.currency_index");
  const reader = new KeyReader(c.keyBytes, read(c.keyLength, count, Uint8Array, "accounts.key_length"), "account");
  for (let i = 0; i < count; i++) {
    if (partner[i] >= ledger.partners.count) throw new SnapshotError(`snapshot account ${i} names an unknown partner`);
    if (currency[i] >= ledger.currencyCount) throw new SnapshotError(`snapshot account ${i} names an unknown currency`);
    reader.insertInto(ledger.accounts, i, i, partner[i]);
  }
  reader.finish();
  ledger.accountCount = count;
  ledger.currency.set(currency);
  readInto(c.status, count, ledger.status, "accounts.status");
  readInto(c.balance, count, ledger.balance, "accounts.balance");
  readInto(c.held, count, ledger.held, "accounts.held");
  readInto(c.overdraftLimit, count, ledger.overdraftLimit, "accounts.overdraft_limit");
  readInto(c.seq, count, ledger.accountSeq, "accounts.seq");
}

function restoreHolds(ledger: Ledger, message: Snapshot): void {
  const c = message.holds;
  const count = c?.count ?? 0;
  if (c === undefined || count > ledger.sizes.holdsMax) throw new SnapshotError(`snapshot has ${count} holds, room for ${ledger.sizes.holdsMax}`);
  if (c.closedCount > count) throw new SnapshotError(`snapshot has ${c.closedCount} closed holds of ${count} holds`);
  const partner = read(c.partnerIndex, count, Uint32Array, "holds.partner_index");
  const account = read(c.accountIndex, count, Uint32Array, "holds.account_index");
  const amount = read(c.amount, count, Float64Array, "holds.amount");
  const expiresAt = read(c.expiresAtMs, count, Float64Array, "holds.expires_at_ms");
  const seq = read(c.seq, count, Float64Array, "holds.seq");
  const state = read(c.state, count, Uint8Array, "holds.state");
  const reader = new KeyReader(c.keyBytes, read(c.keyLength, count, Uint8Array, "holds.key_length"), "hold");
  const openCount = count - c.closedCount;
  for (let row = 0; row < count; row++) {
    const hold = row;
    if (partner[row] >= ledger.partners.count || account[row] >= ledger.accountCount) {
      throw new SnapshotError(`snapshot hold ${row} names an unknown partner or account`);
    }
    if ((row < openCount) !== (state[row] === HoldState.open) || state[row] > HoldState.expired) {
      throw new SnapshotError(`snapshot hold ${row} has state ${state[row]} in the wrong section`);
    }
    reader.insertInto(ledger.holds, row, hold, partner[row]);
    ledger.holdAccount[hold] = account[row];
    ledger.holdAmount[hold] = amount[row];
    ledger.holdExpiresAt[hold] = expiresAt[row];
    ledger.holdSeq[hold] = seq[row];
    ledger.holdState[hold] = state[row];
    if (row < openCount && expiresAt[row] > 0) ledger.heapPush(hold);
    if (row >= openCount) ledger.holdClosed[row - openCount] = hold;
  }
  reader.finish();
  ledger.holdClosedHead = 0;
  ledger.holdClosedCount = c.closedCount;
  // Free slots: the rest, handed out lowest first as in a fresh ledger.
  ledger.holdFreeCount = 0;
  for (let hold = ledger.sizes.holdsMax - 1; hold >= count; hold--) ledger.holdFree[ledger.holdFreeCount++] = hold;
}

function restoreWindow(ledger: Ledger, message: Snapshot): void {
  const c = message.window;
  const count = c?.count ?? 0;
  if (c === undefined || count > ledger.sizes.idempotencyCommandsMax) {
    throw new SnapshotError(`snapshot has ${count} window entries, room for ${ledger.sizes.idempotencyCommandsMax}`);
  }
  const partner = read(c.partnerIndex, count, Uint32Array, "window.partner_index");
  const fingerprint = read(c.fingerprint, count * 2, Uint32Array, "window.fingerprint");
  const reader = new KeyReader(c.keyBytes, read(c.keyLength, count, Uint8Array, "window.key_length"), "window");
  for (let row = 0; row < count; row++) {
    if (partner[row] >= ledger.partners.count) throw new SnapshotError(`snapshot window entry ${row} names an unknown partner`);
    reader.insertInto(ledger.window, row, row, partner[row]);
  }
  reader.finish();
  ledger.windowFingerprint.set(fingerprint);
  readInto(c.timeMs, count, ledger.windowTime, "window.time_ms");
  readInto(c.code, count, ledger.windowCode, "window.code");
  readInto(c.seq, count, ledger.windowSeq, "window.seq");
  readInto(c.balance, count, ledger.windowBalance, "window.balance");
  readInto(c.held, count, ledger.windowHeld, "window.held");
  readInto(c.available, count, ledger.windowAvailable, "window.available");
}
