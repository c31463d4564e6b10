/**
 * The journal record codec: a batch of ring slots to bytes and back, for the journal's hot path. It is the
 * hand-written binary form of `hotledger.v1.JournalRecord` in core/proto/hotledger/v1/ledger.proto: building one
 * protobuf-es message per command and encoding them measured ~5 us per command here, copying slot bytes ~120 ns
 * (~40x). journal-codec.test.ts holds it to the protobuf form. Little-endian throughout. Layout, version
 * JOURNAL_RECORD_VERSION (also described in core/proto/README.md):
 *
 *   record  = u8 version | u8 0 | u16 0 | f64 firstSequence | f64 timeMs | u32 commandCount | command*
 *   command = u8 type | u8 flags | u16 groupSize | u8 length[5] (id, partner, account, target, currency)
 *             | f64 amount | f64 expiresInMs | ASCII text of the five fields, back to back
 *
 * groupSize is the slot's: the command count on a group's first command (1 for a single command), 0 on the
 * group's others. The file journal frames each record with its length and CRC32C; that framing is the adapter's.
 */
import { assert } from "./assert.ts";
import { COMMAND_TYPES, Type, type CommandType } from "./codes.ts";
import type { AsciiDecoder } from "./command-batch-reader.ts";
import { asciiString } from "./key-table.ts";
import { Field, FIELD_COUNT, FIELD_OFFSET, Flag, type RingBuffer, SLOT_TEXT_BYTES } from "./ring-buffer.ts";
import type { CaptureCommand, CheckCommand, Command, CreditCommand, DebitCommand, HoldCommand, OpenAccountCommand } from "./types.ts";
import { CURRENCY_BYTES_MAX, GROUP_COMMANDS_MAX, KEY_BYTES_MAX } from "./limits.ts";

/** Version byte of a journal record. Readers refuse versions they do not know. */
export const JOURNAL_RECORD_VERSION = 1;
/** Bytes before the first command. */
export const RECORD_HEADER_BYTES = 24;
/** Fixed bytes per command before its text. */
const COMMAND_FIXED_BYTES = 4 + FIELD_COUNT + 16;
/** Largest encoded command: fixed part plus the longest text. */
export const COMMAND_BYTES_MAX = COMMAND_FIXED_BYTES + 4 * KEY_BYTES_MAX + CURRENCY_BYTES_MAX;

/** A journal record's header, as read back. */
export interface RecordHeader {
  firstSequence: number;
  timeMs: number;
  commandCount: number;
}

/** Thrown when record bytes are not a record this version can read. */
export class JournalRecordError extends Error {
  override name = "JournalRecordError";
}

/** Upper bound of the encoded size of `count` slots (for sizing a reusable buffer). */
export function recordBytesMax(count: number): number {
  return RECORD_HEADER_BYTES + count * COMMAND_BYTES_MAX;
}

/**
 * Encode slots `first..last` of `ring` into `out` (which must hold recordBytesMax(last - first + 1) bytes), stamped
 * `timeMs`. Returns the record's length in bytes.
 */
export function encodeRecord(ring: RingBuffer, first: number, last: number, timeMs: number, out: Uint8Array): number {
  const count = last - first + 1;
  assert(count >= 1 && count <= ring.size, "record slot count out of range");
  assert(out.length >= recordBytesMax(count), "record buffer too small");
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, JOURNAL_RECORD_VERSION, true);
  view.setFloat64(4, first, true);
  view.setFloat64(12, timeMs, true);
  view.setUint32(20, count, true);
  let offset = RECORD_HEADER_BYTES;
  const text = ring.text;
  for (let sequence = first; sequence <= last; sequence++) {
    const index = sequence & ring.mask;
    out[offset] = ring.type[index];
    out[offset + 1] = ring.flags[index];
    view.setUint16(offset + 2, ring.groupSize[index], true);
    const lengths = index * FIELD_COUNT;
    for (let f = 0; f < FIELD_COUNT; f++) out[offset + 4 + f] = ring.fieldLength[lengths + f];
    view.setFloat64(offset + 4 + FIELD_COUNT, ring.amount[index], true);
    view.setFloat64(offset + 12 + FIELD_COUNT, ring.expiresInMs[index], true);
    offset += COMMAND_FIXED_BYTES;
    const base = index * SLOT_TEXT_BYTES;
    for (let f = 0; f < FIELD_COUNT; f++) {
      const length = ring.fieldLength[lengths + f];
      const start = base + FIELD_OFFSET[f];
      for (let i = 0; i < length; i++) out[offset + i] = text[start + i];
      offset += length;
    }
  }
  return offset;
}

