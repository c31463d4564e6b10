/**
 * How many credit/debit commands per second does one shard's core apply, single-threaded, with idempotency on?
 * And what does an account cost in memory? The napkin math these numbers are checked against is in
 * bench/README.md.
 *
 * Run: `bun bench/core.ts` (a table), `--json` (one JSON line on stdout), `--micro` (mitata benches of the
 * pieces). Commands are built before the timed region; the timed loop is the engine's allocation-free path,
 * `tryPublish` + `drain`, in batches. Every result code is checked, so a number never comes from a wrong run.
 * This file is Bun-first (`Bun.gc`, `Bun.version`); it falls back to `globalThis.gc` elsewhere.
 */
import { loadavg } from "node:os";
import { Engine } from "../core/index.ts";
import { hashWords } from "../core/hash.ts";
import type { Command } from "../core/types.ts";

// Bounds: every loop below is bounded by one of these.

/** Snapshot encode + decode runs at 1M accounts; the median is reported. */
const SNAPSHOT_RUNS = 3;
/** Timed runs per metric (after one warm-up run); the median is reported. */
const RUNS = 5;
/** A run is at least this many commands (and at least RUN_MS_MIN)... */
const RUN_COMMANDS_MIN = 2_000_000;
/** ...and at least this long. */
const RUN_MS_MIN = 300;
/** A run stops here even if slow: at most this many commands... */
const RUN_COMMANDS_MAX = 20_000_000;
/** ...or this long (checked once per batch). */
const RUN_MS_MAX = 10_000;
/** Commands per tryPublish + drain. Must fit the ring (default 8192 slots). */
const BATCH_COMMANDS = 1000;
/**
 * Pre-built commands of the `--micro` pool, cycled through. Must exceed the idempotency window (default 2^20) so a
 * cycled id has always been evicted: every command is new to the engine. Costs ~150 B each: ~300 MB.
 */
const POOL_COMMANDS = 2_000_000;
/** Default idempotency window (core/limits.ts IDEMPOTENCY_COMMANDS_DEFAULT); the micro pool must be bigger. */
const WINDOW_COMMANDS = 1 << 20;
/** Accounts of the `opsPerSec` bench. */
const ACCOUNTS_SMALL = 10_000;
/** Accounts of the `bigOpsPerSec` and `bytesPerAccount` benches. */
const ACCOUNTS_BIG = 1_000_000;
/** accountsMax for the big engine: the next power of two, so the hash index stays at load <= 0.5. */
const ACCOUNTS_MAX_BIG = 1 << 20;
/** Partners the accounts are spread over. */
const PARTNERS = 16;
/** Every account starts with this balance, so no debit (amounts <= AMOUNT_BENCH_MAX) is ever rejected. */
const FUNDING = 1_000_000_000_000;
/** Largest credit or debit amount, in minor units. */
const AMOUNT_BENCH_MAX = 1000;
/** Window size for the memory bench: small, so the heap growth is the accounts' (must be >= the ring). */
const WINDOW_COMMANDS_SMALL = 1 << 13;
/** Window size of the `windowSmallOpsPerSec` diagnostic: ~2 MB, inside L3. */
const WINDOW_COMMANDS_DIAGNOSTIC = 1 << 14;
/** Hold slots for the memory bench: small, for the same reason. */
const HOLDS_SMALL = 1024;
/** Stamped time of the first batch; each batch adds 1 ms (deterministic, far inside the 24 h retention). */
const TIME_MS_START = 1_700_000_000_000;

const argv = process.argv.slice(2);
const jsonMode = argv.includes("--json");
const microMode = argv.includes("--micro");
/** `--only ops,windowSmall,hot,big,memory,map` runs a subset (for development). */
const onlyIndex = argv.indexOf("--only");
const only = onlyIndex >= 0 ? new Set(argv[onlyIndex + 1].split(",")) : undefined;

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`bench assertion: ${message}`);
}

assert(BATCH_COMMANDS <= 8192, "a batch must fit the default ring");
assert(POOL_COMMANDS > WINDOW_COMMANDS, "the pool must exceed the window, or cycled ids would be duplicates");
assert(POOL_COMMANDS % BATCH_COMMANDS === 0, "batches tile the pool");
assert(ACCOUNTS_BIG <= ACCOUNTS_MAX_BIG, "the big engine must hold the big accounts");

