// Proves "no acknowledged command is ever lost, and none is applied twice, even under kill -9": a real Bun process
// (shard-child.ts: a Shard over FileJournal with fsync "batch" and FileSnapshotStore, snapshotting every 2000
// commands) takes concurrent requests (32 in flight, 1-20 commands each, atomic groups, retries of earlier
// requests, reused ids) and is killed with SIGKILL 20-300 ms after the load starts, over and over. After each
// restart on the same directory the test asks the child for the stored result of every command it ever sent:
// each acknowledged one must be there with the acknowledged result, and the applied ones, replayed in seq order
// into the reference ledger (core/testing), must give the same results and the same accounts as the shard.
// Re-sending acknowledged commands must answer `duplicate` with the same result and change no account. When a data
// directory's id budget is spent (and at the end), an idle SIGKILL and a clean close must each recover the exact
// state hash. CRASH_KILLS sets the number of kills under load (default 20, CI included), CRASH_SEED the command
// generator's seed (printed, to rerun the same commands; the kill timing still varies).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Account, Command, Result } from "../../core/index.ts";
import { ReferenceLedger } from "../../core/testing/reference-ledger.ts";
import {
  CHILD_SNAPSHOT_EVERY_COMMANDS,
  EPOCH_COMMANDS_MAX,
  EPOCH_HOLDS_MAX,
  REQUEST_COMMANDS_MAX,
  REQUESTS_IN_FLIGHT_MAX,
} from "./limits.ts";

const KILLS_DEFAULT = 20;
const KILLS = positiveIntegerFromEnvironment("CRASH_KILLS", KILLS_DEFAULT);
const SEED = positiveIntegerFromEnvironment("CRASH_SEED", 1 + Math.floor(Math.random() * 0x7fff_ffff));
/** The kill comes this long after the load starts. */
const KILL_DELAY_MS_MIN = 20;
const KILL_DELAY_MS_MAX = 300;
/** Time for the whole test: generous per kill (a cycle takes well under a second), and asserted every cycle. */
const TEST_MS_MAX = 60_000 + KILLS * 3_000;
/** Time for a child to recover and print ready, and for any one request to be answered. */
const CHILD_READY_MS_MAX = 20_000;
const REQUEST_MS_MAX = 30_000;
/** Time for a killed or ended child to be gone. */
const CHILD_EXIT_MS_MAX = 10_000;
/** Requests one load worker sends in one cycle at most (the kill normally ends it long before). */
const WORKER_REQUESTS_MAX = 100_000;
/** Requests looked at to find an unacknowledged one to retry. */
const RETRY_SEARCH_COUNT_MAX = 8;
/** Ids per storedResult query, and commands per re-sent batch. */
const QUERY_IDS_MAX = 4_000;
const RESEND_COMMANDS_MAX = 500;
/** Acknowledged commands re-sent after each restart; the last restart of an epoch re-sends all of them. */
const RESEND_SAMPLE_COUNT = 300;
/** An epoch that reached this sequence must have snapshots and a compacted journal (~8 snapshot intervals). */
const COMPACTION_EXPECTED_SEQUENCE_MIN = 8 * CHILD_SNAPSHOT_EVERY_COMMANDS;
/** stderr kept per child for failure messages. */
const STDERR_CHARS_MAX = 64 * 1024;

const PARTNERS = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
const ACCOUNTS = Array.from({ length: 24 }, (_, index) => `a${index}`);
const currencyOf = (accountIndex: number): string => (accountIndex % 4 === 3 ? "USD" : "EUR");

const CHILD_PATH = fileURLToPath(new URL("./shard-child.ts", import.meta.url));
const REPOSITORY_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The child is a Bun program: this test runs under Bun, so process.execPath is Bun; else the installed one. */
const BUN_PATH = typeof Bun !== "undefined" ? process.execPath : join(REPOSITORY_ROOT, "node_modules", ".bin", "bun");

function positiveIntegerFromEnvironment(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return value;
}

/** mulberry32: a small seeded generator, so a failing run's commands can be generated again. */
class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    assert.ok(items.length > 0, "pick from an empty list");
    return items[Math.floor(this.next() * items.length)];
  }
  chance(probability: number): boolean {
    return this.next() < probability;
  }
}

