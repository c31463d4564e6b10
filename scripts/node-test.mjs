// `npm run test:node` (after the build): runs the built core and adapters suites, dist/{core,adapters}/**/*.test.js,
// under `node --test`.
//
// Node 20's `node --test` takes files or directories, not globs (globs arrived in Node 21), and given a directory
// it also runs any test-*.js, *-test.js and every .js file under a folder named `test`. So this script lists the
// *.test.js files itself and passes them by name. An empty list is an error: with no arguments `node --test`
// would search the whole repository instead.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repositoryRoot = fileURLToPath(new URL("..", import.meta.url));
// The storage adapters only: the output adapters (postgres, jetstream, kafka) run under Bun, with the services.
const SUITES = ["core", "adapters/journal-file", "adapters/snapshot-file"];

const files = [];
for (const suite of SUITES) {
  const built = join(repositoryRoot, "dist", suite);
  if (!existsSync(built)) {
    console.error(`dist/${suite} is missing: build first (npm run build:node)`);
    process.exit(1);
  }
  files.push(
    ...readdirSync(built, { recursive: true, encoding: "utf8" })
      .filter((file) => file.endsWith(".test.js"))
      .sort()
      .map((file) => join("dist", suite, file)),
  );
}
if (files.length === 0) {
  console.error("no dist/**/*.test.js files: is the build empty?");
  process.exit(1);
}

// --enable-source-maps: stack traces point at core/*.ts, not at dist/. The spec reporter is chosen explicitly
// because Node 20 picks TAP when stdout is not a terminal, and `npm test` reads the summary ("ℹ pass N").
const result = spawnSync(
  process.execPath,
  ["--enable-source-maps", "--test", "--test-reporter=spec", ...files],
  { cwd: repositoryRoot, stdio: ["ignore", "inherit", "inherit"] },
);
if (result.error) throw result.error;
process.exitCode = result.status ?? 1;
