// Proves that core/gen is exactly what `npm run gen` makes of core/proto today, so nobody hand-edits generated
// code and nobody changes the .proto without regenerating. It runs buf with the repository's buf.gen.yaml on a
// copy of core/proto in a temporary directory and compares every generated file byte for byte.
// It needs a subprocess and the file system, so it runs under Bun only (the runtime `npm test` always has);
// under Deno and Node it is skipped, which keeps their permissions and built output free of it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const runtimeIsBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** The repository root: this file lives in core/. */
const repositoryRoot = fileURLToPath(new URL("..", import.meta.url));

/** buf resolves and compiles the module on the first run (cold cache); later runs take about a second. */
const generateTimeoutMs = 120_000;

/** Every file under `directory`, as sorted paths relative to it. */
function listFiles(directory: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(directory, { recursive: true, encoding: "utf8" })) {
    if (statSync(join(directory, entry)).isFile()) files.push(entry);
  }
  return files.sort();
}

/**
 * Regenerates into a scratch copy of the layout buf.gen.yaml expects (core/proto, core/gen, node_modules, all
 * relative to the proto directory) and returns the scratch core/gen. The caller removes `scratch`.
 */
function generateIntoScratch(scratch: string): string {
  const protoDirectory = join(scratch, "core", "proto");
  cpSync(join(repositoryRoot, "core", "proto"), protoDirectory, { recursive: true });
  symlinkSync(join(repositoryRoot, "node_modules"), join(scratch, "node_modules"), "dir");
  const buf = join(repositoryRoot, "node_modules", ".bin", "buf");
  const result = spawnSync(buf, ["generate"], {
    cwd: protoDirectory,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: generateTimeoutMs,
  });
  assert.equal(result.error, undefined, `could not run ${relative(repositoryRoot, buf)}: ${result.error}`);
  assert.equal(result.status, 0, `buf generate failed:\n${result.stdout}${result.stderr}`);
  return join(scratch, "core", "gen");
}

test(
  "core/gen matches what `npm run gen` generates from core/proto",
  { skip: runtimeIsBun ? false : "runs under Bun only (needs a subprocess)", timeout: generateTimeoutMs },
  () => {
    const committedDirectory = join(repositoryRoot, "core", "gen");
    assert.ok(existsSync(committedDirectory), "core/gen is missing: run `npm run gen`");
    const scratch = mkdtempSync(join(tmpdir(), "hotledger-gen-"));
    try {
      const freshDirectory = generateIntoScratch(scratch);
      const stale = "core/gen is out of date: run `npm run gen` and commit the result";
      const freshFiles = listFiles(freshDirectory);
      assert.deepEqual(listFiles(committedDirectory), freshFiles, `${stale} (the file lists differ)`);
      for (const file of freshFiles) {
        const committed = readFileSync(join(committedDirectory, file), "utf8");
        const fresh = readFileSync(join(freshDirectory, file), "utf8");
        assert.ok(committed === fresh, `${stale} (core/gen/${file} differs)`);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
);