// ---- The child process -------------------------------------------------------------------------------------

/** The child's stdout closed: requests still waiting will never be answered. Expected after a kill. */
class ChildGoneError extends Error {
  override name = "ChildGoneError";
}

interface Ready {
  ready: true;
  lastSequence: number;
  stateHash: string;
}

interface Reply {
  req: number;
  results?: Result[];
  error?: string;
  stored?: (Result | null)[];
  accounts?: (Account | null)[];
  lastSequence?: number;
  stateHash?: string;
}

interface Waiter {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Every child started and not yet seen to exit, so after() can kill what a failing test left behind. */
const liveChildren = new Set<ChildShard>();

/** One shard-child.ts process, spoken to one JSON line at a time. */
class ChildShard {
  private readonly process: ChildProcessWithoutNullStreams;
  private readonly waiters = new Map<number, Waiter>();
  private nextReq = 1;
  private stdoutClosed = false;
  private stdinError: Error | undefined;
  private stderr = "";
  private readyResolve!: (ready: Ready) => void;
  private readonly readyPromise: Promise<Ready>;
  /** Resolves with the exit code and signal once the process is gone and its pipes are closed. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  killed = false;

  private constructor(directory: string) {
    this.process = spawn(BUN_PATH, [CHILD_PATH, directory], { stdio: ["pipe", "pipe", "pipe"], cwd: REPOSITORY_ROOT });
    liveChildren.add(this);
    this.readyPromise = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
    this.exited = new Promise((resolve) => {
      this.process.on("close", (code, signal) => {
        liveChildren.delete(this);
        resolve({ code, signal });
      });
    });
    this.process.stdin.on("error", (error) => {
      // EPIPE once the child is killed; anything else fails the next request (see request()).
      this.stdinError = error;
    });
    this.process.stderr.setEncoding("utf8");
    this.process.stderr.on("data", (text: string) => {
      this.stderr = (this.stderr + text).slice(-STDERR_CHARS_MAX);
    });
    const lines = createInterface({ input: this.process.stdout, crlfDelay: Infinity });
    lines.on("line", (line) => this.onLine(line));
    lines.on("close", () => this.onStdoutClosed());
  }

  /** Start a child on `directory` and wait until it has recovered. */
  static async start(directory: string): Promise<{ child: ChildShard; ready: Ready }> {
    const child = new ChildShard(directory);
    const ready = await withTimeout(
      Promise.race([child.readyPromise, child.exited.then((exit) => Promise.reject(child.failure(`exited before ready: ${JSON.stringify(exit)}`)))]),
      CHILD_READY_MS_MAX,
      () => child.failure("not ready in time"),
    );
    return { child, ready };
  }

  /** An Error carrying the child's stderr, for assertion messages. */
  failure(message: string): Error {
    return new Error(`child ${this.process.pid}: ${message}\n--- child stderr (tail) ---\n${this.stderr}`);
  }

  private onLine(line: string): void {
    const message = JSON.parse(line) as Reply | Ready;
    if ("ready" in message) return this.readyResolve(message);
    const waiter = this.waiters.get(message.req);
    assert.ok(waiter !== undefined, `child answered unknown req ${message.req}`);
    this.waiters.delete(message.req);
    clearTimeout(waiter.timer);
    waiter.resolve(message);
  }

  private onStdoutClosed(): void {
    this.stdoutClosed = true;
    for (const waiter of this.waiters.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new ChildGoneError("the child's stdout closed before it answered"));
    }
    this.waiters.clear();
  }

