/**
 * The HTTP transport (Elysia): request -> validated command(s) -> gateway; result -> reply. Bodies are read and
 * validated here (size limit, JSON, exact shapes, safe-integer amounts), the caller is authenticated by API key,
 * and a partner key may act only on its own partner. Business outcomes map to statuses in one table
 * (`RESULT_STATUS`), exceptions in one function (`errorResponse`). The caller starts the server with
 * `createHttpApp(...).listen({ hostname, port })`.
 */
import { Elysia } from "elysia";
import {
  InvalidCommandError,
  limits,
  OverloadedError,
  ShardUnavailableError,
  RESULT_CODES,
  type Account,
  type Command,
  type ShardMetrics,
  type ResultCode,
  type Result,
  type SinkStatus,
} from "../../core/index.ts";
import { bearerKey, mayActOn, type KeyRing, type Principal } from "../auth.ts";
import { HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, type Gateway, type OutputsView } from "../gateway.ts";
import { openApiRoutes } from "./openapi.ts";
import { ADMIN_COMMAND_TYPES, adminBodyShape, checkCommandsBody, checkField, checkShape, COMMAND_SHAPES, HttpError, type Shape } from "./validate.ts";

export { HttpError } from "./validate.ts";

/** Default largest request body: 1 MiB (1000 commands of ~200 bytes fit with room to spare). */
export const BODY_BYTES_MAX_DEFAULT = 1 << 20;

/** Options of `createHttpApp`. */
export interface HttpAppOptions {
  gateway: Gateway;
  keys: KeyRing;
  /** Largest request body in bytes; larger is 413. Default BODY_BYTES_MAX_DEFAULT. */
  bodyBytesMax?: number;
  /** Where unexpected errors (500s) are logged. Default: console.error. */
  log?: (line: string, error: unknown) => void;
  /** Output relays and the history projection, for `GET /v1/outputs`, history and /metrics. Default: none. */
  outputs?: OutputsView;
}

/** The one table from result codes to HTTP statuses, for shortcut and admin routes (`/v1/commands` is always 200). */
export const RESULT_STATUS: Readonly<Record<ResultCode, number>> = {
  ok: 200,
  insufficient_funds: 422,
  account_not_found: 404,
  account_exists: 409,
  account_frozen: 422,
  account_closed: 422,
  currency_mismatch: 422,
  amount_invalid: 422,
  amount_overflow: 422,
  hold_not_found: 422,
  hold_expired: 422,
  hold_closed: 422,
  capture_exceeds_hold: 422,
  id_reused: 409,
  linked_failed: 422,
  close_nonzero: 422,
  same_account: 422,
  capacity_exceeded: 422,
};

/** The shortcut routes: path -> command type. The body is the command without `type`. */
const SHORTCUTS = {
  "/v1/credit": "credit",
  "/v1/debit": "debit",
  "/v1/transfer": "transfer",
  "/v1/holds": "hold",
  "/v1/holds/capture": "capture",
  "/v1/holds/release": "release",
  "/v1/check": "check",
} as const;

/** The admin routes under `/v1/accounts/:partnerId/:accountId/`: suffix -> command type. */
const ADMIN_ROUTES = { freeze: "freeze", unfreeze: "unfreeze", close: "close", "overdraft-limit": "setOverdraftLimit" } as const;

const OPEN_ACCOUNT_SHAPE: Shape = {
  required: { partnerId: "identifier", accountId: "identifier", currency: "currency" },
  optional: { id: "identifier", overdraftLimit: "limit" },
};

const JSON_HEADERS: Readonly<Record<string, string>> = { "content-type": "application/json" };
const BEARER_CHALLENGE: Record<string, string> = { "www-authenticate": 'Bearer realm="hotledger"' };

/** A JSON response. */
function json(status: number, body: unknown, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: headers === undefined ? JSON_HEADERS : { ...JSON_HEADERS, ...headers } });
}

