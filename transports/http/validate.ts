/**
 * Request-body validation for the HTTP transport. Every body is checked here, before anything reaches the gateway,
 * so bad input never changes state: unknown fields, wrong types, identifiers and currencies of the wrong form, and
 * numbers that are not safe integers in range (JSON has no integer type, so floats and values past 2^53-1 are
 * refused here rather than rounded). A failure throws `HttpError` 400 `invalid_request` naming the field path.
 */
import type { Command, CommandType } from "../../core/index.ts";
import { CURRENCY_BYTES_MAX, CURRENCY_BYTES_MIN, CURRENCY_CLASS, GROUP_COMMANDS_MAX, IDENTIFIER_CLASS, KEY_BYTES_MAX } from "../../core/limits.ts";

/** An error the transport answers itself (400, 401, 403, 404, 409, 413): one status, one code, maybe a path. */
export class HttpError extends Error {
  override name = "HttpError";
  readonly status: number;
  readonly code: string;
  readonly path: string | undefined;

  constructor(status: number, code: string, message: string, path?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.path = path;
  }
}

/** What a field must hold. `amount`: 1..2^53-1; `limit` and `duration`: 0..2^53-1 (the core judges the range). */
export type FieldKind = "identifier" | "currency" | "amount" | "limit" | "duration";

/** Required and optional fields of one body shape. */
export interface Shape {
  required: Readonly<Record<string, FieldKind>>;
  optional: Readonly<Record<string, FieldKind>>;
}

const ACCOUNT_FIELDS = { id: "identifier", partnerId: "identifier", accountId: "identifier" } as const;

/** The fields of every command, without `type`. */
export const COMMAND_SHAPES: Readonly<Record<CommandType, Shape>> = {
  openAccount: { required: { ...ACCOUNT_FIELDS, currency: "currency" }, optional: { overdraftLimit: "limit" } },
  credit: { required: { ...ACCOUNT_FIELDS, amount: "amount" }, optional: { currency: "currency" } },
  debit: { required: { ...ACCOUNT_FIELDS, amount: "amount" }, optional: { currency: "currency" } },
  transfer: {
    required: { id: "identifier", partnerId: "identifier", fromAccountId: "identifier", toAccountId: "identifier", amount: "amount" },
    optional: {},
  },
  hold: { required: { ...ACCOUNT_FIELDS, amount: "amount" }, optional: { expiresInMs: "duration" } },
  capture: { required: { id: "identifier", partnerId: "identifier", holdId: "identifier" }, optional: { amount: "amount" } },
  release: { required: { id: "identifier", partnerId: "identifier", holdId: "identifier" }, optional: {} },
  check: { required: { partnerId: "identifier", accountId: "identifier", amount: "amount" }, optional: { id: "identifier" } },
  setOverdraftLimit: { required: { ...ACCOUNT_FIELDS, overdraftLimit: "limit" }, optional: {} },
  freeze: { required: ACCOUNT_FIELDS, optional: {} },
  unfreeze: { required: ACCOUNT_FIELDS, optional: {} },
  close: { required: ACCOUNT_FIELDS, optional: {} },
};

/** Commands only an internal key may submit (the admin routes' commands). */
export const ADMIN_COMMAND_TYPES: ReadonlySet<string> = new Set(["setOverdraftLimit", "freeze", "unfreeze", "close"]);

/** The characters of an identifier (length 1..KEY_BYTES_MAX is checked apart); exported for the OpenAPI document. */
export const IDENTIFIER_PATTERN = new RegExp(`^[${IDENTIFIER_CLASS}]+$`);
/** The characters of a currency (length CURRENCY_BYTES_MIN..MAX is checked apart); exported for the OpenAPI document. */
export const CURRENCY_PATTERN = new RegExp(`^[${CURRENCY_CLASS}]+$`);

/** `prefix.name`, or `name` at the top level. */
export function joinPath(prefix: string, name: string): string {
  return prefix === "" ? name : `${prefix}.${name}`;
}

function invalid(path: string, message: string): HttpError {
  return new HttpError(400, "invalid_request", `${path === "" ? "body" : path}: ${message}`, path === "" ? undefined : path);
}

/** `value` as a plain JSON object, or a 400 at `path`. */
export function expectObject(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(path, "must be an object");
  return value as Record<string, unknown>;
}