  /** Send one request line; resolves with the child's answer, rejects with ChildGoneError once it is gone. */
  request(body: Record<string, unknown>): Promise<Reply> {
    if (this.stdoutClosed) return Promise.reject(new ChildGoneError("the child is gone"));
    if (this.stdinError !== undefined && !this.killed) return Promise.reject(this.failure(`stdin failed: ${this.stdinError.message}`));
    const req = this.nextReq++;
    const promise = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(req);
        reject(this.failure(`no answer to req ${req} within ${REQUEST_MS_MAX} ms`));
      }, REQUEST_MS_MAX);
      this.waiters.set(req, { resolve, reject, timer });
    });
    this.process.stdin.write(JSON.stringify({ req, ...body }) + "\n");
    return promise;
  }

  async state(): Promise<{ lastSequence: number; stateHash: string }> {
    const reply = await this.request({ state: true });
    assert.ok(reply.lastSequence !== undefined && reply.stateHash !== undefined, "state reply without state");
    return { lastSequence: reply.lastSequence, stateHash: reply.stateHash };
  }

  /** SIGKILL, then wait until the process and its pipes are gone (answers already in the pipe are still read). */
  async kill(): Promise<void> {
    this.killed = true;
    this.process.kill("SIGKILL");
    const exit = await withTimeout(this.exited, CHILD_EXIT_MS_MAX, () => this.failure("still running after SIGKILL"));
    if (exit.signal !== "SIGKILL") throw this.failure(`exited by itself before the kill: ${JSON.stringify(exit)}`);
  }

  /** Close stdin: the child closes the shard (snapshot included) and must exit 0. */
  async end(): Promise<void> {
    this.process.stdin.end();
    const exit = await withTimeout(this.exited, CHILD_EXIT_MS_MAX, () => this.failure("did not exit after end of input"));
    if (exit.code !== 0) throw this.failure(`exit after end of input: ${JSON.stringify(exit)}`);
  }

  /** For after(): make sure nothing outlives the test. */
  killNow(): void {
    this.killed = true;
    this.process.kill("SIGKILL");
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- What the test knows about one data directory ------------------------------------------------------------

/** The fields of a result that must survive a crash (without `duplicate`, which says how it was delivered). */
interface Outcome {
  id: string;
  status: string;
  code: string;
  seq: number;
  balance?: number;
  held?: number;
  available?: number;
}

function outcomeOf(result: Result): Outcome {
  const outcome: Outcome = { id: result.id, status: result.status, code: result.code, seq: result.seq };
  if (result.balance !== undefined) outcome.balance = result.balance;
  if (result.held !== undefined) outcome.held = result.held;
  if (result.available !== undefined) outcome.available = result.available;
  return outcome;
}

/**
 * assert.deepEqual for outcomes, with a cheap first look: outcomeOf builds its fields in one order, so equal
 * outcomes have equal JSON. (The test compares hundreds of thousands; deepEqual is slow enough to matter.)
 */
function assertSameOutcome(actual: Outcome | undefined, expected: Outcome | undefined, message: string): void {
  if (actual !== undefined && expected !== undefined && JSON.stringify(actual) === JSON.stringify(expected)) return;
  assert.deepEqual(actual, expected, message);
}

/** One command the test sent (ids are unique per epoch, so the id names it). */
interface SentCommand {
  command: Command;
  /** The ids of its atomic group in order, or undefined when it was sent in a non-atomic request. */
  group: readonly string[] | undefined;
  /** The acknowledged result, once one came. */
  acked: Outcome | undefined;
  /** The stored result seen after a restart, once the command was applied. */
  applied: Outcome | undefined;
  /** The cycle in which it was last sent (as new or as a retry). */
  sentCycle: number;
}

/** A load request as first sent, kept for retries. */
interface SentRequest {
  ids: string[];
  atomic: boolean;
}

interface LoadRequest {
  commands: Command[];
  atomic: boolean;
  /** A request with a known id and a changed body: every result must be id_reused. */
  probe: boolean;
}

/** Counters for the summary line. */
const totals = { epochs: 0, kills: 0, requestsAcked: 0, commandsAcked: 0, commandsApplied: 0, resent: 0, probes: 0, snapshotFiles: 0, segmentFiles: 0, epochsCompacted: 0 };

/** One data directory and everything sent to it. A fresh epoch starts when its id or hold budget is spent. */
class Epoch {
  readonly directory: string;
  readonly commands = new Map<string, SentCommand>();
  readonly requests: SentRequest[] = [];
  /**
   * The reference replays each id once, so it never answers from its own window (the shard's window is checked by
   * the re-sends); a window of one keeps its whole-state copy per atomic group cheap.
   */
  readonly reference = new ReferenceLedger({ idempotencyCommandsMax: 1 });
  readonly holdIds: string[][] = PARTNERS.map(() => []);
  holdCount = 0;
  cycle = 0;
  /** The child's last sequence before the current cycle's load: anything applied in this cycle is above it. */
  loadStartSequence = 0;
  /** The highest seq of any acknowledged result. */
  ackedSequenceMax = 0;
  private nextId = 0;

  constructor(
    readonly index: number,
    root: string,
  ) {
    this.directory = join(root, `epoch-${index}`);
  }

  get full(): boolean {
    return this.commands.size >= EPOCH_COMMANDS_MAX;
  }

  newId(): string {
    return `c${this.index}.${this.nextId++}`;
  }
}

// ---- Load --------------------------------------------------------------------------------------------------

/** A new state-changing command for `partnerIndex`; ids are new, so each body is sent under one id only. */
function newCommand(epoch: Epoch, random: Random, partnerIndex: number): Command {
  const partnerId = PARTNERS[partnerIndex];
  const id = epoch.newId();
  const accountIndex = random.int(0, ACCOUNTS.length - 1);
  const accountId = ACCOUNTS[accountIndex];
  const roll = random.next();
  if (roll < 0.08) {
    const command: Command = { type: "openAccount", id, partnerId, accountId, currency: currencyOf(accountIndex) };
    if (random.chance(0.2)) command.overdraftLimit = random.int(0, 5000);
    return command;
  }
  if (roll < 0.33 || (roll < 0.43 && epoch.holdCount >= EPOCH_HOLDS_MAX)) {
    const command: Command = { type: "credit", id, partnerId, accountId, amount: random.chance(0.01) ? 0 : random.int(1, 10_000) };
    if (random.chance(0.1)) command.currency = random.chance(0.7) ? currencyOf(accountIndex) : "GBP";
    return command;
  }
  if (roll < 0.43) {
    epoch.holdCount++;
    epoch.holdIds[partnerIndex].push(id);
    const command: Command = { type: "hold", id, partnerId, accountId, amount: random.int(1, 3000) };
    if (random.chance(0.2)) command.expiresInMs = 86_400_000;
    return command;
  }
  if (roll < 0.58) return { type: "debit", id, partnerId, accountId, amount: random.int(1, 6000) };
  if (roll < 0.8) {
    const toAccountId = random.chance(0.05) ? accountId : random.pick(ACCOUNTS);
    return { type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId, amount: random.int(1, 8000) };
  }
  const holds = epoch.holdIds[partnerIndex];
  const holdId = holds.length === 0 || random.chance(0.03) ? "no-such-hold" : random.pick(holds);
  if (roll < 0.87) {
    const command: Command = { type: "capture", id, partnerId, holdId };
    if (random.chance(0.5)) command.amount = random.int(1, 3000);
    return command;
  }
  if (roll < 0.93) return { type: "release", id, partnerId, holdId };
  if (roll < 0.96) return { type: "setOverdraftLimit", id, partnerId, accountId, overdraftLimit: random.int(0, 3000) };
  if (roll < 0.975) return { type: "freeze", id, partnerId, accountId };
  if (roll < 0.999) return { type: "unfreeze", id, partnerId, accountId };
  return { type: "close", id, partnerId, accountId };
}

/** A fresh request: 1-20 commands of any partners, or an atomic group of 2-8 commands of one partner. */
function newRequest(epoch: Epoch, random: Random): LoadRequest {
  const atomic = random.chance(0.25);
  const count = atomic ? random.int(2, 8) : random.int(1, REQUEST_COMMANDS_MAX);
  const groupPartner = random.int(0, PARTNERS.length - 1);
  const commands: Command[] = [];
  for (let k = 0; k < count; k++) {
    commands.push(newCommand(epoch, random, atomic ? groupPartner : random.int(0, PARTNERS.length - 1)));
  }
  const ids = commands.map((command) => command.id!);
  for (const command of commands) {
    epoch.commands.set(command.id!, { command, group: atomic ? ids : undefined, acked: undefined, applied: undefined, sentCycle: epoch.cycle });
  }
  epoch.requests.push({ ids, atomic });
  return { commands, atomic, probe: false };
}

/** The same request again (same ids, bodies and atomicity), preferring one that was never acknowledged. */
function retryRequest(epoch: Epoch, random: Random): LoadRequest | undefined {
  if (epoch.requests.length === 0) return undefined;
  let request = random.pick(epoch.requests);
  // Mostly what a client retries after a crash: a request it never got an answer to.
  for (let attempt = 0; attempt < RETRY_SEARCH_COUNT_MAX; attempt++) {
    if (request.ids.some((id) => epoch.commands.get(id)!.acked === undefined)) break;
    request = random.pick(epoch.requests);
  }
  const commands = request.ids.map((id) => {
    const sent = epoch.commands.get(id)!;
    sent.sentCycle = epoch.cycle;
    return sent.command;
  });
  return { commands, atomic: request.atomic, probe: false };
}

/** An acknowledged id with another amount: the shard must answer id_reused and store nothing. */
function probeRequest(epoch: Epoch, random: Random): LoadRequest | undefined {
  const request = epoch.requests.length === 0 ? undefined : random.pick(epoch.requests);
  const sent = request && epoch.commands.get(random.pick(request.ids));
  if (sent === undefined || sent.acked === undefined || !("amount" in sent.command) || sent.command.amount === undefined) return undefined;
  return { commands: [{ ...sent.command, amount: sent.command.amount + 1 }], atomic: false, probe: true };
}

/** 8% retries, 2% reused-id probes, the rest new requests; undefined once the epoch's ids are spent. */
function nextRequest(epoch: Epoch, random: Random): LoadRequest | undefined {
  const roll = random.next();
  const other = roll < 0.08 ? retryRequest(epoch, random) : roll < 0.1 ? probeRequest(epoch, random) : undefined;
  if (other !== undefined) return other;
  return epoch.full ? undefined : newRequest(epoch, random);
}

/** Check one acknowledged request's results against everything known, and remember them. */
function recordAcknowledgement(epoch: Epoch, request: LoadRequest, reply: Reply): void {
  assert.equal(reply.error, undefined, `the shard refused a load request: ${reply.error}`);
  const results = reply.results!;
  assert.equal(results.length, request.commands.length);
  totals.requestsAcked++;
  for (let k = 0; k < results.length; k++) {
    const result = results[k];
    const command = request.commands[k];
    assert.equal(result.id, command.id);
    if (request.probe) {
      totals.probes++;
      assert.deepEqual(outcomeOf(result), { id: command.id, status: "rejected", code: "id_reused", seq: result.seq }, "a reused id with another body");
      continue;
    }
    const sent = epoch.commands.get(command.id!)!;
    const outcome = outcomeOf(result);
    epoch.ackedSequenceMax = Math.max(epoch.ackedSequenceMax, result.seq);
    if (sent.acked !== undefined) {
      assert.equal(result.duplicate, true, `${command.id} was acknowledged before and applied again`);
      assertSameOutcome(outcome, sent.acked, `${command.id}: a retry answered differently`);
      continue;
    }
    if (sent.applied !== undefined) {
      assert.equal(result.duplicate, true, `${command.id} was applied before the crash and applied again`);
      assertSameOutcome(outcome, sent.applied, `${command.id}: acknowledged unlike its stored result`);
    }
    if (result.duplicate !== true) assert.ok(result.seq > epoch.loadStartSequence, `${command.id}: applied now but at an old seq`);
    sent.acked = outcome;
    totals.commandsAcked++;
  }
}

/** Drive REQUESTS_IN_FLIGHT_MAX concurrent requests until the child is killed, 20-300 ms after the start. */
async function loadAndKill(child: ChildShard, epoch: Epoch, random: Random): Promise<void> {
  const worker = async (): Promise<void> => {
    for (let count = 0; count < WORKER_REQUESTS_MAX && !child.killed; count++) {
      const request = nextRequest(epoch, random);
      if (request === undefined) return;
      let reply: Reply;
      try {
        reply = await child.request({ commands: request.commands, atomic: request.atomic });
      } catch (error) {
        if (error instanceof ChildGoneError && child.killed) return;
        throw error;
      }
      recordAcknowledgement(epoch, request, reply);
    }
  };
  const delayMs = random.int(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => child.kill().then(resolve, reject), delayMs);
  });
  try {
    await Promise.all([...Array.from({ length: REQUESTS_IN_FLIGHT_MAX }, worker), killed]);
  } finally {
    clearTimeout(timer);
    if (!child.killed) child.killNow();
  }
  totals.kills++;
}