/** The one place exceptions become statuses. Anything unexpected is a 500 that says nothing of the internals. */
function errorResponse(error: unknown, log: NonNullable<HttpAppOptions["log"]>): Response {
  if (error instanceof HttpError) {
    const body = error.path === undefined ? { code: error.code, message: error.message } : { code: error.code, message: error.message, path: error.path };
    // A 401 names the scheme it wants (RFC 9110 11.6.1, RFC 6750 3).
    return json(error.status, { error: body }, error.status === 401 ? BEARER_CHALLENGE : undefined);
  }
  if (error instanceof InvalidCommandError) {
    return json(400, { error: { code: "invalid_request", message: error.message, path: error.path } });
  }
  if (error instanceof OverloadedError) return json(503, { error: { code: "overloaded", message: "overloaded, retry later" } }, retryAfter(0));
  if (error instanceof ShardUnavailableError) {
    return json(503, { error: { code: "unavailable", message: "temporarily unavailable, retry later" } }, retryAfter(error.retryAfterMs));
  }
  log("http: unexpected error", error);
  return json(500, { error: { code: "internal", message: "internal error" } });
}

function retryAfter(retryAfterMs: number): Record<string, string> {
  return { "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) };
}

/** The principal of the request's bearer key, or a 401. */
function authenticate(request: Request, keys: KeyRing): Principal {
  const key = bearerKey(request.headers.get("authorization") ?? "");
  const principal = key === undefined ? undefined : keys.authenticate(key);
  if (principal === undefined) throw new HttpError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required");
  return principal;
}

function authorize(principal: Principal, partnerId: string, path: string): void {
  if (!mayActOn(principal, partnerId)) throw new HttpError(403, "forbidden", `this key may not act on partner ${partnerId}`, path);
}

/** For `/v1/.../:partnerId/:<name>` routes: authenticate, check both path identifiers, allow only on that partner. */
function authorizePath(request: Request, keys: KeyRing, params: Record<string, string>, name: string): void {
  const principal = authenticate(request, keys);
  checkField(params.partnerId, "identifier", "partnerId");
  checkField(params[name], "identifier", name);
  authorize(principal, params.partnerId, "partnerId");
}

function requireInternal(principal: Principal): void {
  if (principal.kind !== "internal") throw new HttpError(403, "forbidden", "admin routes need an internal key");
}

/**
 * The body as JSON, refusing more than `bodyBytesMax` bytes by Content-Length and by what actually arrives. An
 * empty body is `emptyBody` where the route allows one, else a 400 like any other body that is not JSON.
 */
async function readJson(request: Request, bodyBytesMax: number, emptyBody?: unknown): Promise<unknown> {
  const tooLarge = () => new HttpError(413, "payload_too_large", `the body is over ${bodyBytesMax} bytes`);
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > bodyBytesMax) throw tooLarge();
  if (emptyBody !== undefined && (declared === "0" || (declared === null && request.body === null))) return emptyBody;
  if (declared !== null) {
    // The common case, a declared length within the limit: the runtime's own reader and parser, one call (the
    // server never delivers more than Content-Length bytes). ~2-4 us a request faster than bytes, decode and
    // JSON.parse here. Invalid UTF-8 becomes U+FFFD, which no identifier or currency accepts: still a 400.
    try {
      return await request.json();
    } catch (error) {
      throw new HttpError(400, "invalid_request", `the body is not valid JSON: ${(error as Error).message}`);
    }
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        // The client went away or broke the framing mid-body: its request fails, as a cut body with Content-Length does.
        throw new HttpError(400, "invalid_request", `the body could not be read: ${(error as Error).message}`);
      }
      const { done, value } = chunk;
      if (done) break;
      size += value.byteLength;
      if (size > bodyBytesMax) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  if (size === 0 && emptyBody !== undefined) return emptyBody;
  return parseJson(bytes);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(utf8.decode(bytes));
  } catch (error) {
    throw new HttpError(400, "invalid_request", `the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Submit one command; rewrite core paths (`commands[0].amount`) to the body's (`amount`). */
async function submitOne(gateway: Gateway, command: Command): Promise<Result> {
  try {
    const [result] = await gateway.submit([command]);
    return result;
  } catch (error) {
    if (error instanceof InvalidCommandError) {
      const path = error.path.replace(/^commands\[0\]\.?/, "");
      throw new HttpError(400, "invalid_request", error.message, path === "" ? undefined : path);
    }
    throw error;
  }
}

/** A single command's reply: the result, with the status of its code. */
function resultResponse(result: Result): Response {
  return json(RESULT_STATUS[result.code], result);
}

/** The account as the API shows it (a fixed set of fields, whatever else the core's object carries). */
function accountBody(account: Account): Account {
  const { partnerId, accountId, currency, balance, held, available, overdraftLimit, status, seq } = account;
  return { partnerId, accountId, currency, balance, held, available, overdraftLimit, status, seq };
}

/** Build the app. Every /v1 route authenticates first, then validates, then authorizes, then calls the gateway. */
export function createHttpApp(options: HttpAppOptions) {
  const { gateway, keys } = options;
  const bodyBytesMax = options.bodyBytesMax ?? BODY_BYTES_MAX_DEFAULT;
  const log = options.log ?? ((line: string, error: unknown) => console.error(line, error));
  const outputs: OutputsView = options.outputs ?? { status: () => [], history: null };
  if (!Number.isSafeInteger(bodyBytesMax) || bodyBytesMax < 1) throw new RangeError(`bodyBytesMax must be a positive integer, got ${bodyBytesMax}`);

  /** Run a route; every exception becomes a response in `errorResponse`. */
  const guarded = (route: (request: Request, params: Record<string, string>) => Promise<Response>) =>
    async ({ request, params }: { request: Request; params: Record<string, string> }): Promise<Response> => {
      try {
        return await route(request, params);
      } catch (error) {
        return errorResponse(error, log);
      }
    };
  const raw = { parse: "none" } as const;

  // Elysia listens with SO_REUSEPORT by default: a second gateway on the same port would not fail, the kernel would
  // split the requests between two ledgers. Listening exclusively makes it fail at start instead.
  const app = new Elysia({ serve: { reusePort: false } })
    .onError(({ code, error }) => {
      if (code === "NOT_FOUND") return json(404, { error: { code: "not_found", message: "no such route" } });
      return errorResponse(error, log);
    })
    .get("/healthz", () => json(200, { ok: true }))
    .get("/readyz", () => (gateway.ready() ? json(200, { ok: true }) : json(503, { ok: false })))
    .get("/metrics", async () =>
      new Response(prometheusText(await gateway.metrics(), outputs.status()), { headers: { "content-type": "text/plain; version=0.0.4" } }))
    .get(
      "/v1/outputs",
      guarded(async (request) => {
        requireInternal(authenticate(request, keys));
        return json(200, { sinks: outputs.status() });
      }),
    )
    .get(
      "/v1/accounts/:partnerId/:accountId/entries",
      guarded(async (request, params) => {
        authorizePath(request, keys, params, "accountId");
        const query = new URL(request.url).searchParams;
        const after = queryInteger(query, "after", 0, Number.MAX_SAFE_INTEGER, 0);
        const limit = queryInteger(query, "limit", 1, HISTORY_PAGE_MAX, HISTORY_PAGE_DEFAULT);
        if (outputs.history === null) throw new HttpError(501, "history_unavailable", "no history projection is configured");
        if ((await gateway.account(params.partnerId, params.accountId)) === undefined) {
          throw new HttpError(404, "account_not_found", "no such account");
        }
        return json(200, await outputs.history.entries(params.partnerId, params.accountId, { after, limit }));
      }),
    )
    .post(
      "/v1/commands",
      guarded(async (request) => {
        const principal = authenticate(request, keys);
        const { commands, atomic, mode } = checkCommandsBody(await readJson(request, bodyBytesMax));
        for (let index = 0; index < commands.length; index++) {
          const command = commands[index];
          if (!mayActOn(principal, command.partnerId)) authorize(principal, command.partnerId, `commands[${index}].partnerId`);
          if (ADMIN_COMMAND_TYPES.has(command.type)) requireInternal(principal);
        }
        if (mode === "async") {
          // Durable, not yet applied: the results are read later with GET /v1/commands/:partnerId/:id.
          await gateway.submit(commands, { atomic, mode });
          return json(202, { accepted: commands.length, ids: commands.map((command) => command.id ?? "") });
        }
        return json(200, { results: await gateway.submit(commands, { atomic }) });
      }),
      raw,
    )
    .post(
      "/v1/accounts",
      guarded(async (request) => {
        const principal = authenticate(request, keys);
        const body = checkShape(await readJson(request, bodyBytesMax), OPEN_ACCOUNT_SHAPE, "");
        authorize(principal, body.partnerId as string, "partnerId");
        return openAccount(gateway, body);
      }),
      raw,
    )
    .get(
      "/v1/accounts/:partnerId/:accountId",
      guarded(async (request, params) => {
        authorizePath(request, keys, params, "accountId");
        const account = await gateway.account(params.partnerId, params.accountId);
        if (account === undefined) throw new HttpError(404, "account_not_found", "no such account");
        return json(200, accountBody(account));
      }),
    )
    .get(
      "/v1/commands/:partnerId/:id",
      guarded(async (request, params) => {
        authorizePath(request, keys, params, "id");
        const result = await gateway.storedResult(params.partnerId, params.id);
        if (result === undefined) throw new HttpError(404, "command_not_found", "no stored result for this id");
        return json(200, result);
      }),
    );

  for (const [path, type] of Object.entries(SHORTCUTS)) {
    app.post(
      path,
      guarded(async (request) => {
        const principal = authenticate(request, keys);
        const body = checkShape(await readJson(request, bodyBytesMax), COMMAND_SHAPES[type], "");
        authorize(principal, body.partnerId as string, "partnerId");
        return resultResponse(await submitOne(gateway, { ...body, type } as Command));
      }),
      raw,
    );
  }

  for (const [suffix, type] of Object.entries(ADMIN_ROUTES)) {
    const bodyShape = adminBodyShape(type);
    app.post(
      `/v1/accounts/:partnerId/:accountId/${suffix}`,
      guarded(async (request, params) => {
        const principal = authenticate(request, keys);
        requireInternal(principal);
        checkField(params.partnerId, "identifier", "partnerId");
        checkField(params.accountId, "identifier", "accountId");
        // freeze, unfreeze and close need no body at all.
        const body = checkShape(await readJson(request, bodyBytesMax, {}), bodyShape, "");
        const id = (body.id as string | undefined) ?? serverCommandId();
        const command = { ...body, type, id, partnerId: params.partnerId, accountId: params.accountId } as Command;
        return resultResponse(await submitOne(gateway, command));
      }),
      raw,
    );
  }
  app.use(openApiRoutes({ shortcuts: SHORTCUTS, adminRoutes: ADMIN_ROUTES, openAccountShape: OPEN_ACCOUNT_SHAPE, resultStatus: RESULT_STATUS }));
  return app;
}

/**
 * The id of a command a route makes on the caller's behalf (`POST /v1/accounts` and the admin routes, when the body
 * has no `id`): random, so it never meets an id of the caller's own (a generated `open:<accountId>` did, and
 * outgrew 64 characters with long account ids). Retries are then answered by the account's state, not the window:
 * an open of an account that exists with the same values is a 200, freeze and unfreeze are idempotent, and a
 * caller who needs a retry answered exactly (a close, a limit change) passes its own `id`.
 */
function serverCommandId(): string {
  return `api-${crypto.randomUUID()}`;
}

/**
 * `POST /v1/accounts`: 201 with the new account; 200 with the account when it already exists with the same currency
 * and limit (a retry of the same open; with the caller's own `id`, answered from the idempotency window); 409 when
 * it exists with other values.
 */
async function openAccount(gateway: Gateway, body: Record<string, unknown>): Promise<Response> {
  const partnerId = body.partnerId as string;
  const accountId = body.accountId as string;
  const id = (body.id as string | undefined) ?? serverCommandId();
  const command: Command = { ...body, type: "openAccount", id, partnerId, accountId, currency: body.currency as string };
  const result = await submitOne(gateway, command);
  if (result.code !== "ok" && result.code !== "account_exists") return resultResponse(result);
  const account = await gateway.account(partnerId, accountId);
  if (account === undefined) throw new Error(`account ${partnerId}/${accountId} missing after open (${result.code})`);
  if (result.code === "ok" && result.duplicate !== true) return json(201, accountBody(account));
  if (account.currency === body.currency && account.overdraftLimit === ((body.overdraftLimit as number | undefined) ?? 0)) {
    return json(200, accountBody(account));
  }
  throw new HttpError(409, "account_exists", "the account exists with another currency or overdraft limit");
}

/** A query parameter that must be a decimal integer in [min, max]; `fallback` when absent. */
function queryInteger(query: URLSearchParams, name: string, min: number, max: number, fallback: number): number {
  const text = query.get(name);
  if (text === null) return fallback;
  const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) throw new HttpError(400, "invalid_request", `must be an integer in ${min}..${max}`, name);
  return value;
}

/** The shards' counters and the output sinks' progress in the Prometheus text format. */
export function prometheusText(shards: readonly ShardMetrics[], sinks: readonly SinkStatus[] = []): string {
  const lines: string[] = [];
  const family = (name: string, type: "counter" | "gauge" | "histogram", help: string, rows: (shard: ShardMetrics, index: number) => string[]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    shards.forEach((shard, index) => lines.push(...rows(shard, index)));
  };
  family("hotledger_results_total", "counter", "Results released to callers, by shard and result code.", (shard, index) =>
    RESULT_CODES.map((code, number) => `hotledger_results_total{shard="${index}",code="${code}"} ${shard.resultsByCode[number]}`),
  );
  family("hotledger_journal_records_total", "counter", "Journal records written (group commits).", (shard, index) => [
    `hotledger_journal_records_total{shard="${index}"} ${shard.records}`,
  ]);
  family("hotledger_journal_record_commands_total", "counter", "Commands in those records (divide by records for the batch size).", (shard, index) => [
    `hotledger_journal_record_commands_total{shard="${index}"} ${shard.recordCommands}`,
  ]);
  family("hotledger_journal_commit_milliseconds", "histogram", "Time from starting a record's write to its being durable.", (shard, index) => {
    const rows: string[] = [];
    let cumulative = 0;
    limits.COMMIT_MS_BUCKETS.forEach((bound, bucket) => {
      cumulative += shard.commitMsBuckets[bucket];
      rows.push(`hotledger_journal_commit_milliseconds_bucket{shard="${index}",le="${bound}"} ${cumulative}`);
    });
    rows.push(
      `hotledger_journal_commit_milliseconds_bucket{shard="${index}",le="+Inf"} ${shard.records}`,
      `hotledger_journal_commit_milliseconds_sum{shard="${index}"} ${shard.commitMsSum}`,
      `hotledger_journal_commit_milliseconds_count{shard="${index}"} ${shard.records}`,
    );
    return rows;
  });
  family("hotledger_ring_occupancy", "gauge", "Commands sequenced but not yet released.", (shard, index) => [
    `hotledger_ring_occupancy{shard="${index}"} ${shard.ringOccupancy}`,
  ]);
  family("hotledger_last_sequence", "gauge", "The last sequence given to a command (output lag is measured against it).", (shard, index) => [
    `hotledger_last_sequence{shard="${index}"} ${shard.lastSequenced}`,
  ]);
  family("hotledger_last_applied", "gauge", "The last sequence the shard's processor applied (ahead of the journal while a record is written).", (shard, index) => [
    `hotledger_last_applied{shard="${index}"} ${shard.lastApplied}`,
  ]);
  family("hotledger_ring_slots", "gauge", "Size of the shard's ring.", (shard, index) => [`hotledger_ring_slots{shard="${index}"} ${shard.ringSlots}`]);
  const sinkFamily = (name: string, type: "counter" | "gauge", help: string, value: (sink: SinkStatus) => number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const sink of sinks) lines.push(`${name}{shard="${sink.shard}",sink="${labelValue(sink.name)}"} ${value(sink)}`);
  };
  sinkFamily("hotledger_output_cursor", "gauge", "The last sequence an output sink has delivered.", (sink) => sink.cursor);
  sinkFamily("hotledger_output_lag_events", "gauge", "Journaled commands an output sink has not delivered yet.", (sink) => sink.lagEvents);
  sinkFamily("hotledger_output_delivered_total", "counter", "Events delivered to an output sink (resends included).", (sink) => sink.delivered);
  sinkFamily("hotledger_output_failures_total", "counter", "Failed deliveries to an output sink (each retried).", (sink) => sink.failures);
  return `${lines.join("\n")}\n`;
}

/**
 * A label value as the text format wants it: backslash, double quote and newline escaped. A sink's name is any
 * string its author chose; unescaped, a quote in it ended the value early and a newline cut the sample in two.
 */
function labelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (character) => (character === "\n" ? "\\n" : `\\${character}`));
}
