/**
 * The OpenAPI 3.1 document of the HTTP API and a browsable HTML page of it, served at `GET /openapi` (JSON, or HTML
 * under `Accept: text/html`) and `GET /openapi/ui`. The document is generated, never written by hand: request bodies
 * come from the shape tables the validator checks (`COMMAND_SHAPES`, and the route tables `createHttpApp` passes in),
 * response statuses from `RESULT_STATUS`, so adding a field to a shape adds it to the document. The page is rendered
 * on the server from the document: no script, no CDN, nothing fetched.
 */
import { Elysia } from "elysia";
import { ACCOUNT_STATUSES, RESULT_CODES, type CommandType, type ResultCode } from "../../core/index.ts";
import { CURRENCY_BYTES_MAX, CURRENCY_BYTES_MIN, GROUP_COMMANDS_MAX, HOLD_EXPIRY_MS_MAX, KEY_BYTES_MAX } from "../../core/limits.ts";
import { HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX } from "../gateway.ts";
import { adminBodyShape, COMMAND_SHAPES, CURRENCY_PATTERN, IDENTIFIER_PATTERN, type FieldKind, type Shape } from "./validate.ts";

/** The route tables of `createHttpApp`, passed in so the document describes exactly the routes it registers. */
export interface HttpRouteTables {
  /** Shortcut path (`/v1/credit`) -> command type; the body is that command's shape. */
  shortcuts: Readonly<Record<string, CommandType>>;
  /** Admin suffix under `/v1/accounts/:partnerId/:accountId/` -> command type; partnerId/accountId come from the path. */
  adminRoutes: Readonly<Record<string, CommandType>>;
  /** The body of `POST /v1/accounts`. */
  openAccountShape: Shape;
  /** Result code -> HTTP status of single-command routes. */
  resultStatus: Readonly<Record<ResultCode, number>>;
}

type JsonSchema = Record<string, unknown>;
type Responses = Record<string, { description: string; content?: Record<string, { schema: JsonSchema }>; headers?: Record<string, unknown> }>;

/** One route of the document: what `createHttpApp` registers, in OpenAPI's words. */
interface Operation {
  method: "get" | "post";
  /** OpenAPI form: `{partnerId}`, not `:partnerId`. */
  path: string;
  summary: string;
  /** True when `Authorization: Bearer <key>` is required. */
  auth: boolean;
  pathParameters: readonly string[];
  /** Optional query parameters and their schemas. */
  queryParameters?: Readonly<Record<string, JsonSchema>>;
  body: JsonSchema | undefined;
  /** False when the body may be left out (an admin route whose body requires no field). Default true. */
  bodyRequired?: boolean;
  responses: Responses;
}

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: JsonSchema) => ({ "application/json": { schema } });

/** The JSON Schema of one field kind, with the same bounds `checkField` enforces. */
export function fieldSchema(kind: FieldKind): JsonSchema {
  switch (kind) {
    case "identifier":
      return { type: "string", pattern: IDENTIFIER_PATTERN.source.replace(/\+\$$/, `{1,${KEY_BYTES_MAX}}$`) };
    case "currency":
      return { type: "string", pattern: CURRENCY_PATTERN.source.replace(/\+\$$/, `{${CURRENCY_BYTES_MIN},${CURRENCY_BYTES_MAX}}$`) };
    case "amount":
      return { type: "integer", minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: "minor units" };
    case "limit":
      return { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: "minor units" };
    case "duration":
      return { type: "integer", minimum: 1, maximum: HOLD_EXPIRY_MS_MAX, description: "milliseconds" };
  }
}

/** The JSON Schema of a body shape: exactly its fields, the required ones required, nothing else allowed. */
export function shapeSchema(shape: Shape, extra: Record<string, JsonSchema> = {}): JsonSchema {
  const properties: Record<string, JsonSchema> = { ...extra };
  for (const [name, kind] of Object.entries(shape.required)) properties[name] = fieldSchema(kind);
  for (const [name, kind] of Object.entries(shape.optional)) properties[name] = fieldSchema(kind);
  return { type: "object", properties, required: [...Object.keys(extra), ...Object.keys(shape.required)], additionalProperties: false };
}

const RETRY_AFTER = { "Retry-After": { description: "seconds to wait before retrying", schema: { type: "integer", minimum: 1 } } };

