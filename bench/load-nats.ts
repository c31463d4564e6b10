/**
 * NATS load generator of bench/nats.ts, run as its own process: `bun bench/load-nats.ts '<json config>'`.
 * `inFlight` loops on one connection, each with one request outstanding, run for `warmupMs` untimed, then for
 * `durationMs` (or `requestsMax` requests) timed. Gateway requests are protobuf CommandBatch messages of `batch`
 * credits/debits; every reply must carry no Hotledger-Error header and every result code must be OK, else it is
 * counted in `errors`. Echo mode sends a one-command CommandBatch to the echo subject and checks the bytes come
 * back. Prints one JSON line.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import { CommandBatchSchema, CommandType, ResultCode } from "../core/gen/hotledger/v1/ledger_pb.ts";
import { LoadRecorder } from "./load-runner.ts";

interface Config {
  servers: string;
  subject: string;
  mode: "gateway" | "echo";
  batch: number;
  inFlight: number;
  warmupMs: number;
  durationMs: number;
  requestsMax: number;
  accounts: number;
  partners: { partnerId: string; key: string }[];
  tag: string;
}

const config = JSON.parse(process.argv[2]) as Config;
/** A request with no reply after this long is an error. */
const REQUEST_TIMEOUT_MS = 10_000;
const recorder = new LoadRecorder();
/** Next id number per loop, kept across the warm-up and timed phases so every id is new. */
const nextId = new Array<number>(config.inFlight).fill(0);

// No async stack trace per request (nats.js builds an Error for each by default: ~7% of this process's samples).
const nc = await connect({ servers: config.servers, noAsyncTraces: true });

/** Digits of the per-loop counter in every id: the loop's request bytes are built once and the digits patched. */
const ID_DIGITS = 12;

/**
 * A loop's request: a CommandBatch of `count` credits/debits encoded once (protobuf-es), and where each command's
 * id digits sit in it, so a request costs a copy and ID_DIGITS bytes per command, not a protobuf encode: the load
 * generator shares the 2 cores with the server, and encoding 100 commands per request cost it ~3 us a command.
 */
function template(index: number, count: number, partnerId: string, prefix: string): { bytes: Uint8Array; idAt: number[] } {
  const list = [];
  let account = (index * 7919) % config.accounts;
  const marker = "9".repeat(ID_DIGITS);
  for (let k = 0; k < count; k++) {
    account = (account + 1) % config.accounts;
    list.push({
      type: config.mode === "gateway" && k % 2 === 1 ? CommandType.DEBIT : CommandType.CREDIT,
      id: `${prefix}${marker}`,
      partnerId,
      accountId: `acct:${account}`,
      amount: BigInt(1 + ((index + k) % 1000)),
    });
  }
  const bytes = toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands: list }));
  // Each command's id is its first string field (field 2); find the marker after the prefix, in order.
  const idAt: number[] = [];
  const needle = new TextEncoder().encode(`${prefix}${marker}`);
  for (let at = 0; at < bytes.length && idAt.length < count; at++) {
    let k = 0;
    while (k < needle.length && bytes[at + k] === needle[k]) k++;
    if (k === needle.length) {
      idAt.push(at + prefix.length);
      at += needle.length - 1;
    }
  }
  if (idAt.length !== count) throw new Error(`found ${idAt.length} ids in the request template, want ${count}`);
  return { bytes, idAt };
}

/** Write `value` as ID_DIGITS decimal digits at `at`. */
function writeDigits(bytes: Uint8Array, at: number, value: number): void {
  for (let d = ID_DIGITS - 1; d >= 0; d--) {
    bytes[at + d] = 48 + (value % 10);
    value = Math.floor(value / 10);
  }
}

/** Add `step` to the ID_DIGITS decimal digits at `at`, in place: a few bytes, not all of them. */
function addToDigits(bytes: Uint8Array, at: number, step: number): void {
  let carry = step;
  for (let d = at + ID_DIGITS - 1; carry !== 0; d--) {
    if (d < at) throw new Error("an id counter ran past its digits");
    const digit = bytes[d] - 48 + carry;
    carry = (digit / 10) | 0;
    bytes[d] = 48 + digit - carry * 10;
  }
}

