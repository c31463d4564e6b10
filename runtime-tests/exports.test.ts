// Proves the package's entry points, the seam for the npm and JSR packages: package.json "exports" (npm: Bun loads
// the TypeScript sources; Node and Deno load the built JS, which only core and the storage adapters have, because
// neither strips types under node_modules) and deno.json "exports" (JSR: the sources) name the same subpaths and
// the same sources, one per transport and adapter; every target exists; each subpath, imported by the package's
// own name, gives what it is there for; and the tarball `npm pack` makes, installed in a project outside the
// repository, holds what the exports need and nothing else (no tests, benches, examples, scratch), and loads under
// Bun (every subpath), Node 20 and Deno (the subpaths with a "node" and "deno" condition).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";

const root = join(import.meta.dir, "..");
type Target = string | Record<string, string>;
const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  exports: Record<string, Target>;
  files: string[];
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};
const denoJson = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as {
  exports: Record<string, string>;
  publish: { include: string[]; exclude: string[] };
};

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

/** Paths in the tarball (below `package/`) that are no part of the package, whatever "files" says. */
const NEVER_PACKED = [/\.test\./, /^(bench|examples|runtime-tests|scripts|data|\.ci|\.review|node_modules)\//, /^core\/testing\//, /^tsconfig/, /^package-lock\.json$/, /\.env/];

/** The TypeScript source a package.json export names (its "bun" condition, or the plain string). */
function source(target: Target): string {
  return typeof target === "string" ? target : target.bun;
}

/** The specifier a user imports a subpath by. */
function specifier(subpath: string): string {
  return subpath === "." ? packageJson.name : `${packageJson.name}/${subpath.slice(2)}`;
}

/** Runs a command; returns its output, or fails the test with what it printed. */
function run(command: string, args: string[], cwd: string): string {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", timeout: 60_000 });
  assert.ifError(result.error);
  assert.equal(result.status, 0, `${command} ${args.join(" ")} in ${cwd} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/**
 * Imports each [specifier, export] pair and checks the export is a function; "hotledger" also runs a credit on an
 * Engine, so the code runs, not only loads. Plain JavaScript: Bun, Node and Deno run it as it is.
 */
const CONSUMER_SCRIPT = `
const checks = JSON.parse(process.env.HOTLEDGER_CHECKS);
for (const [specifier, name] of checks) {
  const module = await import(specifier);
  if (typeof module[name] !== "function") throw new Error(specifier + " does not export " + name);
  if (name === "Engine") {
    const engine = new module.Engine({ accountsMax: 16, partnersMax: 4, holdsMax: 16, idempotencyCommandsMax: 1024 });
    engine.execute([
      { type: "openAccount", id: "open", partnerId: "p", accountId: "a", currency: "USD" },
      { type: "credit", id: "credit", partnerId: "p", accountId: "a", amount: 5 },
    ], { timeMs: 0 });
    if (engine.account("p", "a").balance !== 5) throw new Error("the credit did not land");
  }
}
console.log("loaded " + checks.length);
`;

describe("package entry points", () => {
  test("package.json and deno.json export the same subpaths and sources, and every target exists", () => {
    assert.deepEqual(Object.keys(packageJson.exports), Object.keys(EXPECTED));
    assert.deepEqual(Object.keys(denoJson.exports), Object.keys(EXPECTED));
    for (const [subpath, target] of Object.entries(packageJson.exports)) {
      assert.equal(denoJson.exports[subpath], source(target), subpath);
      assert.ok(existsSync(join(root, source(target))), `${subpath}: ${source(target)} exists`);
      if (typeof target === "string") continue;
      assert.deepEqual(Object.keys(target), ["bun", "deno", "node", "default"], `${subpath}: condition order (first match wins)`);
      // Deno, like Node, refuses TypeScript under node_modules (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING), and
      // TypeScript's own "bundler" resolution would type-check the sources with the user's options: only Bun gets .ts.
      const built = `./dist/${target.bun.slice(2).replace(/\.ts$/, ".js")}`;
      assert.equal(target.node, built, `${subpath}: the Node build of the same file`);
      assert.equal(target.deno, built, `${subpath}: Deno loads the build too`);
      assert.equal(target.default, built, `${subpath}: anything else loads the build too`);
    }
    // The tarball is built by `npm pack` itself, so it never ships without dist/ or with a stale one.
    assert.equal(packageJson.scripts.prepack, "npm run build:node");
  });

  test("npm's files and JSR's publish list the same sources and leave out the same files", () => {
    const npmIncluded = packageJson.files.filter((entry) => !entry.startsWith("!") && !entry.startsWith("dist/"));
    const npmExcluded = packageJson.files.filter((entry) => entry.startsWith("!") && !entry.startsWith("!dist/")).map((entry) => entry.slice(1));
    assert.deepEqual(denoJson.publish.include.filter((entry) => entry !== "README.md"), npmIncluded);
    assert.deepEqual(denoJson.publish.exclude, npmExcluded);
  });

  test("each subpath, imported by the package's name, gives its entry point", async () => {
    for (const [subpath, name] of Object.entries(EXPECTED)) {
      const module = (await import(specifier(subpath))) as Record<string, unknown>;
      assert.equal(typeof module[name], "function", `${specifier(subpath)} exports ${name}`);
    }
  });

  test("the packed tarball, installed outside the repository, loads under Bun, Node and Deno", { timeout: 120_000 }, () => {
    const scratch = mkdtempSync(join(tmpdir(), "hotledger-pack-"));
    try {
      // Pack a copy, so the repository's dist/ is left alone; untracked files come along, as `npm pack` would see them.
      const copy = join(scratch, "repository");
      const skipped = new Set(["node_modules", "dist", ".git", "data"]);
      cpSync(root, copy, { recursive: true, filter: (path) => !skipped.has(relative(root, path).split(sep)[0]) });
      symlinkSync(join(root, "node_modules"), join(copy, "node_modules"), "dir");
      // The prepack script's build, without the type check (the typecheck stage does that), as test:node builds.
      run(join(copy, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json", "--noCheck"], copy);
      run("npm", ["pack", "--ignore-scripts", "--pack-destination", scratch], copy);
      const tarball = readdirSync(scratch).find((file) => file.endsWith(".tgz"));
      assert.ok(tarball !== undefined, "npm pack wrote a tarball");

      // What a user's `npm install` puts in node_modules: the package, and its dependencies (the repository's).
      const project = join(scratch, "project");
      const installed = join(project, "node_modules", packageJson.name);
      mkdirSync(installed, { recursive: true });
      run("tar", ["-xzf", join(scratch, tarball), "-C", installed, "--strip-components=1"], scratch);
      for (const entry of readdirSync(join(root, "node_modules"))) {
        if (entry.startsWith(".") || entry === packageJson.name) continue;
        symlinkSync(join(root, "node_modules", entry), join(project, "node_modules", entry), "dir");
      }
      writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module", dependencies: { [packageJson.name]: "*" } }));

      const packed = readdirSync(installed, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => relative(installed, join(entry.parentPath, entry.name)).split(sep).join("/"));
      assert.ok(packed.length > 0);
      for (const path of packed) {
        for (const pattern of NEVER_PACKED) assert.doesNotMatch(path, pattern, `${path} is packed`);
      }
      for (const [subpath, target] of Object.entries(packageJson.exports)) {
        for (const file of typeof target === "string" ? [target] : Object.values(target)) {
          assert.ok(existsSync(join(installed, file)), `${subpath}: ${file} is packed`);
        }
      }
      assert.ok(existsSync(join(installed, "adapters", "postgres", "migrations")), "the Postgres migrations are packed");

      const script = join(project, "consumer.mjs");
      writeFileSync(script, CONSUMER_SCRIPT);
      const checks = (condition: string) =>
        JSON.stringify(
          Object.entries(EXPECTED)
            .filter(([subpath]) => condition === "bun" || typeof packageJson.exports[subpath] !== "string")
            .map(([subpath, name]) => [specifier(subpath), name]),
        );
      const runtimes: [string, string[], string][] = [
        [process.execPath, [script], "bun"],
        ["node", [script], "node"],
        [join(root, "node_modules", ".bin", "deno"), ["run", "--allow-all", "--no-lock", script], "deno"],
      ];
      for (const [command, args, condition] of runtimes) {
        const result = spawnSync(command, args, { cwd: project, encoding: "utf8", timeout: 60_000, env: { ...process.env, HOTLEDGER_CHECKS: checks(condition) } });
        assert.ifError(result.error);
        assert.equal(result.status, 0, `${condition}: ${result.stdout}\n${result.stderr}`);
        assert.match(result.stdout, /^loaded \d+$/m, condition);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