/** Statuses the transport answers itself (`errorResponse` and the checks before the gateway), by status. */
function errorResponses(operation: { auth: boolean; body: boolean; params: boolean }): Responses {
  const error = jsonContent(ref("Error"));
  const responses: Responses = {};
  if (operation.body || operation.params) {
    responses["400"] = { description: "invalid_request: bad JSON, unknown field, wrong type or range; `path` names the field", content: error };
  }
  if (operation.auth) {
    responses["401"] = { description: "unauthorized: no known bearer key", content: error };
    responses["403"] = { description: "forbidden: the key may not act on this partner (or an admin route without an internal key)", content: error };
  }
  if (operation.body) responses["413"] = { description: "payload_too_large: the body is over the limit (1 MiB by default)", content: error };
  if (operation.auth) {
    responses["503"] = { description: "overloaded or unavailable: retry later", content: error, headers: RETRY_AFTER };
    responses["500"] = { description: "internal: an unexpected error (logged, details withheld)", content: error };
  }
  return responses;
}

/** The statuses of a single command's result, grouped from `RESULT_STATUS`: one entry per status naming its codes. */
function resultResponses(resultStatus: HttpRouteTables["resultStatus"], except: readonly ResultCode[] = []): Responses {
  const codesByStatus = new Map<number, string[]>();
  for (const code of RESULT_CODES) {
    if (except.includes(code)) continue;
    const status = resultStatus[code];
    codesByStatus.set(status, [...(codesByStatus.get(status) ?? []), code]);
  }
  const responses: Responses = {};
  for (const [status, codes] of [...codesByStatus].sort((left, right) => left[0] - right[0])) {
    responses[String(status)] = { description: `Result with code ${codes.join(", ")}`, content: jsonContent(ref("Result")) };
  }
  return responses;
}

/** Merge `extra` into `base`; where both describe a status, the descriptions join and the bodies become `oneOf`. */
function mergeResponses(base: Responses, extra: Responses): Responses {
  const merged: Responses = { ...base };
  for (const [status, response] of Object.entries(extra)) {
    const old = merged[status];
    if (old === undefined) {
      merged[status] = response;
      continue;
    }
    const schemas = [old.content?.["application/json"]?.schema, response.content?.["application/json"]?.schema].filter((schema) => schema !== undefined);
    merged[status] = {
      description: `${old.description}; or ${response.description}`,
      content: jsonContent(schemas.length === 1 ? schemas[0] : { oneOf: schemas }),
      ...(old.headers ?? response.headers ? { headers: { ...old.headers, ...response.headers } } : {}),
    };
  }
  return merged;
}