// ---- Checks after a restart ----------------------------------------------------------------------------------

/** The child's stored result for every id, in chunks (null when the command was not applied). */
async function storedResults(child: ChildShard, epoch: Epoch): Promise<Map<string, Outcome | undefined>> {
  const ids = [...epoch.commands.keys()];
  const stored = new Map<string, Outcome | undefined>();
  for (let start = 0; start < ids.length; start += QUERY_IDS_MAX) {
    const chunk = ids.slice(start, start + QUERY_IDS_MAX);
    const query = chunk.map((id) => ({ partnerId: epoch.commands.get(id)!.command.partnerId, id }));
    const reply = await child.request({ query });
    assert.equal(reply.stored?.length, chunk.length);
    chunk.forEach((id, k) => {
      const result = reply.stored![k];
      if (result !== null) assert.equal(result.duplicate, true, "a stored result is marked duplicate");
      stored.set(id, result === null ? undefined : outcomeOf(result));
    });
  }
  return stored;
}

/**
 * Every acknowledged command must have its result stored, every command applied before must still be, and the
 * newly applied ones must be from the last cycle, above the sequence where it started. Returns the new ones.
 */
function checkNothingLost(epoch: Epoch, stored: Map<string, Outcome | undefined>, lastSequence: number): string[] {
  assert.ok(lastSequence >= epoch.ackedSequenceMax, `recovered to ${lastSequence}, below acknowledged seq ${epoch.ackedSequenceMax}`);
  const fresh: string[] = [];
  for (const [id, sent] of epoch.commands) {
    const outcome = stored.get(id);
    if (sent.acked !== undefined) {
      assert.ok(outcome !== undefined, `acknowledged command ${id} (seq ${sent.acked.seq}) was lost`);
      assertSameOutcome(outcome, sent.acked, `acknowledged command ${id} has another result after the crash`);
    }
    if (sent.applied !== undefined) {
      assertSameOutcome(outcome, sent.applied, `command ${id}, applied before, changed or vanished`);
      continue;
    }
    if (outcome === undefined) continue;
    assert.equal(sent.sentCycle, epoch.cycle, `command ${id} was applied without being sent in the last cycle`);
    assert.ok(outcome.seq > epoch.loadStartSequence && outcome.seq <= lastSequence, `command ${id} applied at seq ${outcome.seq}, outside the last cycle`);
    fresh.push(id);
  }
  return fresh;
}

