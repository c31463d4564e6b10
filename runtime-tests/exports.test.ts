// Proves the package's entry points, the seam for the npm and JSR packages: package.json "exports" (npm: Bun and
// Deno load the TypeScript sources, Node the built JS where `npm run build:node` builds it) and deno.json "exports"
// (JSR) name the same subpaths and the same sources, one per transport and adapter; every target exists; and each
// subpath, imported by the package's own name, gives what it is there for.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; exports: Record<string, string | Record<string, string>> };
const denoJson = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as { exports: Record<string, string> };

/** Each subpath and an export it must have. */
const EXPECTED: Record<string, string> = {
  ".": "Engine",
  "./transports": "RoutingGateway",
  "./transports/http": "createHttpApp",
  "./transports/nats": "startNatsTransport",
  "./transports/worker": "WorkerShard",
  "./adapters/journal-file": "FileJournal",
  "./adapters/snapshot-file": "FileSnapshotStore",
  "./adapters/postgres": "openPostgresSink",
  "./adapters/jetstream": "openJetStreamSink",
  "./adapters/kafka": "openKafkaSink",
};

/** The TypeScript source a package.json export names (its "bun" condition, or the plain string). */
function source(target: string | Record<string, string>): string {
  return typeof target === "string" ? target : target.bun;
}

describe("package entry points", () => {
  test("package.json and deno.json export the same subpaths and sources, and every target exists", () => {
    assert.deepEqual(Object.keys(packageJson.exports), Object.keys(EXPECTED));
    assert.deepEqual(Object.keys(denoJson.exports), Object.keys(EXPECTED));
    for (const [subpath, target] of Object.entries(packageJson.exports)) {
      assert.equal(denoJson.exports[subpath], source(target), subpath);
      assert.ok(existsSync(join(root, source(target))), `${subpath}: ${source(target)} exists`);
      if (typeof target === "string") continue;
      assert.deepEqual(Object.keys(target), ["bun", "deno", "node", "default"], `${subpath}: condition order (first match wins)`);
      assert.equal(target.deno, target.bun);
      assert.equal(target.default, target.bun);
      assert.equal(target.node, `./dist/${target.bun.slice(2).replace(/\.ts$/, ".js")}`, `${subpath}: the Node build of the same file`);
    }
  });

  test("each subpath, imported by the package's name, gives its entry point", async () => {
    for (const [subpath, name] of Object.entries(EXPECTED)) {
      const specifier = subpath === "." ? packageJson.name : `${packageJson.name}/${subpath.slice(2)}`;
      const module = (await import(specifier)) as Record<string, unknown>;
      assert.equal(typeof module[name], "function", `${specifier} exports ${name}`);
    }
  });
});