/** Every route `createHttpApp` registers, in registration order. */
export function httpOperations(tables: HttpRouteTables): Operation[] {
  const ok = (schema: JsonSchema, description: string): Responses => ({ "200": { description, content: jsonContent(schema) } });
  const accountParams = ["partnerId", "accountId"] as const;
  const operations: Operation[] = [
    { method: "get", path: "/healthz", summary: "Liveness", auth: false, pathParameters: [], body: undefined, responses: ok(ref("Ok"), "alive") },
    {
      method: "get",
      path: "/readyz",
      summary: "Readiness: 503 until every shard is accepting",
      auth: false,
      pathParameters: [],
      body: undefined,
      responses: { ...ok(ref("Ok"), "every shard is accepting"), "503": { description: "not ready", content: jsonContent(ref("Ok")) } },
    },
    {
      method: "get",
      path: "/metrics",
      summary: "Prometheus text: results by shard and code, journal records, commit time, ring occupancy",
      auth: false,
      pathParameters: [],
      body: undefined,
      responses: {
        "200": { description: "Prometheus text format 0.0.4", content: { "text/plain": { schema: { type: "string" } } } },
        "503": { description: "unavailable: the shards are recovering (or a shard's worker stopped)", content: jsonContent(ref("Error")), headers: RETRY_AFTER },
      },
    },
    {
      method: "post",
      path: "/v1/commands",
      summary: "Submit 1..1000 commands; rejections are per-item results",
      auth: true,
      pathParameters: [],
      body: commandsBodySchema(),
      responses: mergeResponses(
        {
          ...ok({ type: "object", properties: { results: { type: "array", items: ref("Result") } }, required: ["results"] }, "results in request order"),
          "202": {
            description: "mode async: durable, not yet applied; read results with GET /v1/commands/{partnerId}/{id}",
            content: jsonContent({
              type: "object",
              properties: { accepted: { type: "integer", minimum: 1 }, ids: { type: "array", items: { type: "string" } } },
              required: ["accepted", "ids"],
            }),
          },
        },
        errorResponses({ auth: true, body: true, params: false }),
      ),
    },
    {
      method: "post",
      path: "/v1/accounts",
      summary: "Open an account (idempotent: 200 when an identical one exists)",
      auth: true,
      pathParameters: [],
      body: shapeSchema(tables.openAccountShape),
      responses: mergeResponses(
        mergeResponses(
          {
            "200": { description: "an identical account exists", content: jsonContent(ref("Account")) },
            "201": { description: "the new account", content: jsonContent(ref("Account")) },
          },
          // ok and account_exists are answered with the account or the 409 below, not with the result.
          resultResponses(tables.resultStatus, ["ok", "account_exists"]),
        ),
        mergeResponses(
          { "409": { description: "account_exists with another currency or overdraft limit", content: jsonContent(ref("Error")) } },
          errorResponses({ auth: true, body: true, params: false }),
        ),
      ),
    },
    {
      method: "get",
      path: "/v1/accounts/{partnerId}/{accountId}",
      summary: "Read an account",
      auth: true,
      pathParameters: accountParams,
      body: undefined,
      responses: mergeResponses(
        { ...ok(ref("Account"), "the account"), "404": { description: "account_not_found", content: jsonContent(ref("Error")) } },
        errorResponses({ auth: true, body: false, params: true }),
      ),
    },
    {
      method: "get",
      path: "/v1/commands/{partnerId}/{id}",
      summary: "The stored result of a command while in the idempotency window",
      auth: true,
      pathParameters: ["partnerId", "id"],
      body: undefined,
      responses: mergeResponses(
        { ...ok(ref("Result"), "the stored result"), "404": { description: "command_not_found", content: jsonContent(ref("Error")) } },
        errorResponses({ auth: true, body: false, params: true }),
      ),
    },
    {
      method: "get",
      path: "/v1/accounts/{partnerId}/{accountId}/entries",
      summary: "The account's ledger entries from the history projection, oldest first (keyset pages by seq)",
      auth: true,
      pathParameters: accountParams,
      queryParameters: {
        after: { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0, description: "the `next` of the previous page" },
        limit: { type: "integer", minimum: 1, maximum: HISTORY_PAGE_MAX, default: HISTORY_PAGE_DEFAULT },
      },
      body: undefined,
      responses: mergeResponses(
        {
          ...ok(
            {
              type: "object",
              properties: { entries: { type: "array", items: ref("Entry") }, next: { type: ["integer", "null"], description: "null on the last page" } },
              required: ["entries", "next"],
            },
            "one page; the projection may lag the ledger by the sink's lag (GET /v1/outputs)",
          ),
          "404": { description: "account_not_found", content: jsonContent(ref("Error")) },
          "501": { description: "history_unavailable: no projection is configured", content: jsonContent(ref("Error")) },
        },
        errorResponses({ auth: true, body: false, params: true }),
      ),
    },
    {
      method: "get",
      path: "/v1/outputs",
      summary: "Output sinks' progress per shard: cursor, lag, deliveries, failures (internal key only)",
      auth: true,
      pathParameters: [],
      body: undefined,
      responses: mergeResponses(
        ok({ type: "object", properties: { sinks: { type: "array", items: ref("SinkStatus") } }, required: ["sinks"] }, "every sink of every shard"),
        errorResponses({ auth: true, body: false, params: false }),
      ),
    },
  ];
  for (const [path, type] of Object.entries(tables.shortcuts)) {
    operations.push({
      method: "post",
      path,
      summary: `One ${type} command (the body is the command without \`type\`)`,
      auth: true,
      pathParameters: [],
      body: shapeSchema(COMMAND_SHAPES[type]),
      responses: mergeResponses(resultResponses(tables.resultStatus), errorResponses({ auth: true, body: true, params: false })),
    });
  }
  for (const [suffix, type] of Object.entries(tables.adminRoutes)) {
    const bodyShape = adminBodyShape(type);
    operations.push({
      method: "post",
      path: `/v1/accounts/{partnerId}/{accountId}/${suffix}`,
      summary: `${type} (internal key only)`,
      auth: true,
      pathParameters: accountParams,
      body: shapeSchema(bodyShape),
      // An admin route reads an empty body as {} (freeze, unfreeze and close need none).
      bodyRequired: Object.keys(bodyShape.required).length > 0,
      responses: mergeResponses(resultResponses(tables.resultStatus), errorResponses({ auth: true, body: true, params: true })),
    });
  }
  return operations;
}