/** Commands the reference executes in one call: an atomic group, or singles at consecutive seqs. */
interface Unit {
  ids: string[];
  atomic: boolean;
  /** The seq of the first command. */
  seq: number;
}

/**
 * The newly applied ids, sorted by seq, as units: each atomic group whole (it must have been applied whole, at
 * consecutive seqs, in its order), and each run of singles at consecutive seqs together (one call per run keeps
 * the reference's per-call scan of all holds off the per-command path).
 */
function appliedUnits(epoch: Epoch, stored: Map<string, Outcome | undefined>, fresh: string[]): Unit[] {
  fresh.sort((a, b) => stored.get(a)!.seq - stored.get(b)!.seq);
  const units: Unit[] = [];
  const done = new Set<string>();
  for (const id of fresh) {
    if (done.has(id)) continue;
    done.add(id);
    const group = epoch.commands.get(id)!.group;
    const seq = stored.get(id)!.seq;
    const last = units[units.length - 1];
    if (group === undefined && last !== undefined && !last.atomic && last.seq + last.ids.length === seq) {
      last.ids.push(id);
      continue;
    }
    if (group === undefined) {
      units.push({ ids: [id], atomic: false, seq });
      continue;
    }
    assert.equal(group[0], id, `group member ${id} applied before the group's first command`);
    group.forEach((member, k) => {
      assert.equal(stored.get(member)?.seq, seq + k, `atomic group of ${id} not applied whole at consecutive seqs`);
      done.add(member);
    });
    units.push({ ids: [...group], atomic: true, seq });
  }
  return units;
}