function log(message: string): void {
  if (!jsonMode) process.stderr.write(`${message}\n`);
}

/** A full, synchronous garbage collection. */
function collect(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun) bun.gc(true);
  else (globalThis as { gc?: () => void }).gc?.();
}

/** xorshift32: a deterministic sequence, so every run sees the same commands. */
function random(state: Uint32Array): number {
  let x = state[0];
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  state[0] = x;
  return x >>> 0;
}

function partnerId(partner: number): string {
  return `partner-${String(partner).padStart(2, "0")}`;
}

function accountId(account: number): string {
  return `acct-${String(account).padStart(7, "0")}`;
}

/** A ULID-sized (26 characters) unique command id. */
function commandId(tag: string, index: number): string {
  return `${tag}-${String(index).padStart(10, "0")}-${((index * 2654435761) >>> 0).toString(16).padStart(8, "0")}`;
}

/** Accounts 0..count-1: account k belongs to partner k % PARTNERS. Strings built once and shared. */
interface AccountSet {
  count: number;
  partnerIds: string[];
  accountIds: string[];
}

function accountSet(count: number): AccountSet {
  const partnerIds: string[] = new Array(count);
  const accountIds: string[] = new Array(count);
  for (let k = 0; k < count; k++) {
    partnerIds[k] = partnerId(k % PARTNERS);
    accountIds[k] = accountId(k);
  }
  return { count, partnerIds, accountIds };
}

/** Result-code reader over the engine's ring, checking a just-drained batch. */
class Checker {
  constructor(private readonly engine: Engine) {}
  /** Count non-ok codes of the last `count` sequences. */
  rejectedInLast(count: number): number {
    const code = this.engine.ring.code;
    const mask = this.engine.ring.mask;
    const last = this.engine.lastSequence;
    let rejected = 0;
    for (let sequence = last - count + 1; sequence <= last; sequence++) {
      if (code[sequence & mask] !== 0) rejected++;
    }
    return rejected;
  }
}

let timeMs = TIME_MS_START;

/** Publish and drain `commands` in batches, untimed; assert every result is ok. */
function apply(engine: Engine, commands: Command[]): void {
  const checker = new Checker(engine);
  for (let start = 0; start < commands.length; start += BATCH_COMMANDS) {
    const count = Math.min(BATCH_COMMANDS, commands.length - start);
    const published = engine.tryPublish(commands, start, count, false, timeMs++);
    assert(published, "the ring must have room after a drain");
    const drained = engine.drain();
    assert(drained === count, `drain processed ${drained}, expected ${count}`);
    const rejected = checker.rejectedInLast(count);
    assert(rejected === 0, `${rejected} setup commands rejected at batch ${start}`);
  }
}

/** Open and fund every account of `set`, in batches of BATCH_COMMANDS (untimed). */
function openAccounts(engine: Engine, set: AccountSet, fund: boolean): void {
  const batch: Command[] = new Array(BATCH_COMMANDS);
  for (let start = 0; start < set.count; start += BATCH_COMMANDS) {
    const count = Math.min(BATCH_COMMANDS, set.count - start);
    batch.length = count;
    for (let i = 0; i < count; i++) {
      const k = start + i;
      batch[i] = {
        type: "openAccount",
        id: commandId("open", k),
        partnerId: set.partnerIds[k],
        accountId: set.accountIds[k],
        currency: "EUR",
      };
    }
    apply(engine, batch);
    if (!fund) continue;
    for (let i = 0; i < count; i++) {
      const k = start + i;
      batch[i] = {
        type: "credit",
        id: commandId("fund", k),
        partnerId: set.partnerIds[k],
        accountId: set.accountIds[k],
        amount: FUNDING,
      };
    }
    apply(engine, batch);
  }
}

/**
 * Batches of BATCH_COMMANDS credits and debits (50/50) on accounts picked by `pick`, each with a new id, each made
 * the way a transport makes them: JSON.parse of a request body (so strings are flat and the objects are fresh in
 * cache, as a shard sees them). Building a batch is not timed.
 */
class CommandSource {
  private readonly state = new Uint32Array([0x9e3779b9]);
  private next = 0;
  constructor(
    private readonly tag: string,
    private readonly set: AccountSet,
    private readonly pick: (state: Uint32Array) => number,
  ) {}