/** Read a record's header, checking its version and size. */
export function readRecordHeader(record: Uint8Array): RecordHeader {
  if (record.length < RECORD_HEADER_BYTES) throw new JournalRecordError(`record too short: ${record.length} bytes`);
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const version = view.getUint32(0, true);
  if (version !== JOURNAL_RECORD_VERSION) throw new JournalRecordError(`record version ${version} is not supported`);
  const firstSequence = view.getFloat64(4, true);
  const timeMs = view.getFloat64(12, true);
  const commandCount = view.getUint32(20, true);
  if (!Number.isSafeInteger(firstSequence) || firstSequence < 1 || !Number.isSafeInteger(timeMs) || commandCount < 1) {
    throw new JournalRecordError("record header out of range");
  }
  return { firstSequence, timeMs, commandCount };
}

/**
 * Write a record's commands, after the first `skip`, into ring slots starting at sequence `first` (the slots must
 * be claimed), stamped with the record's time. Checks every field's shape, so a record that passed its CRC but is
 * malformed still cannot put garbage into the ledger.
 */
export function decodeRecordInto(record: Uint8Array, header: RecordHeader, ring: RingBuffer, first: number, skip = 0): void {
  const decoder = new RecordDecoder();
  decoder.start(record, header, skip);
  decoder.decode(ring, first, header.commandCount);
}

/** Whether `record`'s bytes at [a, a + aLength) and [b, b + bLength) are the same. */
function sameBytes(record: Uint8Array, a: number, aLength: number, b: number, bLength: number): boolean {
  if (aLength !== bLength) return false;
  for (let i = 0; i < aLength; i++) if (record[a + i] !== record[b + i]) return false;
  return true;
}

/**
 * Decodes one journal record into ring slots a piece at a time, so a replay can drain each piece while its slots are
 * still in cache (a record holds thousands of commands; all of them decoded at once fill megabytes of ring before
 * the processor reads the first). `start` checks the whole record first: a malformed one is refused before any of
 * it is written, as decodeRecordInto refuses it. Reusable from record to record.
 */
export class RecordDecoder {
  private record: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(this.record.buffer);
  private header: RecordHeader = { firstSequence: 0, timeMs: 0, commandCount: 0 };
  /** The next command to decode, and its byte offset. */
  private command = 0;
  private offset = 0;
  private skip = 0;

  /**
   * Check `record` (every command's type, group, id, partner and field lengths, and its length; as the engine writes
   * them: groups of at most GROUP_COMMANDS_MAX commands of one partner, an id on every command but a check (where it
   * is optional), a partner on every command) and decode from its start.
   */
  start(record: Uint8Array, header: RecordHeader, skip = 0): void {
    assert(skip >= 0 && skip < header.commandCount, "skip out of range");
    const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
    let offset = RECORD_HEADER_BYTES;
    let groupRemaining = 0;
    /** Where the partner of the group being read starts, and its length. */
    let groupPartnerAt = 0;
    let groupPartnerLength = 0;
    for (let k = 0; k < header.commandCount; k++) {
      if (offset + COMMAND_FIXED_BYTES > record.length) throw new JournalRecordError(`record ends inside command ${k}`);
      const type = record[offset];
      if (type < 1 || type >= COMMAND_TYPES.length) throw new JournalRecordError(`command ${k} has unknown type ${type}`);
      const groupSize = view.getUint16(offset + 2, true);
      if ((groupRemaining === 0) === (groupSize === 0) || groupSize > header.commandCount - k) {
        throw new JournalRecordError(`command ${k} breaks its atomic group (group size ${groupSize})`);
      }
      if (groupSize > GROUP_COMMANDS_MAX) throw new JournalRecordError(`command ${k} starts a group of ${groupSize} commands, over ${GROUP_COMMANDS_MAX}`);
      groupRemaining = groupSize === 0 ? groupRemaining - 1 : groupSize - 1;
      const lengthsAt = offset + 4;
      if (record[lengthsAt + Field.id] === 0 && type !== Type.check) throw new JournalRecordError(`command ${k} has no id`);
      if (record[lengthsAt + Field.partner] === 0) throw new JournalRecordError(`command ${k} has no partner`);
      offset += COMMAND_FIXED_BYTES;
      for (let f = 0; f < FIELD_COUNT; f++) {
        const length = record[lengthsAt + f];
        const max = f === FIELD_COUNT - 1 ? CURRENCY_BYTES_MAX : KEY_BYTES_MAX;
        if (length > max || offset + length > record.length) throw new JournalRecordError(`command ${k} field ${f} has a bad length`);
        if (f === Field.partner) {
          if (groupSize !== 0) {
            groupPartnerAt = offset;
            groupPartnerLength = length;
          } else if (!sameBytes(record, offset, length, groupPartnerAt, groupPartnerLength)) {
            throw new JournalRecordError(`command ${k} is of another partner than its atomic group`);
          }
        }
        offset += length;
      }
    }
    if (groupRemaining !== 0) throw new JournalRecordError("record ends inside an atomic group");
    if (offset !== record.length) throw new JournalRecordError(`record has ${record.length - offset} trailing bytes`);
    this.record = record;
    this.view = view;
    this.header = header;
    this.command = 0;
    this.offset = RECORD_HEADER_BYTES;
    this.skip = skip;
  }