/** Check `value` against `shape`: no unknown field, every required field present, every field of its kind. */
export function checkShape(value: unknown, shape: Shape, path: string): Record<string, unknown> {
  const row = expectObject(value, path);
  for (const name of Object.keys(row)) {
    if (!Object.hasOwn(shape.required, name) && !Object.hasOwn(shape.optional, name)) {
      throw invalid(joinPath(path, name), "unknown field");
    }
  }
  for (const [name, kind] of Object.entries(shape.required)) {
    if (row[name] === undefined) throw invalid(joinPath(path, name), "is required");
    checkField(row[name], kind, joinPath(path, name));
  }
  for (const [name, kind] of Object.entries(shape.optional)) {
    if (row[name] !== undefined) checkField(row[name], kind, joinPath(path, name));
  }
  return row;
}

/** Check one field; exported for path parameters. */
export function checkField(value: unknown, kind: FieldKind, path: string): void {
  switch (kind) {
    case "identifier":
      if (typeof value !== "string") throw invalid(path, "must be a string");
      if (value.length < 1 || value.length > KEY_BYTES_MAX) throw invalid(path, `must be 1-${KEY_BYTES_MAX} characters`);
      if (!IDENTIFIER_PATTERN.test(value)) throw invalid(path, `must be characters of [${IDENTIFIER_CLASS}]`);
      return;
    case "currency":
      if (typeof value !== "string") throw invalid(path, "must be a string");
      if (value.length < CURRENCY_BYTES_MIN || value.length > CURRENCY_BYTES_MAX || !CURRENCY_PATTERN.test(value)) {
        throw invalid(path, `must be ${CURRENCY_BYTES_MIN}-${CURRENCY_BYTES_MAX} characters of [${CURRENCY_CLASS}]`);
      }
      return;
    case "amount":
      checkInteger(value, 1, path);
      return;
    default:
      checkInteger(value, 0, path);
  }
}

function checkInteger(value: unknown, minimum: number, path: string): void {
  if (typeof value !== "number") throw invalid(path, "must be a number");
  if (!Number.isInteger(value)) throw invalid(path, "must be an integer (minor units)");
  if (value < minimum || !Number.isSafeInteger(value)) throw invalid(path, `must be an integer in ${minimum}..2^53-1`);
}

/** A command of `/v1/commands`: `type` plus that type's fields. */
export function checkCommand(value: unknown, path: string): Command {
  const row = expectObject(value, path);
  const type = row.type;
  if (typeof type !== "string" || !Object.hasOwn(COMMAND_SHAPES, type)) throw invalid(joinPath(path, "type"), "unknown command type");
  const { type: _type, ...fields } = row;
  checkShape(fields, COMMAND_SHAPES[type as CommandType], path);
  return row as unknown as Command;
}

/** The body of `POST /v1/commands`. Atomic groups are checked as the core would, so no shard sees half a request. */
export function checkCommandsBody(value: unknown): { commands: Command[]; atomic: boolean; mode: "sync" | "async" } {
  const row = checkKeys(value, ["commands", "atomic", "mode"]);
  if (row.mode !== undefined && row.mode !== "sync" && row.mode !== "async") throw invalid("mode", 'must be "sync" or "async"');
  if (!Array.isArray(row.commands)) throw invalid("commands", "must be an array");
  if (row.commands.length < 1 || row.commands.length > GROUP_COMMANDS_MAX) {
    throw invalid("commands", `must hold 1-${GROUP_COMMANDS_MAX} commands, got ${row.commands.length}`);
  }
  if (row.atomic !== undefined && typeof row.atomic !== "boolean") throw invalid("atomic", "must be a boolean");
  const commands = row.commands.map((command, index) => checkCommand(command, `commands[${index}]`));
  const atomic = row.atomic === true;
  if (atomic) checkAtomicGroup(commands);
  return { commands, atomic, mode: row.mode === "async" ? "async" : "sync" };
}

function checkAtomicGroup(commands: readonly Command[]): void {
  const ids = new Set<string>();
  commands.forEach((command, index) => {
    if (command.partnerId !== commands[0].partnerId) {
      throw invalid(`commands[${index}].partnerId`, "an atomic group must belong to one partner");
    }
    if (command.type === "check") throw invalid(`commands[${index}].type`, "a check cannot be part of an atomic group");
    if (ids.has(command.id as string)) throw invalid(`commands[${index}].id`, "repeated id in an atomic group");
    ids.add(command.id as string);
  });
}

/** `value` as an object holding only `allowed` keys. */
function checkKeys(value: unknown, allowed: readonly string[]): Record<string, unknown> {
  const row = expectObject(value, "");
  for (const name of Object.keys(row)) if (!allowed.includes(name)) throw invalid(name, "unknown field");
  return row;
}
