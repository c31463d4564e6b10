// `npm run test:deno`: runs the core suite and the storage adapters' suite under Deno, then prints how many leaf
// tests passed and failed.
//
// Why the extra count: Deno runs a node:test describe() block as one test and its test() calls as steps, so its
// own summary ("ok | 2 passed (9 steps) | 0 failed") counts describe blocks as tests. Bun and Node count only
// test() calls. To make the three runtimes' numbers comparable, Deno also writes a JUnit report, and this script
// counts the leaves in it (a testcase is a leaf unless it is the parent of another testcase).
//
// Flags: --no-check because `npm run typecheck` already checks the same files with the repository's TypeScript;
// permissions per suite: the core suite runs with none (loading modules does not need --allow-read; a core test
// that wants one is a core test doing I/O); the file adapters' suite gets exactly file and environment access.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repositoryRoot = fileURLToPath(new URL("..", import.meta.url));
const deno = join(repositoryRoot, "node_modules", ".bin", "deno");
const scratch = mkdtempSync(join(tmpdir(), "hotledger-deno-"));
/** The suites: a folder and the permissions its tests need. */
const SUITES = [
  { folder: "core/", permissions: [] },
  // The storage adapters. The output adapters (postgres, jetstream, kafka) run under Bun only, with the services.
  { folder: "adapters/journal-file/ adapters/snapshot-file/", permissions: ["--allow-read", "--allow-write", "--allow-env"] },
];

try {
  let passed = 0;
  let failed = 0;
  let status = 0;
  for (const [index, suite] of SUITES.entries()) {
    const junitPath = join(scratch, `junit-${index}.xml`);
    const result = spawnSync(deno, ["test", "--no-check", ...suite.permissions, `--junit-path=${junitPath}`, ...suite.folder.split(" ")], {
      cwd: repositoryRoot,
      stdio: ["ignore", "inherit", "inherit"],
    });
    if (result.error) throw result.error;
    if (existsSync(junitPath)) {
      const counts = countLeaves(readFileSync(junitPath, "utf8"));
      console.log(`deno ${suite.folder}: ${counts.passed} passed, ${counts.failed} failed`);
      passed += counts.passed;
      failed += counts.failed;
    } else {
      console.log(`deno wrote no JUnit report for ${suite.folder}: the run did not get as far as running tests`);
      failed += 1;
    }
    if ((result.status ?? 1) !== 0) status = result.status ?? 1;
  }
  console.log(`deno leaf tests: ${passed} passed, ${failed} failed`);
  process.exitCode = status;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

/**
 * Counts passed and failed leaf testcases in Deno's JUnit report. Deno names a step by its path
 * ("outer > inner > leaf"), so a testcase is a parent when another testcase's name starts with its name and " > ".
 * A parent's own failure ("1 test step failed") is its children's, already counted; any other parent failure (a
 * describe() callback that threw) counts once. Skipped testcases count as neither.
 */
function countLeaves(xml) {
  const testcases = [];
  const testcasePattern = /<testcase name="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const match of xml.matchAll(testcasePattern)) {
    const body = match[3] ?? "";
    const failure = /<failure message="([^"]*)"/.exec(body);
    testcases.push({
      name: match[1],
      skipped: body.includes("<skipped"),
      failed: failure !== null,
      failureIsSteps: failure !== null && /^\d+ test steps? failed/.test(failure[1]),
    });
  }
  const names = testcases.map((testcase) => testcase.name);
  let passed = 0;
  let failed = 0;
  for (const testcase of testcases) {
    const prefix = `${testcase.name} &gt; `;
    const isParent = names.some((name) => name.startsWith(prefix));
    if (testcase.skipped) continue;
    if (testcase.failed) {
      if (!(isParent && testcase.failureIsSteps)) failed += 1;
    } else if (!isParent) {
      passed += 1;
    }
  }
  return { passed, failed };
}