/**
 * The results of a ResultBatch reply: how many, and the first that is not OK, is a duplicate, or does not carry the
 * id of the request's command in its place (read by hand: `id` is field 1, `code` field 2 and `duplicate` field 7,
 * the last two absent when OK and new). Command `k`'s id is `request[idStart[k], idStart[k] + idLength)`.
 */
function checkResults(bytes: Uint8Array, request: Uint8Array, idStart: readonly number[], idLength: number): { count: number; bad: string | undefined } {
  let offset = 0;
  let count = 0;
  let bad: string | undefined;
  const varint = (): number => {
    const first = bytes[offset++];
    if (first < 0x80) return first;
    let value = first & 0x7f;
    let scale = 0x80;
    for (let k = 1; k < 8; k++, scale *= 0x80) {
      const byte = bytes[offset++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
    throw new Error("a varint too long");
  };
  while (offset < bytes.length) {
    if (varint() !== ((1 << 3) | 2)) throw new Error("not a ResultBatch");
    const end = varint() + offset;
    count++;
    let sawId = false;
    while (offset < end) {
      const key = varint();
      const wire = key & 7;
      let value = 0;
      if (wire === 0) value = varint();
      else if (wire === 2) {
        const length = varint();
        if (key >>> 3 === 1) {
          sawId = true;
          const from = idStart[count - 1];
          let same = length === idLength && from !== undefined;
          for (let i = 0; same && i < length; i++) same = bytes[offset + i] === request[from + i];
          if (!same) bad ??= `result ${count - 1} does not carry its command's id`;
        }
        offset += length;
      } else throw new Error(`wire type ${wire} in a Result`);
      if ((key >>> 3 === 2 || key >>> 3 === 7) && value !== 0) bad ??= key >>> 3 === 2 ? `code ${ResultCode[value]}` : "duplicate";
    }
    if (!sawId) bad ??= `result ${count - 1} has no id`;
  }
  return { count, bad };
}

async function loop(index: number, deadline: number, requestsMax: number): Promise<void> {
  const partner = config.partners[index % config.partners.length];
  const hdrs = natsHeaders();
  hdrs.set("Authorization", `Bearer ${partner.key}`);
  const count = config.mode === "echo" ? 1 : config.batch;
  const prefix = `${config.tag}-${index}-`;
  const { bytes, idAt } = template(index, count, partner.partnerId, prefix);
  const idStart = idAt.map((at) => at - prefix.length);
  // The loop's one request buffer, its ids patched in place between requests: nats.js has copied a request's bytes
  // out before its reply can arrive, and a reply is checked against the ids before they change.
  let data = bytes;
  let n = nextId[index];
  for (let k = 0; k < count; k++) writeDigits(data, idAt[k], n + k);
  for (let sent = 0; sent < requestsMax && performance.now() < deadline; sent++) {
    if (sent > 0) for (let k = 0; k < count; k++) addToDigits(data, idAt[k], count);
    n += count;
    nextId[index] = n;
    const started = performance.now();
    let reply;
    try {
      reply = await nc.request(config.subject, data, { timeout: REQUEST_TIMEOUT_MS, headers: hdrs });
    } catch (error) {
      recorder.fail(`request: ${(error as Error).message}`, true);
      // A request that timed out may still sit in the client's outbound queue: patch a copy from now on.
      data = data.slice();
      continue;
    }
    const ended = performance.now();
    if (!recorder.done()) continue;
    if (config.mode === "echo") {
      if (reply.data.byteLength !== data.byteLength) recorder.fail(`echo returned ${reply.data.byteLength} bytes for ${data.byteLength}`);
    } else {
      const code = reply.headers?.get("Hotledger-Error");
      if (code) {
        recorder.fail(`Hotledger-Error ${code}: ${reply.headers?.get("Hotledger-Error-Message")}`);
        continue;
      }
      const { count: results, bad } = checkResults(reply.data, data, idStart, prefix.length + ID_DIGITS);
      if (results !== count) recorder.fail(`${results} results for ${count} commands`);
      if (bad !== undefined) recorder.fail(bad);
    }
    recorder.succeeded(count, ended - started);
  }
}

const result = await recorder.run(config.inFlight, config, loop);
await nc.close();
console.log(JSON.stringify(result));