  /**
   * Decode the next commands into slots from sequence `first` (claimed): at most `max` written slots, more only to
   * finish an atomic group (a group is published whole). Returns how many slots were written; skipped commands are
   * read past, not written.
   */
  decode(ring: RingBuffer, first: number, max: number): number {
    const record = this.record;
    const view = this.view;
    const text = ring.text;
    const commandCount = this.header.commandCount;
    let offset = this.offset;
    let written = 0;
    let k = this.command;
    for (; k < commandCount; k++) {
      const groupSize = view.getUint16(offset + 2, true);
      if (written >= max && groupSize !== 0) break;
      if (k < this.skip) {
        offset = this.pastCommand(offset);
        continue;
      }
      const index = (first + written++) & ring.mask;
      ring.type[index] = record[offset];
      ring.flags[index] = record[offset + 1];
      ring.groupSize[index] = groupSize;
      ring.amount[index] = view.getFloat64(offset + 4 + FIELD_COUNT, true);
      ring.expiresInMs[index] = view.getFloat64(offset + 12 + FIELD_COUNT, true);
      ring.timeMs[index] = this.header.timeMs;
      const lengths = index * FIELD_COUNT;
      const lengthsAt = offset + 4;
      offset += COMMAND_FIXED_BYTES;
      const base = index * SLOT_TEXT_BYTES;
      for (let f = 0; f < FIELD_COUNT; f++) {
        const length = record[lengthsAt + f];
        ring.fieldLength[lengths + f] = length;
        const start = base + FIELD_OFFSET[f];
        for (let i = 0; i < length; i++) text[start + i] = record[offset + i];
        // Zero the rest of the last word: keys are hashed and compared a word at a time.
        for (let i = length; (i & 3) !== 0; i++) text[start + i] = 0;
        offset += length;
      }
    }
    this.command = k;
    this.offset = offset;
    return written;
  }

  /** The offset after the command at `offset` (already checked by start). */
  private pastCommand(offset: number): number {
    let next = offset + COMMAND_FIXED_BYTES;
    for (let f = 0; f < FIELD_COUNT; f++) next += this.record[offset + 4 + f];
    return next;
  }
}

/**
 * The command in ring slot `index`, as a plain command (replays, outputs, tests). Built without object spreads:
 * the output relay calls it once per event.
 */
export function readCommand(ring: RingBuffer, index: number, ascii: AsciiDecoder = asciiString): Command {
  const flags = ring.flags[index];
  const type = COMMAND_TYPES[ring.type[index]] as CommandType;
  const amount = ring.amount[index];
  const hasAmount = (flags & Flag.amount) !== 0;
  const partnerId = slotText(ring, index, ascii, Field.partner);
  // Every command but a check carries an id (a check may too).
  const id = type !== "check" || (flags & Flag.id) !== 0 ? slotText(ring, index, ascii, Field.id) : undefined;
  switch (type) {
    case "openAccount": {
      const command: OpenAccountCommand = { type, id: id!, partnerId, accountId: slotText(ring, index, ascii, Field.account), currency: slotText(ring, index, ascii, Field.currency) };
      if (hasAmount) command.overdraftLimit = amount;
      return command;
    }
    case "credit":
    case "debit": {
      const command: CreditCommand | DebitCommand = { type, id: id!, partnerId, accountId: slotText(ring, index, ascii, Field.account), amount };
      if ((flags & Flag.currency) !== 0) command.currency = slotText(ring, index, ascii, Field.currency);
      return command;
    }
    case "transfer":
      return { type, id: id!, partnerId, fromAccountId: slotText(ring, index, ascii, Field.account), toAccountId: slotText(ring, index, ascii, Field.target), amount };
    case "hold": {
      const command: HoldCommand = { type, id: id!, partnerId, accountId: slotText(ring, index, ascii, Field.account), amount };
      if ((flags & Flag.expiry) !== 0) command.expiresInMs = ring.expiresInMs[index];
      return command;
    }
    case "capture": {
      const command: CaptureCommand = { type, id: id!, partnerId, holdId: slotText(ring, index, ascii, Field.target) };
      if (hasAmount) command.amount = amount;
      return command;
    }
    case "release":
      return { type, id: id!, partnerId, holdId: slotText(ring, index, ascii, Field.target) };
    case "check": {
      const command: CheckCommand = { type, partnerId, accountId: slotText(ring, index, ascii, Field.account), amount };
      if (id !== undefined) command.id = id;
      return command;
    }
    case "setOverdraftLimit":
      return { type, id: id!, partnerId, accountId: slotText(ring, index, ascii, Field.account), overdraftLimit: amount };
    default:
      return { type, id: id!, partnerId, accountId: slotText(ring, index, ascii, Field.account) } as Command;
  }
}

/** Text field `field` of ring slot `index`, as a string. */
function slotText(ring: RingBuffer, index: number, ascii: AsciiDecoder, field: number): string {
  const start = index * SLOT_TEXT_BYTES + FIELD_OFFSET[field];
  return ascii(ring.text, start, start + ring.fieldLength[index * FIELD_COUNT + field]);
}
