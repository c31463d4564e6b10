// Proves the README's core snippet is real: README.md embeds examples/01-embedded.ts verbatim (between the
// markers), and running that example prints the results the README shows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";

const root = new URL("../", import.meta.url);

test("README embeds examples/01-embedded.ts verbatim", () => {
  const readme = readFileSync(new URL("README.md", root), "utf8");
  const example = readFileSync(new URL("examples/01-embedded.ts", root), "utf8");
  const block = readme.match(/<!-- example:01-embedded -->\n```ts\n([\s\S]*?)```\n/);
  assert.ok(block, "README has the example block");
  assert.equal(block[1], example);
});

test("the embedded example runs and prints what the README shows", () => {
  const run = spawnSync(process.execPath, ["examples/01-embedded.ts"], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(run.status, 0, run.stderr);
  const readme = readFileSync(new URL("README.md", root), "utf8");
  const shown = readme.match(/<!-- output:01-embedded -->\n```\n([\s\S]*?)```\n/);
  assert.ok(shown, "README shows the example's output");
  assert.equal(run.stdout, shown[1]);
});
