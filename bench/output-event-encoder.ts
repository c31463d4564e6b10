/**
 * Could a hand-written protobuf encoder of OutputEvent take encoding off the JetStream sink's critical path?
 *
 * Napkin math: an event is ~116 B, ~25 fields in 4 messages. Written directly (a tag byte, a varint, ASCII bytes
 * copied) that is a few hundred simple stores, ~0.5-1 us; protobuf-es first builds message objects (`create`,
 * BigInt for every int64) and then walks them by reflection, ~4-8 us. So 3-10x, and envelope mode, which NATS
 * takes at millions of events/s, would follow the encoder.
 *
 * Run: `bun bench/output-event-encoder.ts` (a table on stderr), `--json` (one JSON line on stdout), `--runs N`
 * (default 5, the median is reported).
 *
 * A proposal, not the core's encoder: `encodeOutputEventBatchByHand` writes the same bytes as core/wire.ts's
 * `encodeOutputEventBatch` (protobuf-es `create` + reflective `toBinary`) straight from the core's plain event
 * objects: one sizing pass, then one writing pass into a single Uint8Array, ASCII strings copied a char at a time
 * (identifiers are ASCII by the core's rules; anything else goes through TextEncoder), int64 as two 32-bit halves.
 * The bench checks byte equality with protobuf-es on every event of a real shard's workload before timing, so the
 * speed-up is never measured on an encoder that writes something else.
 */
import { ACCOUNT_STATUSES, Code, Type, encodeOutputEventBatch, type AccountChange, type OutputEvent } from "../core/index.ts";
import { Engine, EventDeriver, Shard } from "../core/index.ts";
import { MemoryJournal, MemorySnapshotStore } from "../core/testing/memory-ports.ts";
import { randomWorkload, workloadOpenings } from "../core/testing/workload.ts";
import { median } from "./children.ts";

const CHUNK_EVENTS = 5_000;
const RUNS_MAX = 10;
const WORKLOAD_BATCHES = 40_000;
const SIZES = { accountsMax: 256, partnersMax: 16, holdsMax: 1 << 16, idempotencyCommandsMax: 1 << 17, ringSlots: 8192 };

/** Wire types of the fields written here. */
const VARINT = 0;
const LENGTH_DELIMITED = 2;
const TWO_POW_32 = 4294967296;
const utf8 = new TextEncoder();

/** Bytes of `value` (a safe integer, negative as a 64-bit two's complement) as a varint. */
function varintBytes(value: number): number {
  if (value < 0) return 10;
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  let bytes = 5;
  for (let rest = Math.floor(value / 0x800000000); rest > 0; rest = Math.floor(rest / 128)) bytes++;
  return bytes;
}

function stringBytes(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 128) return utf8.encode(text).length;
  return text.length;
}

/**
 * Sizes of fields, by the same rules as the writer (proto3: zero and "" are absent unless the field is optional).
 * Every field number here is below 16, so every tag is one byte.
 */
const sizeString = (text: string) => (text === "" ? 0 : 1 + varintBytes(stringBytes(text)) + stringBytes(text));
const sizeNumber = (value: number) => (value === 0 ? 0 : 1 + varintBytes(value));
const sizeOptional = (value: number | undefined) => (value === undefined ? 0 : 1 + varintBytes(value));
const sizeMessage = (bytes: number) => 1 + varintBytes(bytes) + bytes;

/** A writer over one preallocated buffer. */
class Writer {
  readonly bytes: Uint8Array;
  offset = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  tag(field: number, wireType: number): void {
    this.bytes[this.offset++] = (field << 3) | wireType;
  }