  batch(): Command[] {
    const parts: string[] = new Array(BATCH_COMMANDS);
    for (let i = 0; i < BATCH_COMMANDS; i++) {
      const k = this.pick(this.state);
      const amount = 1 + (random(this.state) % AMOUNT_BENCH_MAX);
      const type = (random(this.state) & 1) === 0 ? "credit" : "debit";
      parts[i] = `{"type":"${type}","id":"${commandId(this.tag, this.next++)}","partnerId":"${this.set.partnerIds[k]}","accountId":"${this.set.accountIds[k]}","amount":${amount}}`;
    }
    return JSON.parse(`[${parts.join(",")}]`) as Command[];
  }
}

/** One run's rates: per wall-clock second (the metric) and per CPU second of this process (less noisy on a shared box). */
interface Run {
  wall: number;
  cpu: number;
  /** Commands per second of drain() alone: the business-logic processor, without translating commands in. */
  processor: number;
}

/** CPU milliseconds this process has used (all threads, so the GC's helper threads too). */
function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** One run: publish + drain one fresh batch at a time (building batches is not timed). Returns commands per second. */
function engineRun(engine: Engine, source: CommandSource): Run {
  const code = engine.ring.code;
  const mask = engine.ring.mask;
  let done = 0;
  let rejected = 0;
  let cpu = 0;
  const begin = performance.now();
  let elapsed = 0;
  let processorMs = 0;
  while (done < RUN_COMMANDS_MAX && performance.now() - begin < RUN_MS_MAX) {
    const batch = source.batch();
    const cpuBegin = cpuMs();
    const batchBegin = performance.now();
    const published = engine.tryPublish(batch, 0, BATCH_COMMANDS, false, timeMs++);
    assert(published, "the ring must have room after a drain");
    const drainBegin = performance.now();
    const drained = engine.drain();
    processorMs += performance.now() - drainBegin;
    assert(drained === BATCH_COMMANDS, `drain processed ${drained}, expected ${BATCH_COMMANDS}`);
    // Read every result code, as a transport would.
    const last = engine.lastSequence;
    for (let sequence = last - BATCH_COMMANDS + 1; sequence <= last; sequence++) {
      if (code[sequence & mask] !== 0) rejected++;
    }
    done += BATCH_COMMANDS;
    elapsed += performance.now() - batchBegin;
    cpu += cpuMs() - cpuBegin;
    if (done >= RUN_COMMANDS_MIN && elapsed >= RUN_MS_MIN) break;
  }
  assert(rejected === 0, `${rejected} bench commands rejected`);
  return { wall: (done / elapsed) * 1000, cpu: (done / cpu) * 1000, processor: (done / processorMs) * 1000 };
}

