/**
 * A seeded mixed workload for output and fault tests: every command type, atomic groups that succeed and fail,
 * holds that expire, duplicates and reused ids, over a few partners and accounts so that accounts are hot.
 *
 * Also the one way tests and benches run it: `openWorkloadShard` (a Shard whose clock lets short holds expire and
 * that snapshots only when asked; give it a KeepingJournal to keep every record), `submitWorkload` (batches a few at
 * a time, in order), `deriveEvents` (the events of the journal), or all three at once: `batchEvents`, `workloadEvents`.
 */
import { assert } from "../assert.ts";
import type { AsciiDecoder } from "../command-batch-reader.ts";
import { Engine, type EngineOptions } from "../engine.ts";
import { EventDeriver, type OutputEvent } from "../outputs.ts";
import type { Journal, SnapshotStore, StoredRecord } from "../ports.ts";
import { Shard } from "../shard.ts";
import type { Command, Result } from "../types.ts";
import { KeepingJournal, MemorySnapshotStore } from "./memory-ports.ts";
import { seededRandom } from "./random.ts";

/** One submit: commands and whether they are an atomic group. */
export interface WorkloadBatch {
  commands: Command[];
  atomic: boolean;
}

export const WORKLOAD_PARTNERS = ["p1", "p2", "p3"];
export const WORKLOAD_ACCOUNTS = ["a0", "a1", "a2", "a3", "a4", "a5"];

/** The openAccount commands every workload starts with (one per partner and account; a5 is in EUR). */
export function workloadOpenings(prefix = "w"): WorkloadBatch[] {
  return WORKLOAD_PARTNERS.map((partnerId) => ({
    atomic: false,
    commands: WORKLOAD_ACCOUNTS.map((accountId): Command => ({
      type: "openAccount", id: `${prefix}-open-${accountId}`, partnerId, accountId,
      currency: accountId === "a5" ? "EUR" : "USD", ...(accountId === "a4" ? { overdraftLimit: 500 } : {}),
    })),
  }));
}

/**
 * `count` batches after the openings. Ids are `${prefix}-${n}` so two workloads with different prefixes never
 * collide. Deterministic for a seed.
 */
export function randomWorkload(seed: number, count: number, prefix = "w"): WorkloadBatch[] {
  const random = seededRandom(seed);
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const amount = () => 1 + Math.floor(random() * (random() < 0.9 ? 200 : 5000));
  const holds: { partnerId: string; id: string }[] = [];
  const sent: Command[] = [];
  let n = 0;
  const one = (partnerId: string): Command => {
    const id = `${prefix}-${n++}`;
    const accountId = pick(WORKLOAD_ACCOUNTS);
    const roll = random();
    if (roll < 0.3) return { type: "credit", id, partnerId, accountId, amount: amount() };
    if (roll < 0.5) return { type: "debit", id, partnerId, accountId, amount: amount() };
    if (roll < 0.65) return { type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId: pick(WORKLOAD_ACCOUNTS), amount: amount() };
    if (roll < 0.75) {
      holds.push({ partnerId, id });
      return { type: "hold", id, partnerId, accountId, amount: amount(), ...(random() < 0.3 ? { expiresInMs: 1 + Math.floor(random() * 20) } : {}) };
    }
    if (roll < 0.82 && holds.length > 0) {
      const hold = pick(holds.filter((h) => h.partnerId === partnerId).concat(holds.slice(-1)));
      return { type: "capture", id, partnerId, holdId: hold.id, ...(random() < 0.5 ? { amount: amount() } : {}) };
    }
    if (roll < 0.87 && holds.length > 0) return { type: "release", id, partnerId, holdId: pick(holds).id };
    if (roll < 0.9) return { type: "check", partnerId, accountId, amount: amount() };
    if (roll < 0.92) return { type: random() < 0.5 ? "freeze" : "unfreeze", id, partnerId, accountId };
    if (roll < 0.93) return { type: "setOverdraftLimit", id, partnerId, accountId, overdraftLimit: Math.floor(random() * 300) };
    if (roll < 0.96 && sent.length > 0) return sent[Math.floor(random() * sent.length)]; // a retry: duplicate
    if (roll < 0.97 && sent.length > 0) {
      const reused = sent[Math.floor(random() * sent.length)];
      if (reused.id !== undefined && reused.type !== "check") return { type: "credit", id: reused.id, partnerId: reused.partnerId, accountId: "a0", amount: 999_999 };
    }
    return { type: "credit", id, partnerId, accountId, amount: amount() };
  };
  const batches: WorkloadBatch[] = [];
  for (let b = 0; b < count; b++) {
    const partnerId = pick(WORKLOAD_PARTNERS);
    const atomic = random() < 0.1;
    const size = atomic ? 2 + Math.floor(random() * 3) : 1 + Math.floor(random() * 8);
    const commands: Command[] = [];
    const ids = new Set<string>();
    while (commands.length < size) {
      const command = one(partnerId);
      if (atomic && (command.type === "check" || command.partnerId !== partnerId || ids.has(command.id!))) continue;
      if (command.id !== undefined) ids.add(command.id);
      commands.push(command);
    }
    for (const command of commands) if (command.type !== "check") sent.push(command);
    batches.push({ commands, atomic });
  }
  return batches;
}

