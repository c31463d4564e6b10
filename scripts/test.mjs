// `npm test`: the whole suite, as README.md and .ci/run use it. Runs the stages below in order, and all of them
// even when one fails (so a failing Bun run still shows what Deno and Node say), mirrors their output, then prints
// one line per stage and the total, "total: N passed, N failed", as its last line (.ci/run repeats it without
// "total: "). Exits 1 when anything failed.
//
// The total sums the test counts each runner prints. A runner that fails without a summary (it crashed, did not
// start, or timed out) or exits non-zero while reporting no failed test counts as one failure, and so does a
// failed typecheck: a red stage can never add up to "0 failed".
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const repositoryRoot = fileURLToPath(new URL("..", import.meta.url));

/**
 * Time limits. The whole suite takes a minute or two, so a stage running for five is hung (Node 20 waits
 * forever for a test file that leaves a timer or socket open). The suite limit keeps `npm test`, and so .ci/run,
 * inside CI's 20 minutes: a stage gets what is left of it, and stages that would start after it count as failed.
 */
const STAGE_TIMEOUT_MS = 5 * 60 * 1000;
const SUITE_TIMEOUT_MS = 15 * 60 * 1000;

/**
 * The stages, in order. `summary` reads a runner's pass and fail counts from its output (ANSI colours removed),
 * or returns null when the output holds no summary; stages without `summary` only have an exit status.
 */
const STAGES = [
  { script: "typecheck" },
  { script: "test:bun", summary: summaryBun },
  { script: "test:deno", summary: summaryDeno },
  { script: "test:node", summary: summaryNode },
];

/** Bun ends with " 12 pass", " 0 fail" (a file that fails to load counts as a failed test there). */
function summaryBun(output) {
  const passed = lastNumber(output, /^\s*(\d+) pass$/gm);
  const failed = lastNumber(output, /^\s*(\d+) fail$/gm);
  if (passed === null || failed === null) return null;
  return { passed, failed };
}

/** scripts/deno-test.mjs ends with "deno leaf tests: 12 passed, 0 failed" (see there why not Deno's own line). */
function summaryDeno(output) {
  const passed = lastNumber(output, /^deno leaf tests: (\d+) passed, \d+ failed$/gm);
  const failed = lastNumber(output, /^deno leaf tests: \d+ passed, (\d+) failed$/gm);
  if (passed === null || failed === null) return null;
  return { passed, failed };
}

/** node --test ends with "ℹ pass 12", "ℹ fail 0", "ℹ cancelled 0" (spec) or "# pass 12" (TAP). */
function summaryNode(output) {
  const passed = lastNumber(output, /^(?:ℹ|#) pass (\d+)$/gm);
  const failed = lastNumber(output, /^(?:ℹ|#) fail (\d+)$/gm);
  const cancelled = lastNumber(output, /^(?:ℹ|#) cancelled (\d+)$/gm) ?? 0;
  if (passed === null || failed === null) return null;
  return { passed, failed: failed + cancelled };
}

/** The first capture group of the last match of `pattern` (which has the g flag) in `text`, as a number. */
function lastNumber(text, pattern) {
  let value = null;
  for (const match of text.matchAll(pattern)) value = Number(match[1]);
  return value;
}

/** The process group of the running stage: its own group, so a timeout can kill everything it started. */
let stagePid = null;

/** Kills process group `pid`; it may have just exited by itself, which is fine. */
function killGroup(pid) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch (error) {
    if (error.code !== "ESRCH") throw error;
  }
}

// The stage runs in its own process group, so Ctrl-C or a CI timeout reaches only this process: pass it on.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (stagePid !== null) killGroup(stagePid);
    process.exit(1);
  });
}

/** Runs `npm run <script>` in its own process group, mirroring its output; resolves with status and output. */
function runStage(script, timeoutMs) {
  return new Promise((resolve) => {
    const environment = { ...process.env };
    // The child writes into a pipe; keep colours when a person is watching.
    if (process.stdout.isTTY && environment.NO_COLOR === undefined) environment.FORCE_COLOR = "1";
    const child = spawn("npm", ["run", "--silent", script], {
      cwd: repositoryRoot,
      env: environment,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const chunks = [];
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      chunks.push(chunk);
    });
    child.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      chunks.push(chunk);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    stagePid = child.pid ?? null;
    child.on("error", (error) => {
      clearTimeout(timer);
      stagePid = null;
      resolve({ status: null, timedOut, output: `${error}` });
    });
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      stagePid = null;
      const output = Buffer.concat(chunks).toString("utf8").replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
      resolve({ status: status ?? signal, timedOut, output });
    });
  });
}

const scripts = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).scripts;
const rows = [];
let passedTotal = 0;
let failedTotal = 0;
const suiteDeadlineMs = performance.now() + SUITE_TIMEOUT_MS;
for (const stage of STAGES) {
  const timeoutMs = Math.min(STAGE_TIMEOUT_MS, suiteDeadlineMs - performance.now());
  if (timeoutMs <= 0) {
    failedTotal += 1;
    rows.push(`${stage.script.padEnd(10)} not run: the suite used up its ${SUITE_TIMEOUT_MS / 1000} s (counts as 1 failed)`);
    continue;
  }
  console.log(`\n=== npm run ${stage.script}: ${scripts[stage.script]}`);
  const startedMs = performance.now();
  const { status, timedOut, output } = await runStage(stage.script, timeoutMs);
  const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
  const summary = stage.summary ? stage.summary(output) : null;
  const passed = summary?.passed ?? 0;
  let failed = summary?.failed ?? 0;
  let note = "";
  if (timedOut) note = `killed after ${(timeoutMs / 1000).toFixed(0)} s`;
  else if (stage.summary && summary === null) note = "no summary: the runner crashed or did not start";
  else if (stage.summary && status !== 0 && failed === 0) note = "exited non-zero with no failed test";
  if (note !== "" || (!stage.summary && status !== 0)) failed += 1;
  passedTotal += passed;
  failedTotal += failed;
  const counts = stage.summary ? `${passed} passed, ${failed} failed` : failed === 0 ? "ok" : "failed (counts as 1)";
  rows.push(`${stage.script.padEnd(10)} exit ${String(status).padEnd(7)} ${seconds.padStart(6)} s  ${counts}`
    + (note === "" ? "" : ` (${note})`));
}

console.log("\n=== summary");
for (const row of rows) console.log(row);
console.log(`total: ${passedTotal} passed, ${failedTotal} failed`);
process.exitCode = failedTotal === 0 ? 0 : 1;