/** The body of `POST /v1/commands`: a list of commands, each `type` plus that type's shape. */
function commandsBodySchema(): JsonSchema {
  return {
    type: "object",
    properties: {
      commands: { type: "array", minItems: 1, maxItems: GROUP_COMMANDS_MAX, items: { oneOf: Object.keys(COMMAND_SHAPES).map((type) => ref(commandSchemaName(type))) } },
      atomic: { type: "boolean", description: "all or nothing; one partner, no check, distinct ids" },
      mode: { type: "string", enum: ["sync", "async"], description: "async: answer 202 once durable, before applying" },
    },
    required: ["commands"],
    additionalProperties: false,
  };
}

/** `Command.credit` and so on: the component name of one command type's schema. */
export function commandSchemaName(type: string): string {
  return `Command.${type}`;
}

function componentSchemas(): Record<string, JsonSchema> {
  const integer = { type: "integer", minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER };
  const schemas: Record<string, JsonSchema> = {
    Ok: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
    Result: {
      type: "object",
      properties: {
        id: { type: "string", description: 'the command id ("" for a check without one)' },
        status: { type: "string", enum: ["ok", "rejected"] },
        code: { type: "string", enum: [...RESULT_CODES] },
        seq: { type: "integer", minimum: 0 },
        balance: integer,
        held: integer,
        available: integer,
        duplicate: { type: "boolean", description: "the stored result of an earlier command with the same id" },
      },
      required: ["id", "status", "code", "seq"],
    },
    Account: {
      type: "object",
      properties: {
        partnerId: fieldSchema("identifier"),
        accountId: fieldSchema("identifier"),
        currency: fieldSchema("currency"),
        balance: integer,
        held: integer,
        available: integer,
        overdraftLimit: fieldSchema("limit"),
        status: { type: "string", enum: [...ACCOUNT_STATUSES] },
        seq: { type: "integer", minimum: 0 },
      },
      required: ["partnerId", "accountId", "currency", "balance", "held", "available", "overdraftLimit", "status", "seq"],
      additionalProperties: false,
    },
    Entry: {
      type: "object",
      description: "a ledger entry: one balance change of one account (a transfer makes two, one per side)",
      properties: {
        seq: { type: "integer", minimum: 1, description: "the command's sequence on its shard" },
        eventId: { type: "string" },
        commandId: { type: "string" },
        type: { type: "string" },
        amount: { ...integer, description: "signed: credit positive, debit negative" },
        balanceAfter: integer,
        timeMs: { type: "integer", minimum: 0 },
      },
      required: ["seq", "amount", "balanceAfter"],
    },
    SinkStatus: {
      type: "object",
      properties: {
        name: { type: "string" },
        shard: { type: "integer", minimum: 0 },
        cursor: { type: "integer", minimum: 0 },
        lagEvents: { type: "integer", minimum: 0 },
        delivered: { type: "integer", minimum: 0 },
        failures: { type: "integer", minimum: 0 },
        lastError: { type: ["string", "null"] },
      },
      required: ["name", "shard", "cursor", "lagEvents", "delivered", "failures", "lastError"],
    },
    Error: {
      type: "object",
      properties: {
        error: {
          type: "object",
          properties: { code: { type: "string" }, message: { type: "string" }, path: { type: "string", description: "the offending field" } },
          required: ["code", "message"],
        },
      },
      required: ["error"],
    },
  };
  for (const [type, shape] of Object.entries(COMMAND_SHAPES)) {
    schemas[commandSchemaName(type)] = shapeSchema(shape, { type: { const: type } });
  }
  return schemas;
}

/** The OpenAPI 3.1 document of the routes `createHttpApp` registers with these tables. */
export function openApiDocument(tables: HttpRouteTables): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of httpOperations(tables)) {
    const entry: Record<string, unknown> = {
      summary: operation.summary,
      operationId: `${operation.method} ${operation.path}`,
      security: operation.auth ? [{ bearer: [] }] : [],
      responses: operation.responses,
    };
    const parameters = [
      ...operation.pathParameters.map((name) => ({ name, in: "path", required: true, schema: fieldSchema("identifier") })),
      ...Object.entries(operation.queryParameters ?? {}).map(([name, schema]) => ({ name, in: "query", required: false, schema })),
    ];
    if (parameters.length > 0) entry.parameters = parameters;
    if (operation.body !== undefined) entry.requestBody = { required: operation.bodyRequired ?? true, content: jsonContent(operation.body) };
    paths[operation.path] = { ...paths[operation.path], [operation.method]: entry };
  }
  return {
    openapi: "3.1.0",
    info: { title: "hotledger HTTP API", version: "1", description: "Amounts are integer minor units (safe integers, never fractions)." },
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "a partner key or an internal key" } },
      schemas: componentSchemas(),
    },
  };
}

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => HTML_ESCAPES[character]);
}