/**
 * Replay the newly applied commands into the reference ledger in seq order, each at the seq the shard gave it (the
 * gaps are duplicates and id_reused answers, which change nothing and store nothing), and compare every result.
 * A command applied twice, or a group applied in part, shows up here or in the accounts.
 */
function replayIntoReference(epoch: Epoch, stored: Map<string, Outcome | undefined>, fresh: string[]): void {
  for (const unit of appliedUnits(epoch, stored, fresh)) {
    assert.ok(unit.seq > epoch.reference.lastSequence, `seq ${unit.seq} used twice`);
    epoch.reference.lastSequence = unit.seq - 1;
    const commands = unit.ids.map((id) => epoch.commands.get(id)!.command);
    const expected = epoch.reference.execute(commands, { atomic: unit.atomic });
    unit.ids.forEach((id, k) => {
      assertSameOutcome(stored.get(id), outcomeOf(expected[k]), `command ${id}: the shard's result differs from the reference's`);
      epoch.commands.get(id)!.applied = stored.get(id);
    });
    totals.commandsApplied += unit.ids.length;
  }
}

/** Every account of every partner must equal the reference's. */
async function checkAccounts(child: ChildShard, epoch: Epoch): Promise<void> {
  const keys = PARTNERS.flatMap((partnerId) => ACCOUNTS.map((accountId) => ({ partnerId, accountId })));
  const reply = await child.request({ accounts: keys });
  assert.equal(reply.accounts?.length, keys.length);
  keys.forEach(({ partnerId, accountId }, k) => {
    const actual = reply.accounts![k];
    const expected = epoch.reference.account(partnerId, accountId);
    if (expected === undefined) return assert.equal(actual, null, `${partnerId}/${accountId} exists only in the shard`);
    assert.ok(actual !== null, `${partnerId}/${accountId} exists only in the reference`);
    const fields = (account: Omit<Account, "partnerId" | "accountId">) => ({
      currency: account.currency,
      balance: account.balance,
      held: account.held,
      available: account.available,
      overdraftLimit: account.overdraftLimit,
      status: account.status,
      seq: account.seq,
    });
    assert.deepEqual(fields(actual), fields(expected), `${partnerId}/${accountId} differs from the reference`);
  });
}