/** Table sizes for workload runs: room for every account, hold and id of tens of thousands of batches. */
export const WORKLOAD_SIZES = { accountsMax: 256, partnersMax: 16, holdsMax: 1 << 16, idempotencyCommandsMax: 1 << 17, ringSlots: 8192 };

/** A shard clock that moves 0-5 ms per read (the shard reads it once per journal record): short holds expire. */
export function workloadClock(startMs = 1_000_000): () => number {
  let now = startMs;
  let tick = 0;
  return () => (now += tick++ % 6);
}

/**
 * Every event of `records`, derived as shard `shard` by `engine`: a fresh follower of `sizes` unless given one (an
 * engine restored from a snapshot derives the events after the snapshot), its strings made by `ascii` if given.
 */
export function deriveEvents(
  records: readonly StoredRecord[], shard: number, sizes: EngineOptions = WORKLOAD_SIZES, engine: Engine = new Engine(sizes), ascii?: AsciiDecoder,
): OutputEvent[] {
  const deriver = new EventDeriver(engine, shard, ascii);
  const events: OutputEvent[] = [];
  for (const record of records) deriver.apply(record, events);
  return events;
}

/** Options of `openWorkloadShard`. */
export interface WorkloadShardOptions {
  /** Table sizes of the shard's engine. Default WORKLOAD_SIZES. */
  sizes?: EngineOptions;
  /** Default: a fresh MemorySnapshotStore. */
  snapshots?: SnapshotStore;
  /** Default: a new `workloadClock()`. A test that moves time itself passes its own. */
  clock?: () => number;
}

/** A Shard over `journal` that takes snapshots only when asked (`takeSnapshot`), so a test decides where they are. */
export function openWorkloadShard(journal: Journal, options: WorkloadShardOptions = {}): Promise<Shard> {
  return Shard.open({
    ...(options.sizes ?? WORKLOAD_SIZES), journal, snapshots: options.snapshots ?? new MemorySnapshotStore(),
    clock: options.clock ?? workloadClock(), snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12,
  });
}

/**
 * Submit `batches` `inFlight` at a time, each group awaited before the next: sequences follow the order of
 * `batches`, and a group's batches share journal records. The results of every command, in order.
 */
export async function submitWorkload(shard: Shard, batches: readonly WorkloadBatch[], inFlight = 5): Promise<Result[]> {
  assert(Number.isInteger(inFlight), "inFlight is an integer");
  assert(inFlight >= 1, "inFlight is at least 1");
  const results: Result[] = [];
  for (let start = 0; start < batches.length; start += inFlight) {
    const group = batches.slice(start, start + inFlight);
    const groupResults = await Promise.all(group.map((batch) => shard.submit(batch.commands, { atomic: batch.atomic })));
    for (const batchResults of groupResults) for (const result of batchResults) results.push(result);
  }
  return results;
}

/** Options of `batchEvents`. */
export interface BatchEventsOptions {
  /** The shard number in the events (`eventId` is `${shard}:${seq}`). Default 0. */
  shard?: number;
  /** Batches submitted together (each group shares journal records). Default 5. */
  inFlight?: number;
  /** Table sizes of the shard and of the follower that derives the events. Default WORKLOAD_SIZES. */
  sizes?: EngineOptions;
  /** Where the shard's `workloadClock` starts. Default 1,000,000. */
  clockStartMs?: number;
}

/**
 * Submit `batches` to a fresh Shard whose journal keeps every record, close it, and return every event derived
 * from that journal.
 */
export async function batchEvents(batches: readonly WorkloadBatch[], options: BatchEventsOptions = {}): Promise<OutputEvent[]> {
  const sizes = options.sizes ?? WORKLOAD_SIZES;
  const journal = new KeepingJournal();
  const shard = await openWorkloadShard(journal, { sizes, clock: workloadClock(options.clockStartMs) });
  await submitWorkload(shard, batches, options.inFlight);
  await shard.close();
  return deriveEvents(journal.records, options.shard ?? 0, sizes);
}

/** Options of `workloadEvents`. */
export interface WorkloadEventsOptions extends BatchEventsOptions {
  /** The seed of `randomWorkload`. Default 7. */
  seed?: number;
  /** Random batches after the openings. Default 400. */
  batches?: number;
  /** The prefix of every command id. Default "w". */
  prefix?: string;
}

/**
 * Run the openings and a random workload through a Shard whose journal keeps every record, and return every
 * event derived from it: real events, every command type, for sink tests and benches.
 */
export function workloadEvents(options: WorkloadEventsOptions = {}): Promise<OutputEvent[]> {
  const prefix = options.prefix ?? "w";
  return batchEvents([...workloadOpenings(prefix), ...randomWorkload(options.seed ?? 7, options.batches ?? 400, prefix)], options);
}