  varint(value: number): void {
    if (value >= 0 && value < TWO_POW_32) {
      let rest = value >>> 0;
      while (rest > 127) {
        this.bytes[this.offset++] = (rest & 0x7f) | 0x80;
        rest >>>= 7;
      }
      this.bytes[this.offset++] = rest;
      return;
    }
    // Above 32 bits or negative: two 32-bit halves of the 64-bit two's complement.
    const highSigned = Math.floor(value / TWO_POW_32);
    let low = (value - highSigned * TWO_POW_32) >>> 0;
    let high = highSigned >>> 0;
    while (high > 0 || low > 127) {
      this.bytes[this.offset++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.bytes[this.offset++] = low;
  }

  string(field: number, text: string): void {
    if (text === "") return;
    this.tag(field, LENGTH_DELIMITED);
    const length = stringBytes(text);
    this.varint(length);
    if (length === text.length) {
      for (let i = 0; i < text.length; i++) this.bytes[this.offset++] = text.charCodeAt(i);
    } else {
      this.offset += utf8.encodeInto(text, this.bytes.subarray(this.offset)).written;
    }
  }

  number(field: number, value: number): void {
    if (value === 0) return;
    this.tag(field, VARINT);
    this.varint(value);
  }

  optional(field: number, value: number | undefined): void {
    if (value === undefined) return;
    this.tag(field, VARINT);
    this.varint(value);
  }
}

/** The command as core/wire.ts's commandToProto flattens it (a transfer's source is account_id). */
interface FlatCommand {
  type: number;
  id: string;
  partnerId: string;
  accountId: string;
  toAccountId: string;
  holdId: string;
  amount: number | undefined;
  currency: string;
  overdraftLimit: number | undefined;
  expiresInMs: number | undefined;
}

const text = (value: string | number | undefined) => (value === undefined ? "" : String(value));
const number = (value: string | number | undefined) => (value === undefined ? undefined : Number(value));

function flatten(event: OutputEvent): FlatCommand {
  const command = event.command as unknown as Partial<Record<string, string | number>>;
  return {
    type: Type[event.command.type],
    id: text(command.id),
    partnerId: event.command.partnerId,
    accountId: text(event.command.type === "transfer" ? command.fromAccountId : command.accountId),
    toAccountId: text(command.toAccountId),
    holdId: text(command.holdId),
    amount: number(command.amount),
    currency: text(command.currency),
    overdraftLimit: number(command.overdraftLimit),
    expiresInMs: number(command.expiresInMs),
  };
}

function commandSize(c: FlatCommand): number {
  return sizeNumber(c.type) + sizeString(c.id) + sizeString(c.partnerId) + sizeString(c.accountId) + sizeString(c.toAccountId)
    + sizeString(c.holdId) + sizeOptional(c.amount) + sizeString(c.currency) + sizeOptional(c.overdraftLimit) + sizeOptional(c.expiresInMs);
}

function resultSize(event: OutputEvent): number {
  const r = event.result;
  return sizeString(r.id) + sizeNumber(Code[r.code]) + sizeNumber(r.seq) + sizeOptional(r.balance) + sizeOptional(r.held)
    + sizeOptional(r.available) + (r.duplicate === true ? 2 : 0);
}

function changeSize(a: AccountChange): number {
  return sizeString(a.partnerId) + sizeString(a.accountId) + sizeString(a.currency) + sizeNumber(a.balance) + sizeNumber(a.held)
    + sizeNumber(a.available) + sizeNumber(a.overdraftLimit) + sizeNumber(ACCOUNT_STATUSES.indexOf(a.status))
    + sizeNumber(a.balanceDelta) + sizeNumber(a.heldDelta);
}

/** An event's parts and sizes, computed once for both passes. */
interface Sized {
  event: OutputEvent;
  command: FlatCommand;
  commandBytes: number;
  resultBytes: number;
  changeBytes: number[];
  bytes: number;
}

function size(event: OutputEvent): Sized {
  const command = flatten(event);
  const commandBytes = commandSize(command);
  const resultBytes = resultSize(event);
  const changeBytes = event.accounts.map(changeSize);
  let bytes = sizeString(event.eventId) + sizeNumber(event.shard) + sizeNumber(event.seq) + sizeNumber(event.timeMs)
    + sizeMessage(commandBytes) + sizeMessage(resultBytes);
  for (const change of changeBytes) bytes += sizeMessage(change);
  return { event, command, commandBytes, resultBytes, changeBytes, bytes };
}

function writeEvent(w: Writer, s: Sized): void {
  const { event, command: c } = s;
  w.string(1, event.eventId);
  w.number(2, event.shard);
  w.number(3, event.seq);
  w.number(4, event.timeMs);
  w.tag(5, LENGTH_DELIMITED);
  w.varint(s.commandBytes);
  w.number(1, c.type);
  w.string(2, c.id);
  w.string(3, c.partnerId);
  w.string(4, c.accountId);
  w.string(5, c.toAccountId);
  w.string(6, c.holdId);
  w.optional(7, c.amount);
  w.string(8, c.currency);
  w.optional(9, c.overdraftLimit);
  w.optional(10, c.expiresInMs);
  const r = event.result;
  w.tag(6, LENGTH_DELIMITED);
  w.varint(s.resultBytes);
  w.string(1, r.id);
  w.number(2, Code[r.code]);
  w.number(3, r.seq);
  w.optional(4, r.balance);
  w.optional(5, r.held);
  w.optional(6, r.available);
  if (r.duplicate === true) w.number(7, 1);
  for (let i = 0; i < event.accounts.length; i++) {
    const a = event.accounts[i];
    w.tag(7, LENGTH_DELIMITED);
    w.varint(s.changeBytes[i]);
    w.string(1, a.partnerId);
    w.string(2, a.accountId);
    w.string(3, a.currency);
    w.number(4, a.balance);
    w.number(5, a.held);
    w.number(6, a.available);
    w.number(7, a.overdraftLimit);
    w.number(8, ACCOUNT_STATUSES.indexOf(a.status));
    w.number(9, a.balanceDelta);
    w.number(10, a.heldDelta);
  }
}

/** The proposed encoder: the same bytes as `encodeOutputEventBatch(events)`. */
export function encodeOutputEventBatchByHand(events: readonly OutputEvent[]): Uint8Array {
  const sized = events.map(size);
  let total = 0;
  for (const s of sized) total += sizeMessage(s.bytes);
  const w = new Writer(total);
  for (const s of sized) {
    w.tag(1, LENGTH_DELIMITED);
    w.varint(s.bytes);
    writeEvent(w, s);
  }
  if (w.offset !== total) throw new Error(`sized ${total} bytes, wrote ${w.offset}`);
  return w.bytes;
}

/** Keeps every record, so all events can be derived after the workload. */
class KeepingJournal extends MemoryJournal {
  override async compact(): Promise<void> {}
}

async function workloadEvents(): Promise<OutputEvent[]> {
  const journal = new KeepingJournal();
  let now = 1_700_000_000_000;
  let tick = 0;
  const shard = await Shard.open({ ...SIZES, journal, snapshots: new MemorySnapshotStore(), clock: () => (now += tick++ % 6), snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12 });
  const batches = [...workloadOpenings("ord_01HZX3K9QW"), ...randomWorkload(1, WORKLOAD_BATCHES, "ord_01HZX3K9QW")];
  for (let start = 0; start < batches.length; start += 64) {
    await Promise.all(batches.slice(start, start + 64).map((batch) => shard.submit(batch.commands, { atomic: batch.atomic })));
  }
  await shard.close();
  const deriver = new EventDeriver(new Engine(SIZES), 7);
  const events: OutputEvent[] = [];
  for (const record of journal.records) deriver.apply(record, events);
  return events;
}

/** Events per second of `encode` over `events` in CHUNK_EVENTS envelopes. */
function rate(events: readonly OutputEvent[], encode: (chunk: readonly OutputEvent[]) => Uint8Array): number {
  const started = performance.now();
  for (let start = 0; start < events.length; start += CHUNK_EVENTS) encode(events.slice(start, start + CHUNK_EVENTS));
  return events.length / ((performance.now() - started) / 1000);
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const jsonMode = argv.includes("--json");
  const runsIndex = argv.indexOf("--runs");
  const runs = Math.min(RUNS_MAX, Math.max(1, runsIndex >= 0 ? Number(argv[runsIndex + 1]) : 5));
  const events = await workloadEvents();
  // Equality first, including negative int64s (an overdraft balance, a debit's delta): 10-byte varints.
  const withChange = events.find((event) => event.accounts.length > 0)!;
  const negative: OutputEvent = { ...withChange, accounts: [{ ...withChange.accounts[0], balance: -5, balanceDelta: -(2 ** 53 - 1) }] };
  const chunks = [[negative]];
  for (let start = 0; start < events.length; start += CHUNK_EVENTS) chunks.push(events.slice(start, start + CHUNK_EVENTS));
  for (const chunk of chunks) {
    const expected = encodeOutputEventBatch(chunk);
    const actual = encodeOutputEventBatchByHand(chunk);
    if (expected.length !== actual.length || expected.some((byte, i) => byte !== actual[i])) throw new Error(`bytes differ for ${chunk[0].eventId}..`);
  }
  const protobufEs: number[] = [];
  const byHand: number[] = [];
  const json: number[] = [];
  for (let run = 0; run < runs; run++) {
    protobufEs.push(rate(events, encodeOutputEventBatch));
    byHand.push(rate(events, encodeOutputEventBatchByHand));
    json.push(rate(events, (chunk) => utf8.encode(JSON.stringify(chunk))));
  }
  const line = {
    events: events.length,
    protobufEsEventsPerSec: Math.round(median(protobufEs)),
    byHandEventsPerSec: Math.round(median(byHand)),
    jsonEventsPerSec: Math.round(median(json)),
    bytesPerEvent: Math.round(encodeOutputEventBatch(events).length / events.length),
  };
  if (jsonMode) console.log(JSON.stringify(line));
  else process.stderr.write(`${JSON.stringify(line, null, 2)}\n(identical bytes on all ${events.length} events)\n`);
}