/** All checks after a restart. */
async function checkRecovery(child: ChildShard, epoch: Epoch, ready: Ready): Promise<void> {
  const stored = await storedResults(child, epoch);
  const fresh = checkNothingLost(epoch, stored, ready.lastSequence);
  replayIntoReference(epoch, stored, fresh);
  await checkAccounts(child, epoch);
}

/**
 * Re-send acknowledged commands (a sample, or all of them) as retries: each must answer duplicate with its stored
 * result, the sequence must advance by one per command and no account may change. (The state hash is no help
 * here: it covers the stamped time, which each new journal record moves.)
 */
async function checkResend(child: ChildShard, epoch: Epoch, random: Random, all: boolean): Promise<void> {
  const acked = [...epoch.commands.values()].filter((sent) => sent.acked !== undefined);
  if (!all) {
    // A sample without repeats: the first RESEND_SAMPLE_COUNT of a partial Fisher-Yates shuffle.
    const count = Math.min(RESEND_SAMPLE_COUNT, acked.length);
    for (let k = 0; k < count; k++) {
      const other = random.int(k, acked.length - 1);
      [acked[k], acked[other]] = [acked[other], acked[k]];
    }
    acked.length = count;
  }
  const before = await child.state();
  for (let start = 0; start < acked.length; start += RESEND_COMMANDS_MAX) {
    const chunk = acked.slice(start, start + RESEND_COMMANDS_MAX);
    const reply = await child.request({ commands: chunk.map((sent) => sent.command), atomic: false });
    assert.equal(reply.error, undefined, `the shard refused a re-send: ${reply.error}`);
    chunk.forEach((sent, k) => {
      const result = reply.results![k];
      assert.equal(result.duplicate, true, `re-sent ${sent.command.id} was applied again`);
      assertSameOutcome(outcomeOf(result), sent.acked, `re-sent ${sent.command.id} answered differently`);
    });
  }
  totals.resent += acked.length;
  assert.equal((await child.state()).lastSequence, before.lastSequence + acked.length);
  await checkAccounts(child, epoch);
}

/**
 * The point of the small snapshot interval and segment size: snapshots were kept, and compaction deleted the oldest
 * segments (segment files are named by their first sequence, zero-padded), once the epoch was long enough.
 */