interface Measured {
  median: number;
  min: number;
  max: number;
  runs: number[];
  /** Median of the per-CPU-second rates. */
  cpuMedian: number;
  /** Median of the processor-only rates. */
  processorMedian: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function summarize(runs: Run[]): Measured {
  const wall = runs.map((run) => run.wall);
  return {
    median: median(wall),
    min: Math.min(...wall),
    max: Math.max(...wall),
    runs: wall,
    cpuMedian: median(runs.map((run) => run.cpu)),
    processorMedian: median(runs.map((run) => run.processor)),
  };
}

/** One warm-up run (JIT, fills the window), then RUNS timed runs. */
function measureEngine(label: string, engine: Engine, source: CommandSource): Measured {
  const warm = engineRun(engine, source);
  log(`  ${label} warm-up: ${format(warm.wall)}/s`);
  const runs: Run[] = [];
  for (let run = 0; run < RUNS; run++) {
    runs.push(engineRun(engine, source));
    log(`  ${label} run ${run + 1}: ${format(runs[run].wall)}/s (${format(runs[run].cpu)}/CPU-s)`);
  }
  return summarize(runs);
}

function benchOps(): Measured {
  log("opsPerSec: 10k accounts");
  const set = accountSet(ACCOUNTS_SMALL);
  const engine = new Engine({ accountsMax: 1 << 14 });
  openAccounts(engine, set, true);
  return measureEngine("ops", engine, new CommandSource("ops", set, (state) => random(state) % ACCOUNTS_SMALL));
}

/**
 * Diagnostic: `opsPerSec` with a window that fits in L2/L3 (2^14 entries, ~2 MB). The gap to `opsPerSec` is what
 * the 2^20-entry window costs in cache and TLB misses; the rest is CPU work.
 */
function benchWindowSmall(): Measured {
  log("windowSmallOpsPerSec: 10k accounts, window 2^14");
  const set = accountSet(ACCOUNTS_SMALL);
  const engine = new Engine({ accountsMax: 1 << 14, idempotencyCommandsMax: WINDOW_COMMANDS_DIAGNOSTIC });
  openAccounts(engine, set, true);
  return measureEngine("windowSmall", engine, new CommandSource("small", set, (state) => random(state) % ACCOUNTS_SMALL));
}

function benchHot(): Measured {
  log("hotOpsPerSec: one account");
  const set = accountSet(1);
  const engine = new Engine({ accountsMax: 1 << 10 });
  openAccounts(engine, set, true);
  return measureEngine("hot", engine, new CommandSource("hot", set, () => 0));
}

/** Encode and decode times of a snapshot of `engine`, median of SNAPSHOT_RUNS. */
function benchSnapshot(engine: Engine): { encodeMs: number; decodeMs: number; bytes: number } {
  const encode: number[] = [];
  const decode: number[] = [];
  let bytes = 0;
  for (let run = 0; run < SNAPSHOT_RUNS; run++) {
    const encodeBegin = performance.now();
    const snapshot = engine.snapshot();
    encode.push(performance.now() - encodeBegin);
    bytes = snapshot.length;
    const decodeBegin = performance.now();
    const restored = Engine.restore(snapshot);
    decode.push(performance.now() - decodeBegin);
    assert(restored.lastSequence === engine.lastSequence, "restore gives the same sequence");
    if (run === 0) assert(restored.stateHash() === engine.stateHash(), "restore gives the same state hash");
    collect();
  }
  log(`  snapshot: ${format(bytes)} B, encode ${median(encode).toFixed(0)} ms, decode ${median(decode).toFixed(0)} ms`);
  return { encodeMs: median(encode), decodeMs: median(decode), bytes };
}

function benchBig(): { measured: Measured; shardBytes: number; snapshot: { encodeMs: number; decodeMs: number; bytes: number } } {
  log("bigOpsPerSec: 1M accounts");
  const memoryBefore = memory();
  const set = accountSet(ACCOUNTS_BIG);
  const engine = new Engine({ accountsMax: ACCOUNTS_MAX_BIG });
  openAccounts(engine, set, true);
  const measured = measureEngine("big", engine, new CommandSource("big", set, (state) => random(state) % ACCOUNTS_BIG));
  const snapshot = benchSnapshot(engine);
  // The whole shard with default window and holds, at 1M accounts and a full window (strings excluded: the
  // account id strings and the pool are still alive, so subtract them by measuring before dropping them).
  const memoryWith = memory();
  set.partnerIds.length = 0;
  set.accountIds.length = 0;
  const memoryEngineOnly = memory();
  assert(engine.lastSequence > 0, "the engine stays alive until measured");
  log(`  shard with account-id strings ${format(memoryWith.heap - memoryBefore.heap)} B, without ${format(memoryEngineOnly.heap - memoryBefore.heap)} B`);
  return { measured, shardBytes: memoryEngineOnly.heap - memoryBefore.heap, snapshot };
}

interface Memory {
  /** Heap bytes including typed-array backing stores (see heapCountsExternal). */
  heap: number;
  rss: number;
}

/**
 * Whether `heapUsed` already counts typed-array backing stores (Bun/JSC: yes; Node/V8: no, they are in
 * `external`). Checked once with an 8 MiB array, so the memory numbers are honest on either runtime.
 */
const heapCountsExternal: boolean = (() => {
  collect();
  const before = process.memoryUsage().heapUsed;
  const probe = new Float64Array(1 << 20);
  probe[0] = 1;
  collect();
  const grown = process.memoryUsage().heapUsed - before;
  return probe[0] === 1 && grown >= 8 * 1024 * 1024 * 0.9;
})();

function memory(): Memory {
  collect();
  const usage = process.memoryUsage();
  return { heap: heapCountsExternal ? usage.heapUsed : usage.heapUsed + usage.external, rss: usage.rss };
}

/**
 * Heap growth per account at 1M accounts: heap before the engine exists vs after 1M accounts are open, divided
 * by 1M. The window and hold table are set small so the growth is the accounts' (plus the fixed ring and
 * partner table, ~4 B per account). The account id strings are built and dropped batch by batch, so they are
 * garbage by the second measurement. RSS counts touched pages only (typed arrays are zeroed lazily).
 */
function benchMemory(): { bytesPerAccount: number; rssBytesPerAccount: number; windowBytesPerEntry: number } {
  log("bytesPerAccount: 1M accounts, small window");
  const before = memory();
  const engine = new Engine({
    accountsMax: ACCOUNTS_MAX_BIG,
    idempotencyCommandsMax: WINDOW_COMMANDS_SMALL,
    holdsMax: HOLDS_SMALL,
  });
  const created = memory();
  const batch: Command[] = new Array(BATCH_COMMANDS);
  for (let start = 0; start < ACCOUNTS_BIG; start += BATCH_COMMANDS) {
    for (let i = 0; i < BATCH_COMMANDS; i++) {
      const k = start + i;
      batch[i] = {
        type: "openAccount",
        id: commandId("open", k),
        partnerId: partnerId(k % PARTNERS),
        accountId: accountId(k),
        currency: "EUR",
      };
    }
    apply(engine, batch);
  }
  batch.length = 0;
  const after = memory();
  assert(engine.lastSequence >= ACCOUNTS_BIG, "every account was opened");
  log(`  engine created: +${format(created.heap - before.heap)} B heap, +${format(created.rss - before.rss)} B rss`);
  log(`  1M accounts open: +${format(after.heap - before.heap)} B heap, +${format(after.rss - before.rss)} B rss`);
  const bytesPerAccount = (after.heap - before.heap) / ACCOUNTS_BIG;
  const rssBytesPerAccount = (after.rss - before.rss) / ACCOUNTS_BIG;

  // Window entry cost: the heap of an engine with the default 2^20 window minus one with the small window.
  const small = memory();
  const smallEngine = new Engine({ accountsMax: 1024, holdsMax: HOLDS_SMALL, idempotencyCommandsMax: WINDOW_COMMANDS_SMALL });
  const smallAfter = memory();
  const bigEngine = new Engine({ accountsMax: 1024, holdsMax: HOLDS_SMALL, idempotencyCommandsMax: WINDOW_COMMANDS });
  const bigAfter = memory();
  const windowBytesPerEntry =
    (bigAfter.heap - smallAfter.heap - (smallAfter.heap - small.heap)) / (WINDOW_COMMANDS - WINDOW_COMMANDS_SMALL);
  assert(smallEngine !== bigEngine && engine.lastSequence > 0, "keep the engines alive until measured");
  return { bytesPerAccount, rssBytesPerAccount, windowBytesPerEntry };
}

/** The yardstick: Map<number, number> get, add, set over 10k keys, in runs like the engine's. */
function benchMapLoop(): Measured {
  log("mapLoopOpsPerSec: Map<number, number>, 10k keys");
  const map = new Map<number, number>();
  for (let k = 0; k < ACCOUNTS_SMALL; k++) map.set(k * 7919, FUNDING);
  const state = new Uint32Array([0x9e3779b9]);
  const keys = new Int32Array(1 << 16);
  const amounts = new Float64Array(1 << 16);
  for (let i = 0; i < keys.length; i++) {
    keys[i] = (random(state) % ACCOUNTS_SMALL) * 7919;
    amounts[i] = (random(state) & 1) === 0 ? 1 + (random(state) % AMOUNT_BENCH_MAX) : -(1 + (random(state) % AMOUNT_BENCH_MAX));
  }
  const mask = keys.length - 1;
  let position = 0;
  let sink = 0;
  const mapRun = (): Run => {
    let done = 0;
    const cpuBegin = cpuMs();
    const begin = performance.now();
    let elapsed = 0;
    while (done < RUN_COMMANDS_MAX && elapsed < RUN_MS_MAX) {
      for (let i = 0; i < BATCH_COMMANDS; i++) {
        const key = keys[position];
        const balance = map.get(key)! + amounts[position];
        map.set(key, balance);
        position = (position + 1) & mask;
      }
      sink += map.get(keys[position])!;
      done += BATCH_COMMANDS;
      elapsed = performance.now() - begin;
      if (done >= RUN_COMMANDS_MIN && elapsed >= RUN_MS_MIN) break;
    }
    const wall = (done / elapsed) * 1000;
    return { wall, cpu: (done / (cpuMs() - cpuBegin)) * 1000, processor: wall };
  };
  mapRun();
  const runs: Run[] = [];
  for (let run = 0; run < RUNS; run++) {
    runs.push(mapRun());
    log(`  map run ${run + 1}: ${format(runs[run].wall)}/s (${format(runs[run].cpu)}/CPU-s)`);
  }
  assert(Number.isFinite(sink), "the map loop's result is used");
  return summarize(runs);
}

function format(value: number): string {
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (Math.abs(value) >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(1);
}

async function micro(): Promise<void> {
  const { bench, group, run, do_not_optimize } = await import("mitata");
  const set = accountSet(ACCOUNTS_SMALL);
  const engine = new Engine({ accountsMax: 1 << 14 });
  openAccounts(engine, set, true);
  const source = new CommandSource("micro", set, (state) => random(state) % ACCOUNTS_SMALL);
  const pool: Command[] = [];
  while (pool.length < POOL_COMMANDS) pool.push(...source.batch());
  let start = 0;
  // Warm the window so every bench command also evicts.
  apply(engine, pool.slice(0, WINDOW_COMMANDS));
  start = WINDOW_COMMANDS;
  const next = (count: number): number => {
    if (start + count > POOL_COMMANDS) start = 0;
    const first = start;
    start += count;
    return first;
  };
  const map = new Map<number, number>();
  for (let k = 0; k < ACCOUNTS_SMALL; k++) map.set(k, FUNDING);
  let key = 0;
  // A 48-byte key (~ partner + account + id of one command) as words, as the ledger hashes it out of a slot.
  const words = new Uint32Array(16);
  for (let i = 0; i < 12; i++) words[i] = 0x61626364 + i;
  let seed = 0;
  group("pieces (10k accounts, window full)", () => {
    bench("Map<number, number> get + add + set", () => {
      key = (key + 7919) % ACCOUNTS_SMALL;
      map.set(key, map.get(key)! + 1);
    });
    bench("hashWords: 48-byte key (12 words)", () => {
      do_not_optimize(hashWords(words, 0, 12, seed++));
    });
    bench("one credit/debit: tryPublish(1) + drain", () => {
      engine.tryPublish(pool, next(1), 1, false, timeMs++);
      do_not_optimize(engine.drain());
    });
    bench("a batch of 1000: tryPublish(1000) + drain (time / 1000 = per command)", () => {
      engine.tryPublish(pool, next(BATCH_COMMANDS), BATCH_COMMANDS, false, timeMs++);
      do_not_optimize(engine.drain());
    });
  });
  await run();
}

/** The 1-minute load average (0 where the runtime has none): above ~1 on this 2-core box, numbers are noisy. */
function loadAverage(): number {
  return loadavg()[0];
}

function bunVersion(): string {
  const bun = (globalThis as { Bun?: { version: string } }).Bun;
  return bun ? bun.version : `not bun (${process.version})`;
}

async function main(): Promise<void> {
  if (microMode) {
    await micro();
    return;
  }
  const loadStart = loadAverage();
  const wants = (name: string): boolean => only === undefined || only.has(name);
  const memoryResult = wants("memory") ? benchMemory() : undefined;
  const mapLoop = wants("map") ? benchMapLoop() : undefined;
  const ops = wants("ops") ? benchOps() : undefined;
  collect();
  const windowSmall = wants("windowSmall") ? benchWindowSmall() : undefined;
  collect();
  const hot = wants("hot") ? benchHot() : undefined;
  collect();
  const big = wants("big") ? benchBig() : undefined;
  const result = {
    opsPerSec: round(ops?.median),
    hotOpsPerSec: round(hot?.median),
    bigOpsPerSec: round(big?.measured.median),
    bytesPerAccount: round(memoryResult?.bytesPerAccount, 1),
    mapLoopOpsPerSec: round(mapLoop?.median),
    ratioOpsToMapLoop: ops && mapLoop ? round(ops.median / mapLoop.median, 4) : null,
    processorOpsPerSec: round(ops?.processorMedian),
    hotProcessorOpsPerSec: round(hot?.processorMedian),
    bigProcessorOpsPerSec: round(big?.measured.processorMedian),
    snapshot1MEncodeMs: round(big?.snapshot.encodeMs),
    snapshot1MDecodeMs: round(big?.snapshot.decodeMs),
    snapshot1MBytes: round(big?.snapshot.bytes),
    commandsPerRun: RUN_COMMANDS_MIN,
    runs: RUNS,
    bunVersion: bunVersion(),
    windowSmallOpsPerSec: round(windowSmall?.median),
    rssBytesPerAccount: round(memoryResult?.rssBytesPerAccount, 1),
    windowBytesPerEntry: round(memoryResult?.windowBytesPerEntry, 1),
    shardBytesAt1MAccounts: round(big?.shardBytes),
    memoryMeasure: heapCountsExternal ? "heapUsed (includes typed-array stores)" : "heapUsed + external",
    batchCommands: BATCH_COMMANDS,
    perCpuSecond: {
      ops: round(ops?.cpuMedian),
      windowSmall: round(windowSmall?.cpuMedian),
      hot: round(hot?.cpuMedian),
      big: round(big?.measured.cpuMedian),
      mapLoop: round(mapLoop?.cpuMedian),
    },
    loadAverage: { start: round(loadStart, 2), end: round(loadAverage(), 2) },
    runsOpsPerSec: {
      ops: ops?.runs.map((value) => round(value)),
      windowSmall: windowSmall?.runs.map((value) => round(value)),
      hot: hot?.runs.map((value) => round(value)),
      big: big?.measured.runs.map((value) => round(value)),
      mapLoop: mapLoop?.runs.map((value) => round(value)),
    },
  };
  if (jsonMode) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const row = (name: string, measured: Measured | undefined): string =>
    measured === undefined
      ? `| ${name} | skipped | | | |`
      : `| ${name} | ${format(measured.median)} | ${format(measured.min)} | ${format(measured.max)} | ${format(measured.cpuMedian)} |`;
  const lines = [
    `hotledger core bench: Bun ${result.bunVersion}, ${RUNS} runs of >= ${format(RUN_COMMANDS_MIN)} commands and >= ${RUN_MS_MIN} ms, batches of ${BATCH_COMMANDS}`,
    "",
    "| metric | median | min | max | per CPU-second (median) |",
    "| --- | --- | --- | --- | --- |",
    row("opsPerSec (10k accounts)", ops),
    row("windowSmallOpsPerSec (10k accounts, window 2^14)", windowSmall),
    row("hotOpsPerSec (1 account)", hot),
    row("bigOpsPerSec (1M accounts)", big?.measured),
    row("mapLoopOpsPerSec (Map, 10k keys)", mapLoop),
    `| ratioOpsToMapLoop | ${result.ratioOpsToMapLoop ?? "skipped"} | | | |`,
    `| processorOpsPerSec (drain only; 10k / 1 / 1M accounts) | ${result.processorOpsPerSec ?? "-"} / ${result.hotProcessorOpsPerSec ?? "-"} / ${result.bigProcessorOpsPerSec ?? "-"} | | | |`,
    `| snapshot at 1M accounts + full window: encode / decode ms | ${result.snapshot1MEncodeMs ?? "skipped"} / ${result.snapshot1MDecodeMs ?? "skipped"} | | | |`,
    `| bytesPerAccount (at 1M, ${result.memoryMeasure}) | ${result.bytesPerAccount ?? "skipped"} | | | |`,
    `| rssBytesPerAccount (at 1M) | ${result.rssBytesPerAccount ?? "skipped"} | | | |`,
    `| windowBytesPerEntry | ${result.windowBytesPerEntry ?? "skipped"} | | | |`,
    `| shard bytes at 1M accounts, default window (full) | ${result.shardBytesAt1MAccounts === null ? "skipped" : format(result.shardBytesAt1MAccounts)} | | | |`,
    `load average: ${result.loadAverage.start} at start, ${result.loadAverage.end} at end (2 cores: above ~1, expect noise)`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

function round(value: number | undefined, digits = 0): number | null {
  if (value === undefined) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

await main();
