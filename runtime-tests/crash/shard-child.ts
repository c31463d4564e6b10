/**
 * The process that runtime-tests/crash/crash.test.ts kills with SIGKILL: a durable shard over the file journal
 * (fsync "batch") and the file snapshot store in the directory named by argv[2], driven by newline-delimited JSON
 * on stdin. Bun only (it reads Bun.stdin).
 *
 * Requests, one JSON object a line, all answered with the same `req`:
 * - `{req, commands, atomic?}`: submitted at once, without waiting for earlier requests (group commit needs many in
 *   flight). Answered `{req, results}` only after `submit` resolves, i.e. after the journal record is durable:
 *   that line is the acknowledgement. `{req, error: name}` when the shard refuses the request.
 * - `{req, query: [{partnerId, id}...]}`: `{req, stored: [Result | null...]}`, the idempotency window's results.
 * - `{req, accounts: [{partnerId, accountId}...]}`: `{req, accounts: [Account | null...]}`.
 * - `{req, state: true}`: `{req, lastSequence, stateHash}`.
 * On start it prints `{ready: true, lastSequence, stateHash}`. End of stdin closes the shard and exits 0.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FileJournal } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { InvalidCommandError, OverloadedError, Shard, ShardUnavailableError, type Command, type Result } from "../../core/index.ts";
import { CHILD_SEGMENT_BYTES_MAX, CHILD_SIZES, CHILD_SNAPSHOT_EVERY_COMMANDS } from "./limits.ts";

/** Longest request line the child accepts (the parent's largest, a query of 4000 ids, is ~200 KB): bounds the input buffer. */
const LINE_BYTES_MAX = 8 * 1024 * 1024;

interface Request {
  req: number;
  commands?: Command[];
  atomic?: boolean;
  query?: { partnerId: string; id: string }[];
  accounts?: { partnerId: string; accountId: string }[];
  state?: boolean;
}

/** Output lines waiting for the end of the turn: one stdout write per journal record, not one per request. */
const outputLines: string[] = [];
let outputScheduled = false;

function send(message: object): void {
  outputLines.push(JSON.stringify(message));
  if (outputScheduled) return;
  outputScheduled = true;
  setImmediate(flushOutput);
}

function flushOutput(): void {
  outputScheduled = false;
  if (outputLines.length === 0) return;
  const text = outputLines.join("\n") + "\n";
  outputLines.length = 0;
  process.stdout.write(text);
}

/** Errors the shard uses to refuse a request (nothing applied); anything else is a bug and crashes the child. */
function isRefusal(error: unknown): error is Error {
  return error instanceof InvalidCommandError || error instanceof OverloadedError || error instanceof ShardUnavailableError;
}

function handleSubmit(shard: Shard, request: Request, commands: Command[]): void {
  let promise: Promise<Result[]>;
  try {
    promise = shard.submit(commands, { atomic: request.atomic === true });
  } catch (error) {
    if (!isRefusal(error)) throw error;
    send({ req: request.req, error: error.name });
    return;
  }
  promise.then(
    (results) => send({ req: request.req, results }),
    (error: unknown) => {
      if (!isRefusal(error)) {
        // A programmer error: let it crash the child (the parent sees the exit and stderr).
        setImmediate(() => {
          throw error;
        });
        return;
      }
      send({ req: request.req, error: error.name });
    },
  );
}

function handleLine(shard: Shard, line: string): void {
  const request = JSON.parse(line) as Request;
  if (!Number.isSafeInteger(request.req)) throw new Error(`request without a numeric req: ${line.slice(0, 200)}`);
  if (request.commands !== undefined) return handleSubmit(shard, request, request.commands);
  if (request.query !== undefined) {
    const reads = request.query.map(async ({ partnerId, id }) => (await shard.storedResult(partnerId, id)) ?? null);
    return void Promise.all(reads).then((stored) => send({ req: request.req, stored }));
  }
  if (request.accounts !== undefined) {
    const reads = request.accounts.map(async ({ partnerId, accountId }) => (await shard.account(partnerId, accountId)) ?? null);
    return void Promise.all(reads).then((accounts) => send({ req: request.req, accounts }));
  }
  if (request.state === true) {
    // The hash is taken at a durable point, and lastSequence is read before the next write can end.
    return void shard.stateHash().then((stateHash) => send({ req: request.req, lastSequence: shard.lastSequence, stateHash }));
  }
  throw new Error(`unknown request: ${line.slice(0, 200)}`);
}

/** Read stdin line by line and hand each line over as soon as it is complete. Ends at end of input. */
async function readLines(shard: Shard): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of Bun.stdin.stream()) {
    buffered += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let end = buffered.indexOf("\n", start); end !== -1; end = buffered.indexOf("\n", start)) {
      if (end > start) handleLine(shard, buffered.slice(start, end));
      start = end + 1;
    }
    buffered = buffered.slice(start);
    if (buffered.length > LINE_BYTES_MAX) throw new Error(`request line over ${LINE_BYTES_MAX} bytes`);
  }
  buffered += decoder.decode();
  if (buffered.trim().length > 0) handleLine(shard, buffered);
}

async function main(): Promise<void> {
  const directory = process.argv[2];
  if (directory === undefined) throw new Error("usage: bun shard-child.ts DIRECTORY");
  const journalDirectory = join(directory, "journal");
  const snapshotDirectory = join(directory, "snapshots");
  mkdirSync(journalDirectory, { recursive: true });
  mkdirSync(snapshotDirectory, { recursive: true });
  const log = (line: string) => process.stderr.write(`[child ${process.pid}] ${line}\n`);
  const journal = await FileJournal.open({
    directory: journalDirectory,
    fsync: "batch",
    segmentBytesMax: CHILD_SEGMENT_BYTES_MAX,
    log,
  });
  const snapshots = await FileSnapshotStore.open({ directory: snapshotDirectory, log });
  const shard = await Shard.open({
    ...CHILD_SIZES,
    journal,
    snapshots,
    snapshotEveryCommands: CHILD_SNAPSHOT_EVERY_COMMANDS,
    log,
  });
  send({ ready: true, lastSequence: shard.lastSequence, stateHash: await shard.stateHash() });
  await readLines(shard);
  await shard.close();
  flushOutput();
}

await main();
