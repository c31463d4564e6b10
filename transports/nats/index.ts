/**
 * The NATS transport: request/reply on one subject in a queue group, so several gateway processes share the load.
 * A request's payload is a protobuf `CommandBatch` (or JSON `{commands, atomic?}` with `Content-Type:
 * application/json`); the reply is a `ResultBatch` (or JSON `{results}`). The caller is authenticated by the
 * `Authorization: Bearer <key>` header; a partner key may act only on its own partner and admin commands need an
 * internal key. JSON bodies are validated by the HTTP transport's functions; protobuf batches are read by the
 * core's hand-written reader (int64 -> exact safe-integer numbers, anything else refused) and checked against the
 * same shapes, and replies are written by its hand-written ResultBatch writer: both are held to protobuf-es's bytes
 * by their tests, and were ~40% of the gateway's samples under batch100 through protobuf-es. A request that fails gets a
 * reply with an empty body and the headers `Hotledger-Error` (one table: `errorReply`), `Hotledger-Error-Message`
 * and, for overloaded/unavailable, `Retry-After` in seconds. No message can stop the subscription.
 */
import { connect, headers as natsHeaders, Match, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import {
  COMMAND_TYPES,
  InvalidCommandError,
  OverloadedError,
  ShardUnavailableError,
  type Command,
  type CommandType,
  type Result,
} from "../../core/index.ts";
import {
  ABSENT,
  NUMBER_FIELDS,
  readScannedBatch,
  scanCommandBatch,
  scannedText,
  ScannedText,
  TEXT_FIELDS,
  WireFormatError,
  type ScannedBatch,
  type WireCommand,
} from "../../core/command-batch-reader.ts";
import { encodeResultBatch } from "../../core/wire.ts";
import { GROUP_COMMANDS_MAX } from "../../core/limits.ts";
import { runtimeAscii } from "../ascii.ts";
import { bearerKey, mayActOn, type KeyRing, type Principal } from "../auth.ts";
import type { Gateway } from "../gateway.ts";
import { ADMIN_COMMAND_TYPES, checkCommandFields, checkCommandsBody, COMMAND_SHAPES, HttpError, type Shape } from "../http/validate.ts";

/** Default request subject. */
export const SUBJECT_DEFAULT = "hotledger.v1.commands";
/** Default queue group. */
export const QUEUE_DEFAULT = "hotledger";

/** Options of `startNatsTransport`. */
export interface NatsTransportOptions {
  /** NATS server(s), e.g. "127.0.0.1:4222". */
  servers: string | string[];
  gateway: Gateway;
  keys: KeyRing;
  subject?: string;
  queue?: string;
  /** Where unexpected errors (`internal`) are logged. Default: console.error. */
  log?: (line: string, error: unknown) => void;
}

/** A running transport. */
export interface NatsTransport {
  /** Stop taking requests, answer the ones in flight, close the connection. */
  stop(): Promise<void>;
}

/** The error codes a reply's `Hotledger-Error` header can carry. */
export type NatsErrorCode = "unauthorized" | "forbidden" | "invalid_request" | "overloaded" | "unavailable" | "internal";

/** An error the transport answers itself (unauthorized, forbidden, invalid_request). */
export class NatsRequestError extends Error {
  override name = "NatsRequestError";
  readonly code: NatsErrorCode;

  constructor(code: NatsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Error reply headers. */
export const HEADER_ERROR = "Hotledger-Error";
export const HEADER_ERROR_MESSAGE = "Hotledger-Error-Message";
export const HEADER_RETRY_AFTER = "Retry-After";

interface ErrorReply {
  code: NatsErrorCode;
  message: string;
  retryAfterSeconds?: number;
}

/** The one place exceptions become error codes. Anything unexpected is `internal` and says nothing of the internals. */
export function errorReply(error: unknown): ErrorReply {
  if (error instanceof NatsRequestError) return { code: error.code, message: error.message };
  // validate.ts only throws invalid_request, but keep its code should it ever throw another.
  if (error instanceof HttpError) return { code: error.code === "invalid_request" ? "invalid_request" : "internal", message: error.message };
  if (error instanceof InvalidCommandError) return { code: "invalid_request", message: error.message };
  if (error instanceof OverloadedError) return { code: "overloaded", message: "overloaded, retry later", retryAfterSeconds: 1 };
  if (error instanceof ShardUnavailableError) {
    return { code: "unavailable", message: "temporarily unavailable, retry later", retryAfterSeconds: Math.max(1, Math.ceil(error.retryAfterMs / 1000)) };
  }
  return { code: "internal", message: "internal error" };
}

/** The principal of the request's bearer key, or `unauthorized`. */
function authenticate(hdrs: MsgHdrs | undefined, keys: KeyRing): Principal {
  // Exactly one Authorization header: with two, which one counts would be a guess (HTTP joins them and refuses too).
  const values = hdrs?.values("Authorization", Match.IgnoreCase) ?? [];
  const key = values.length === 1 ? bearerKey(values[0]) : undefined;
  const principal = key === undefined ? undefined : keys.authenticate(key);
  if (principal === undefined) throw new NatsRequestError("unauthorized", "a valid 'Authorization: Bearer <key>' header is required");
  return principal;
}

/**
 * The request's headers. nats.js parses them when they are first read and throws on a block it cannot parse (a
 * header name with a space or control character, a bare CR or LF in a value: any raw client can send one); that is
 * bad input, answered `invalid_request`, not an exception that escapes the handler and ends the process.
 */
function headersOf(msg: Msg): MsgHdrs | undefined {
  try {
    return msg.headers;
  } catch (error) {
    const message = "the message headers are malformed (header names are printable ASCII without ':'; values have no CR or LF)";
    throw new NatsRequestError("invalid_request", message, { cause: error });
  }
}

/** Whether the request says its body is JSON (`application/json`, parameters allowed). */
function isJson(hdrs: MsgHdrs | undefined): boolean {
  const value = hdrs?.get("Content-Type", Match.IgnoreCase) ?? "";
  return value.split(";")[0].trim().toLowerCase() === "application/json";
}

function invalid(path: string, message: string): NatsRequestError {
  return new NatsRequestError("invalid_request", `${path}: ${message}`);
}

/**
 * The shapes protobuf commands are checked against: the HTTP shapes, except that an amount or a hold's expiry need
 * only be 0..2^53-1 here (proto3 `optional` makes 0 an explicit value; the core answers `amount_invalid` for either
 * out of its range, as the fast path, which hands the numbers straight to the core, does too). Values past 2^53-1
 * cannot be held exactly and are refused before conversion.
 */
const PROTO_SHAPES: Readonly<Record<CommandType, Shape>> = Object.fromEntries(
  Object.entries(COMMAND_SHAPES).map(([type, shape]) => {
    const relax = (fields: Shape["required"]) =>
      Object.fromEntries(Object.entries(fields).map(([name, kind]) => [name, kind === "amount" || kind === "duration" ? "limit" : kind])) as Shape["required"];
    return [type, { required: relax(shape.required), optional: relax(shape.optional) }];
  }),
) as Record<CommandType, Shape>;

/** An int64 field of command `index` as read (NaN: not in 0..2^53-1, refused here, naming the field). */
function int64(value: number, index: number, name: string): number {
  if (Number.isNaN(value)) throw invalid(`commands[${index}].${name}`, "must be an integer in 0..2^53-1");
  return value;
}

/**
 * One protobuf command as a core command. Fields at their proto3 default ("" strings, absent optionals) stay
 * absent; a field the type does not have is refused, as in a JSON body. For a transfer, `account_id` is the source.
 */
export function commandFromProto(proto: WireCommand, index: number): Command {
  const type = COMMAND_TYPES[proto.type];
  if (proto.type < 1 || type === undefined || type === "unspecified") throw invalid(`commands[${index}].type`, `unknown command type ${proto.type}`);
  // Built in place (no closures, no spread): this runs once per command of every request.
  const row: Record<string, unknown> = { type };
  if (proto.id !== "") row.id = proto.id;
  if (proto.partnerId !== "") row.partnerId = proto.partnerId;
  if (proto.accountId !== "") row[type === "transfer" ? "fromAccountId" : "accountId"] = proto.accountId;
  if (proto.toAccountId !== "") row.toAccountId = proto.toAccountId;
  if (proto.holdId !== "") row.holdId = proto.holdId;
  if (proto.currency !== "") row.currency = proto.currency;
  if (proto.amount !== undefined) row.amount = int64(proto.amount, index, "amount");
  if (proto.overdraftLimit !== undefined) row.overdraftLimit = int64(proto.overdraftLimit, index, "overdraftLimit");
  if (proto.expiresInMs !== undefined) row.expiresInMs = int64(proto.expiresInMs, index, "expiresInMs");
  checkCommandFields(row, PROTO_SHAPES[type], index);
  return row as unknown as Command;
}

/** A protobuf `CommandBatch` scanned in place (core/command-batch-reader.ts); bytes that are not one are refused. */
function scanProto(data: Uint8Array): ScannedBatch {
  try {
    return scanCommandBatch(data, GROUP_COMMANDS_MAX);
  } catch (error) {
    if (!(error instanceof WireFormatError)) throw error;
    throw new NatsRequestError("invalid_request", `the payload is not a valid CommandBatch: ${error.message}`);
  }
}

/** A scanned `CommandBatch` as core commands. */
function decodeProto(scan: ScannedBatch): { commands: Command[]; atomic: boolean } {
  const batch = readScannedBatch(scan, runtimeAscii);
  if (batch.commands.length < 1) throw invalid("commands", `must hold 1-${GROUP_COMMANDS_MAX} commands, got 0`);
  const commands = new Array<Command>(batch.commands.length);
  for (let index = 0; index < commands.length; index++) commands[index] = commandFromProto(batch.commands[index], index);
  return { commands, atomic: batch.atomic };
}

/**
 * Bit of each field of a scanned command (core/command-batch-reader.ts order: the six strings, then the three
 * numbers), and for each command type number the bits its shape allows: the fast path's unknown-field check.
 */
const FIELD_BITS: Readonly<Record<string, number>> = {
  id: 1 << 0, partnerId: 1 << 1, accountId: 1 << 2, fromAccountId: 1 << 2, toAccountId: 1 << 3, holdId: 1 << 4,
  currency: 1 << 5, amount: 1 << 6, overdraftLimit: 1 << 7, expiresInMs: 1 << 8,
};
/** Allowed field bits by CommandType number; 0 for the types the fast path leaves to the slow one (admin, unknown). */
const FAST_TYPE_FIELDS: readonly number[] = COMMAND_TYPES.map((type) => {
  if (type === "unspecified" || ADMIN_COMMAND_TYPES.has(type)) return 0;
  const shape = PROTO_SHAPES[type];
  return [...Object.keys(shape.required), ...Object.keys(shape.optional)].reduce((bits, name) => bits | FIELD_BITS[name], 0);
});

/**
 * The fast path for a protobuf request: the batch scanned in place and handed to the partner's shard, whose
 * translator copies its bytes into ring slots (no strings, no Command objects, no second validation pass). Taken
 * only for a non-atomic batch of one partner the key may act on, with no admin command, no field its type does
 * not have and no number out of range; undefined otherwise, or when the shard refuses a command (a bad identifier,
 * a missing field) having published nothing: the caller then decodes the batch and answers with the same results
 * or error as ever. Resolves with the protobuf ResultBatch, written by the shard.
 */
function submitScanned(scan: ScannedBatch, principal: Principal, gateway: Gateway): Promise<Uint8Array> | undefined {
  if (gateway.submitScanned === undefined) return undefined;
  if (scan.atomic || scan.count < 1) return undefined;
  const { bytes, ranges, numbers } = scan;
  const partnerStart = ranges[ScannedText.partnerId * 2];
  const partnerEnd = ranges[ScannedText.partnerId * 2 + 1];
  for (let k = 0; k < scan.count; k++) {
    const type = scan.types[k];
    const allowed = type >= 0 && type < FAST_TYPE_FIELDS.length ? FAST_TYPE_FIELDS[type] : 0;
    if (allowed === 0) return undefined;
    let present = 0;
    const at = k * TEXT_FIELDS * 2;
    for (let f = 0; f < TEXT_FIELDS; f++) if (ranges[at + f * 2 + 1] > ranges[at + f * 2]) present |= 1 << f;
    for (let f = 0; f < NUMBER_FIELDS; f++) {
      const value = numbers[k * NUMBER_FIELDS + f];
      if (Number.isNaN(value)) return undefined;
      if (value !== ABSENT) present |= 1 << (TEXT_FIELDS + f);
    }
    if ((present & ~allowed) !== 0) return undefined;
    const start = ranges[at + ScannedText.partnerId * 2];
    const end = ranges[at + ScannedText.partnerId * 2 + 1];
    if (end - start !== partnerEnd - partnerStart) return undefined;
    for (let i = 0; i < end - start; i++) if (bytes[start + i] !== bytes[partnerStart + i]) return undefined;
  }
  const partnerId = scannedText(scan, 0, ScannedText.partnerId, runtimeAscii);
  if (partnerId === "" || !mayActOn(principal, partnerId)) return undefined;
  try {
    return gateway.submitScanned(partnerId, scan);
  } catch (error) {
    if (error instanceof InvalidCommandError) return undefined;
    throw error;
  }
}

/** A JSON `{commands, atomic?}` body, validated as `POST /v1/commands` validates it. */
function decodeJson(data: Uint8Array): { commands: Command[]; atomic: boolean } {
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (error) {
    throw new NatsRequestError("invalid_request", `the payload is not valid JSON: ${(error as Error).message}`);
  }
  // The HTTP body's `mode` has no NATS meaning (a reply always carries the results): refused, not ignored.
  if (typeof body === "object" && body !== null && "mode" in body) {
    throw new NatsRequestError("invalid_request", "mode: unknown field (NATS replies always carry the results)");
  }
  return checkCommandsBody(body);
}

const EMPTY = new Uint8Array(0);

/** A request's commands checked against the key and submitted: every request the fast path leaves. */
async function submitDecoded(decoded: { commands: Command[]; atomic: boolean }, principal: Principal, gateway: Gateway): Promise<Result[]> {
  const { commands, atomic } = decoded;
  for (let index = 0; index < commands.length; index++) {
    const command = commands[index];
    if (!mayActOn(principal, command.partnerId)) {
      throw new NatsRequestError("forbidden", `commands[${index}].partnerId: this key may not act on partner ${command.partnerId}`);
    }
    if (ADMIN_COMMAND_TYPES.has(command.type) && principal.kind !== "internal") {
      throw new NatsRequestError("forbidden", `commands[${index}].type: ${command.type} needs an internal key`);
    }
  }
  return gateway.submit(commands, { atomic });
}

/** Handle one request; never throws (every failure is a reply or, without a reply subject, a log line). */
async function handle(msg: Msg, options: NatsTransportOptions, log: NonNullable<NatsTransportOptions["log"]>): Promise<void> {
  if (msg.reply === undefined || msg.reply === "") {
    log("nats: request without a reply subject dropped", new NatsRequestError("invalid_request", `no reply subject on ${msg.subject}`));
    return;
  }
  let payload: Uint8Array;
  // Headers only when there is one to send: a reply without them is a plain PUB (no header block to encode).
  let hdrs: MsgHdrs | undefined;
  try {
    const requestHeaders = headersOf(msg);
    const json = isJson(requestHeaders);
    const principal = authenticate(requestHeaders, options.keys);
    // A protobuf batch is scanned once: for the fast path, else decoded from the same scan.
    const scan = json ? undefined : scanProto(msg.data);
    const fast = scan === undefined ? undefined : submitScanned(scan, principal, options.gateway);
    if (fast !== undefined) payload = await fast;
    else {
      const decoded = scan === undefined ? decodeJson(msg.data) : decodeProto(scan);
      const results = await submitDecoded(decoded, principal, options.gateway);
      payload = json ? new TextEncoder().encode(JSON.stringify({ results })) : encodeResultBatch(results);
      if (json) {
        hdrs = natsHeaders();
        hdrs.set("Content-Type", "application/json");
      }
    }
  } catch (error) {
    const reply = errorReply(error);
    if (reply.code === "internal") log("nats: unexpected error", error);
    payload = EMPTY;
    hdrs = natsHeaders();
    hdrs.set(HEADER_ERROR, reply.code);
    // Header values are one line.
    hdrs.set(HEADER_ERROR_MESSAGE, reply.message.replace(/[\r\n]+/g, " "));
    if (reply.retryAfterSeconds !== undefined) hdrs.set(HEADER_RETRY_AFTER, String(reply.retryAfterSeconds));
  }
  try {
    msg.respond(payload, hdrs === undefined ? undefined : { headers: hdrs });
  } catch (error) {
    log("nats: reply failed", error);
  }
}

/** Connect, subscribe to `subject` in `queue`, and answer requests until `stop()`. */
export async function startNatsTransport(options: NatsTransportOptions): Promise<NatsTransport> {
  const subject = options.subject ?? SUBJECT_DEFAULT;
  const queue = options.queue ?? QUEUE_DEFAULT;
  const log = options.log ?? ((line: string, error: unknown) => console.error(line, error));
  const nc: NatsConnection = await connect({ servers: options.servers });
  const inFlight = new Set<Promise<void>>();
  let sub: Subscription;
  try {
    sub = nc.subscribe(subject, {
      queue,
      callback: (error, msg) => {
        if (error !== null) {
          log("nats: subscription error", error);
          return;
        }
        const pending = handle(msg, options, log);
        inFlight.add(pending);
        void pending.finally(() => inFlight.delete(pending));
      },
    });
    // The subscription is registered with the server once this returns, so no request sent after start is lost.
    await nc.flush();
  } catch (error) {
    await nc.close();
    throw error;
  }
  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        await sub.drain();
        await Promise.all([...inFlight]);
        await nc.drain();
      })();
      return stopped;
    },
  };
}