function checkSnapshotsAndCompaction(epoch: Epoch, lastSequence: number): void {
  const snapshotCount = readdirSync(join(epoch.directory, "snapshots")).length;
  const segments = readdirSync(join(epoch.directory, "journal")).filter((name) => /^\d{20}\./.test(name)).sort();
  assert.ok(segments.length > 0, "no journal segment");
  const oldestSequence = Number(segments[0].slice(0, 20));
  totals.snapshotFiles += snapshotCount;
  totals.segmentFiles += segments.length;
  if (oldestSequence > 1) totals.epochsCompacted++;
  if (lastSequence < COMPACTION_EXPECTED_SEQUENCE_MIN) return;
  assert.ok(snapshotCount > 0, "no snapshot was kept");
  assert.ok(oldestSequence > 1, `the journal still starts at sequence 1 after ${lastSequence} commands: no compaction`);
}

/**
 * The end of an epoch: every acknowledged command re-sent; then an idle SIGKILL, after which recovery (snapshot and
 * journal) must rebuild exactly the state that was running (same sequence and state hash: accounts, holds, window,
 * time); then a clean close (which snapshots) and a reopen, with the same sequence and hash and the recovery checks
 * passing again. Leaves no child running and removes the epoch's directory.
 */
async function finishEpoch(child: ChildShard, epoch: Epoch, random: Random): Promise<void> {
  await checkResend(child, epoch, random, true);
  const running = await child.state();
  await child.kill();
  const afterKill = await ChildShard.start(epoch.directory);
  assert.equal(afterKill.ready.lastSequence, running.lastSequence, "recovery after an idle SIGKILL changed the sequence");
  assert.equal(afterKill.ready.stateHash, running.stateHash, "recovery after an idle SIGKILL rebuilt another state");
  await afterKill.child.end();
  const reopened = await ChildShard.start(epoch.directory);
  assert.equal(reopened.ready.lastSequence, running.lastSequence, "a clean close and reopen changed the sequence");
  assert.equal(reopened.ready.stateHash, running.stateHash, "a clean close and reopen changed the state");
  await checkRecovery(reopened.child, epoch, reopened.ready);
  await reopened.child.end();
  checkSnapshotsAndCompaction(epoch, running.lastSequence);
  rmSync(epoch.directory, { recursive: true, force: true });
}

// ---- The test ----------------------------------------------------------------------------------------------

describe("crash: kill -9 under load", () => {
  const root = mkdtempSync(join(tmpdir(), "hotledger-crash-"));

  after(async () => {
    for (const child of liveChildren) child.killNow();
    await Promise.all([...liveChildren].map((child) => child.exited));
    rmSync(root, { recursive: true, force: true });
  });

  test(`no acknowledged command is lost or applied twice across ${KILLS} SIGKILLs (seed ${SEED})`, { timeout: TEST_MS_MAX + 30_000 }, async () => {
    const random = new Random(SEED);
    const startedMs = Date.now();
    let epoch: Epoch | undefined;
    let child: ChildShard | undefined;
    try {
      for (let kill = 1; kill <= KILLS; kill++) {
        assert.ok(Date.now() - startedMs < TEST_MS_MAX, `over ${TEST_MS_MAX} ms after ${kill - 1} kills`);
        if (epoch === undefined) {
          epoch = new Epoch(totals.epochs++, root);
          ({ child } = await ChildShard.start(epoch.directory));
        }
        epoch.cycle++;
        epoch.loadStartSequence = (await child!.state()).lastSequence;
        await loadAndKill(child!, epoch, random);
        const restarted = await ChildShard.start(epoch.directory);
        child = restarted.child;
        await checkRecovery(child, epoch, restarted.ready);
        await checkResend(child, epoch, random, false);
        if (epoch.full || kill === KILLS) {
          await finishEpoch(child, epoch, random);
          epoch = undefined;
          child = undefined;
        }
      }
    } catch (error) {
      console.error(`crash test failed with seed ${SEED} (rerun: CRASH_SEED=${SEED} CRASH_KILLS=${KILLS})`);
      throw error;
    } finally {
      if (child !== undefined) child.killNow();
    }
    const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
    console.log(`crash test: ${JSON.stringify(totals)} in ${seconds} s (seed ${SEED})`);
    assert.equal(totals.kills, KILLS);
    assert.ok(totals.commandsAcked > 0, "no command was ever acknowledged");
  });
});
