// Proves the README's snippets are real: README.md embeds each example verbatim (between the markers), and
// running each example prints exactly the output the README shows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";

const root = new URL("../", import.meta.url);

for (const name of ["01-embedded", "02-durable", "03-outputs"]) {
  test(`README embeds examples/${name}.ts verbatim`, () => {
    const readme = readFileSync(new URL("README.md", root), "utf8");
    const example = readFileSync(new URL(`examples/${name}.ts`, root), "utf8");
    const block = readme.match(new RegExp(`<!-- example:${name} -->\\n\`\`\`ts\\n([\\s\\S]*?)\`\`\`\\n`));
    assert.ok(block, "README has the example block");
    assert.equal(block[1], example);
  });

  // 03-outputs starts PGlite: seconds on a busy machine.
  test(`examples/${name}.ts runs and prints what the README shows`, { timeout: 60_000 }, () => {
    const run = spawnSync(process.execPath, [`examples/${name}.ts`], { cwd: root, encoding: "utf8", timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    const readme = readFileSync(new URL("README.md", root), "utf8");
    const shown = readme.match(new RegExp(`<!-- output:${name} -->\\n\`\`\`\\n([\\s\\S]*?)\`\`\`\\n`));
    assert.ok(shown, "README shows the example's output");
    assert.equal(run.stdout, shown[1]);
  });
}
