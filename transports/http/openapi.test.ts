// Proves GET /openapi describes the app that serves it and cannot drift from the validator: the document is fetched
// from a real server (over a stub gateway that answers every command ok: only the transport is under test), every documented path and method is requested and
// must not be the router's 404, every command type appears with exactly COMMAND_SHAPES' fields, and each documented
// request body is checked against the live validator: dropping a required field or adding an unknown one is a 400
// naming that field, a body holding every documented field is never refused as unknown or incomplete, and a body is
// documented as required exactly where leaving it out is refused.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { COMMAND_TYPES, type Command, type Result } from "../../core/index.ts";
import { hashKey, KeyRing } from "../auth.ts";
import type { Gateway } from "../gateway.ts";
import { createHttpApp } from "./index.ts";
import { commandSchemaName } from "./openapi.ts";
import { COMMAND_SHAPES } from "./validate.ts";

const PARTNER = "partner-a";
const KEY = "key-internal";
const keyRing = new KeyRing([{ sha256: hashKey(KEY), internal: "ops" }]);

type Schema = { type?: string; properties?: Record<string, Schema>; required?: string[]; additionalProperties?: boolean; $ref?: string } & Record<string, unknown>;
type Document = {
  openapi: string;
  paths: Record<string, Record<string, { requestBody?: { required?: boolean; content: { "application/json": { schema: Schema } } }; responses: Record<string, unknown>; security: unknown[] }>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, unknown> };
};

/** A gateway that accepts every command as ok and knows no account: the validator runs before it, so it is enough. */
const okGateway = {
  submit: async (commands: readonly Command[]): Promise<Result[]> => commands.map((command) => ({ id: command.id ?? "", status: "ok", code: "ok", seq: 1 })),
  account: async () => undefined,
  storedResult: async () => undefined,
  ready: () => true,
  metrics: async () => [],
} as unknown as Gateway;

async function withServer(run: (base: string) => Promise<void>): Promise<void> {
  const app = createHttpApp({ gateway: okGateway, keys: keyRing, log: () => {} }).listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await run(`http://127.0.0.1:${app.server?.port}`);
  } finally {
    await app.stop();
  }
}

async function fetchDocument(base: string): Promise<Document> {
  const response = await fetch(`${base}/openapi`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  return (await response.json()) as Document;
}

/** A concrete path for a documented one: `{partnerId}` -> the test partner, other parameters -> `x1`. */
function concretePath(path: string): string {
  return path.replace("{partnerId}", PARTNER).replace(/\{[^}]+\}/g, "x1");
}

/** A value that satisfies a field's schema. */
function sampleValue(name: string, schema: Schema): unknown {
  if (name === "type" && typeof schema.const === "string") return schema.const;
  if (name === "partnerId") return PARTNER;
  if (schema.type === "integer") return Math.max(1, Number(schema.minimum ?? 1));
  if (schema.type === "boolean") return false;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (String(schema.pattern).includes("A-Z0-9]{")) return "EUR";
  return `s-${name}`;
}

/** A body holding every property of a flat object schema (required and optional). */
function sampleBody(schema: Schema): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [name, property] of Object.entries(schema.properties ?? {})) body[name] = sampleValue(name, property);
  return body;
}

async function post(base: string, path: string, body: unknown) {
  const response = await fetch(base + path, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string; path?: string } } };
}