/** `value` as indented JSON with every `$ref` replaced by the component it names (components hold no cycles). */
function inlineJson(value: unknown, schemas: Record<string, unknown>): string {
  return JSON.stringify(
    value,
    (_key, node) => {
      const name = typeof node === "object" && node !== null && typeof node.$ref === "string" ? node.$ref.replace("#/components/schemas/", "") : undefined;
      return name !== undefined && schemas[name] !== undefined ? schemas[name] : node;
    },
    2,
  );
}

/** A response's body as links to the schemas section: `Result`, `Account | Error`, or the media type when inline. */
function schemaLinks(content: Record<string, { schema: JsonSchema }>): string {
  return Object.entries(content)
    .map(([mediaType, { schema }]) => {
      const refs = (Array.isArray(schema.oneOf) ? (schema.oneOf as JsonSchema[]) : [schema]).map((one) => one.$ref);
      if (refs.some((name) => typeof name !== "string")) return `${escapeHtml(mediaType)}<pre>${escapeHtml(JSON.stringify(schema, null, 2))}</pre>`;
      return refs
        .map((name) => String(name).replace("#/components/schemas/", ""))
        .map((name) => `<a href="#${escapeHtml(`schema-${name}`)}">${escapeHtml(name)}</a>`)
        .join(" | ");
    })
    .join("<br>");
}

/** A self-contained HTML page of the document: one section per path and method, bodies and responses spelled out. */
export function openApiHtml(document: Record<string, unknown>): string {
  const paths = document.paths as Record<string, Record<string, Record<string, unknown>>>;
  const schemas = (document.components as { schemas: Record<string, unknown> }).schemas;
  const sections: string[] = [];
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const auth = (operation.security as unknown[]).length > 0 ? "Authorization: Bearer &lt;key&gt;" : "no auth";
      const body = operation.requestBody as { content: Record<string, { schema: unknown }> } | undefined;
      const rows = Object.entries(operation.responses as Responses).map(
        ([status, response]) =>
          `<tr><td>${status}</td><td>${escapeHtml(response.description)}</td><td>${schemaLinks(response.content ?? {})}</td></tr>`,
      );
      sections.push(
        `<section id="${escapeHtml(`${method}-${path}`)}"><h2><span class="method">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h2>` +
          `<p>${escapeHtml(String(operation.summary))} <em>(${auth})</em></p>` +
          (body === undefined ? "" : `<h3>Request body</h3><pre>${escapeHtml(inlineJson(body.content["application/json"].schema, schemas))}</pre>`) +
          `<h3>Responses</h3><table><tr><th>status</th><th>meaning</th><th>body</th></tr>${rows.join("")}</table></section>`,
      );
    }
  }
  const info = document.info as { title: string; description: string };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}section{border-top:1px solid #ccc}
.method{background:#333;color:#fff;padding:0 .4em;border-radius:3px}pre{background:#f5f5f5;padding:.5em;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;vertical-align:top;text-align:left}</style></head>
<body><h1>${escapeHtml(info.title)}</h1><p>${escapeHtml(info.description)} The JSON document is at <a href="/openapi">/openapi</a>.</p>
${sections.join("\n")}
<h2>Schemas</h2>
${Object.entries(schemas)
  .map(([name, schema]) => `<section id="${escapeHtml(`schema-${name}`)}"><h3>${escapeHtml(name)}</h3><pre>${escapeHtml(inlineJson(schema, schemas))}</pre></section>`)
  .join("\n")}
</body></html>
`;
}

/** Whether the request prefers HTML (a browser) to JSON. */
function wantsHtml(request: Request): boolean {
  const accept = request.headers.get("accept") ?? "";
  return accept.includes("text/html");
}

/** The routes `GET /openapi` (JSON; HTML under `Accept: text/html`) and `GET /openapi/ui` (HTML), as one plugin. */
export function openApiRoutes(tables: HttpRouteTables) {
  const document = openApiDocument(tables);
  const json = JSON.stringify(document);
  const html = openApiHtml(document);
  const htmlResponse = () => new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } });
  return new Elysia()
    .get("/openapi", ({ request }) => (wantsHtml(request) ? htmlResponse() : new Response(json, { headers: { "content-type": "application/json" } })))
    .get("/openapi/ui", htmlResponse);
}