describe("GET /openapi", () => {
  test("is an OpenAPI 3.1 document with bearer auth, the shared schemas and every route the app serves", async () => {
    await withServer(async (base) => {
      const document = await fetchDocument(base);
      assert.equal(document.openapi, "3.1.0");
      assert.deepEqual(document.components.securitySchemes.bearer, { type: "http", scheme: "bearer", description: "a partner key or an internal key" });
      for (const name of ["Result", "Account", "Error"]) assert.ok(document.components.schemas[name], name);
      assert.deepEqual(document.components.schemas.Error.required, ["error"]);
      const documented = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));
      for (const route of ["GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/commands", "POST /v1/credit", "POST /v1/accounts/{partnerId}/{accountId}/overdraft-limit"]) {
        assert.ok(documented.includes(route), route);
      }
      for (const [path, methods] of Object.entries(document.paths)) {
        for (const [method, operation] of Object.entries(methods)) {
          const response = await fetch(base + concretePath(path), { method: method.toUpperCase(), headers: { authorization: `Bearer ${KEY}` } });
          const text = await response.text();
          assert.ok(!(response.status === 404 && text.includes('"not_found"')), `${method} ${path} is documented but not routed`);
          assert.equal(operation.security.length > 0, path.startsWith("/v1/"), `${method} ${path}: bearer auth on /v1 only`);
          if (path.startsWith("/v1/")) {
            const anonymous = await fetch(base + concretePath(path), { method: method.toUpperCase() });
            assert.equal(anonymous.status, 401, `${method} ${path} without a key`);
            assert.ok(operation.responses["401"], `${method} ${path} documents 401`);
          }
        }
      }
    });
  });

  test("every command type appears with exactly the fields COMMAND_SHAPES requires and allows", async () => {
    await withServer(async (base) => {
      const document = await fetchDocument(base);
      const types = COMMAND_TYPES.filter((type) => type !== "unspecified");
      assert.deepEqual(Object.keys(COMMAND_SHAPES).sort(), [...types].sort());
      for (const [type, shape] of Object.entries(COMMAND_SHAPES)) {
        const schema = document.components.schemas[commandSchemaName(type)];
        assert.ok(schema, type);
        assert.deepEqual(new Set(schema.required), new Set(["type", ...Object.keys(shape.required)]), type);
        assert.deepEqual(new Set(Object.keys(schema.properties ?? {})), new Set(["type", ...Object.keys(shape.required), ...Object.keys(shape.optional)]), type);
        assert.equal(schema.additionalProperties, false);
      }
      const credit = document.paths["/v1/credit"].post.requestBody?.content["application/json"].schema;
      assert.deepEqual(credit?.required, ["id", "partnerId", "accountId", "amount"]);
      assert.deepEqual(credit?.properties?.amount, { type: "integer", minimum: 1, maximum: 9007199254740991, description: "minor units" });
      assert.equal(credit?.properties?.id.pattern, "^[A-Za-z0-9._:-]{1,64}$");
      assert.equal(credit?.properties?.currency.pattern, "^[A-Z0-9]{3,12}$");
    });
  });

  test("each documented request body matches the live validator: required fields, unknown fields, optional fields", async () => {
    await withServer(async (base) => {
      const document = await fetchDocument(base);
      let bodies = 0;
      for (const [path, methods] of Object.entries(document.paths)) {
        const schema = methods.post?.requestBody?.content["application/json"].schema;
        if (schema === undefined || path === "/v1/commands") continue;
        bodies++;
        const full = sampleBody(schema);
        const accepted = await post(base, concretePath(path), full);
        assert.ok(!(accepted.status === 400 && /unknown field|is required/.test(accepted.body.error?.message ?? "")), `${path}: ${JSON.stringify(accepted.body)}`);
        for (const field of schema.required ?? []) {
          const { [field]: _dropped, ...partial } = full;
          const refused = await post(base, concretePath(path), partial);
          assert.equal(refused.status, 400, `${path} without ${field}`);
          assert.equal(refused.body.error?.path, field, `${path} without ${field}`);
        }
        const extra = await post(base, concretePath(path), { ...full, undocumented: 1 });
        assert.equal(extra.status, 400);
        assert.equal(extra.body.error?.path, "undocumented");
      }
      assert.ok(bodies >= 12, `bodies checked: ${bodies}`);

      const commands = document.paths["/v1/commands"].post.requestBody?.content["application/json"].schema as Schema;
      const envelope: Record<string, unknown> = { ...sampleBody({ properties: { ...commands.properties, commands: {} } }), commands: [] };
      for (const type of Object.keys(COMMAND_SHAPES)) {
        envelope.commands = [sampleBody(document.components.schemas[commandSchemaName(type)])];
        const reply = await post(base, "/v1/commands", envelope);
        assert.ok(!(reply.status === 400 && /unknown field|is required/.test(reply.body.error?.message ?? "")), `${type}: ${JSON.stringify(reply.body)}`);
      }
      assert.equal((await post(base, "/v1/commands", { ...envelope, undocumented: 1 })).body.error?.path, "undocumented");
    });
  });

  test("a request body the document marks required cannot be left out; one it marks optional can", async () => {
    await withServer(async (base) => {
      const document = await fetchDocument(base);
      const optional: string[] = [];
      for (const [path, methods] of Object.entries(document.paths)) {
        const requestBody = methods.post?.requestBody;
        if (requestBody === undefined) continue;
        const response = await fetch(base + concretePath(path), { method: "POST", headers: { authorization: `Bearer ${KEY}` } });
        const text = await response.text();
        if (requestBody.required === true) {
          assert.equal(response.status, 400, `${path}: the body is documented as required: ${text}`);
        } else {
          assert.equal(response.status, 200, `${path}: the body is documented as optional: ${text}`);
          optional.push(path);
        }
      }
      assert.equal(optional.length, 3, `freeze, unfreeze and close take no body: ${optional}`);
    });
  });

  test("the HTML page is served with text/html, self-contained, and names every path", async () => {
    await withServer(async (base) => {
      const document = await fetchDocument(base);
      for (const request of [fetch(`${base}/openapi/ui`), fetch(`${base}/openapi`, { headers: { accept: "text/html,application/xhtml+xml" } })]) {
        const response = await request;
        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
        const html = await response.text();
        assert.doesNotMatch(html, /<script[^>]*src=|<link[^>]*href=|https?:\/\//, "no external resources");
        for (const path of Object.keys(document.paths)) assert.ok(html.includes(`<code>${path}</code>`), path);
        assert.ok(html.includes("insufficient_funds"));
      }
    });
  });
});
