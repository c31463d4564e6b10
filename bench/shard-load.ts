/**
 * Load on one durable shard, shared by the benches that drive a Shard directly (bench/durable.ts,
 * bench/outputs.ts): funded accounts spread over partners, and PRODUCERS async producers each submitting requests
 * of REQUEST_COMMANDS credits and debits and awaiting their durable results. Every result code is checked, so no
 * number comes from a broken run.
 */
import type { Command, Shard } from "../core/index.ts";

/**
 * Concurrent producers (requests in flight): 3,200 commands, enough to keep one shard saturated. Since the shard
 * applies a record while it is written, 32 x 100 reach the rate 64 x 100 did (1.30-1.38M/s, same day) at half
 * the commit latency (p99 3.2-3.4 ms against 6.2-6.5): by Little's law a closed loop's latency is its in-flight
 * commands over the rate, so 6,400 in flight could never be under ~5 ms at that rate.
 */
export const PRODUCERS = 32;
/** Commands per request. */
export const REQUEST_COMMANDS = 100;
/** Partners the accounts are spread over. */
const PARTNERS = 16;

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`bench assertion: ${message}`);
}

const partnerId = (account: number) => `partner-${account % PARTNERS}`;
const accountId = (account: number) => `acct-${String(account).padStart(7, "0")}`;

/** Open and fund `count` accounts through the shard, in requests of 1000. */
export async function openAccounts(shard: Shard, count: number): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const batch: Command[] = [];
    for (let k = start; k < Math.min(count, start + 1000); k++) {
      batch.push({ type: "openAccount", id: `open-${k}`, partnerId: partnerId(k), accountId: accountId(k), currency: "EUR" });
    }
    const results = await shard.submit(batch);
    assert(results.every((result) => result.code === "ok"), "open accounts");
    const funding = batch.map((open, i): Command => ({
      type: "credit",
      id: `fund-${start + i}`,
      partnerId: open.partnerId,
      accountId: (open as { accountId: string }).accountId,
      amount: 1_000_000_000_000,
    }));
    assert((await shard.submit(funding)).every((result) => result.code === "ok"), "fund accounts");
  }
}

/**
 * Partner and account ids built once and flattened: the producers stand in for a transport, which hands the shard
 * strings JSON.parse or the protobuf reader made (flat, already paid for), so building them per command (a padStart
 * and a rope per id, resolved on the shard's first read) is not charged to the shard. Reading a character resolves
 * a rope into a flat string in place.
 */
const flat = (text: string): string => (text.charCodeAt(0), text);
const PARTNER_IDS = Array.from({ length: PARTNERS }, (_, partner) => flat(partnerId(partner)));

/** The account ids of `accounts` accounts (built at the first request of that size). */
function accountIds(accounts: number): string[] {
  let ids = accountIdTables.get(accounts);
  if (ids === undefined) {
    ids = Array.from({ length: accounts }, (_, account) => flat(accountId(account)));
    accountIdTables.set(accounts, ids);
  }
  return ids;
}
const accountIdTables = new Map<number, string[]>();

/**
 * Command ids of run `run` start here: decimal numbers below 2^31 (an int32 becomes a flat string in ~45 ns, a
 * double such as 1e12 + n in ~90 ns), 10^8 of them per run, unique across runs 0..19.
 */
const RUN_IDS = 1e8;
function runBase(run: number, index: number): number {
  assert(Number.isInteger(run) && run >= 0 && run < 20, `run ${run} is not in 0..19`);
  assert((index + 1) * REQUEST_COMMANDS <= RUN_IDS, `request ${index} is past the ids of run ${run}`);
  return (run + 1) * RUN_IDS + index * REQUEST_COMMANDS;
}

/** A credit or debit as the producers build it (the fields they change from request to request). */
type LoadCommand = { type: "credit" | "debit"; id: string; partnerId: string; accountId: string; amount: number };

/**
 * Request `index` of a producer in run `run` (each run of a shard has its own number, so every id is new):
 * REQUEST_COMMANDS credits and debits (any accounts, any of the partners). Written into `into` when given: a
 * producer refills its own command objects once the previous request's results are back (the shard reads a
 * command's fields when it is submitted and its id when its results are delivered, never after), so the shard's
 * thread is not charged for allocating and collecting the objects a transport would make on its own thread.
 */
export function request(run: number, index: number, accounts: number, into?: Command[]): Command[] {
  const ids = accountIds(accounts);
  const base = runBase(run, index);
  const commands = into ?? new Array<Command>(REQUEST_COMMANDS);
  for (let i = 0; i < REQUEST_COMMANDS; i++) {
    const account = ((index * REQUEST_COMMANDS + i) * 7919) % accounts;
    const id = String(base + i);
    const reused = into?.[i] as LoadCommand | undefined;
    if (reused !== undefined) {
      reused.id = id;
      reused.partnerId = PARTNER_IDS[account % PARTNERS];
      reused.accountId = ids[account];
      continue;
    }
    const command: LoadCommand = { type: i % 2 === 0 ? "credit" : "debit", id, partnerId: PARTNER_IDS[account % PARTNERS], accountId: ids[account], amount: 1 + (i % 1000) };
    commands[i] = command as Command;
  }
  return commands;
}

export interface OpsRun {
  opsPerSec: number;
  latencies: Float64Array;
  latencyCount: number;
}

/** PRODUCERS concurrent producers until commandsMax or msMax. */
export async function opsRun(shard: Shard, run: number, accounts: number, commandsMax: number, msMax: number): Promise<OpsRun> {
  const latencies = new Float64Array(Math.ceil(commandsMax / REQUEST_COMMANDS) + PRODUCERS);
  let latencyCount = 0;
  let next = 0;
  let done = 0;
  const begin = performance.now();
  const producer = async (): Promise<void> => {
    let commands: Command[] | undefined;
    while (done < commandsMax && performance.now() - begin < msMax) {
      commands = request(run, next++, accounts, commands);
      const sent = performance.now();
      const results = await shard.submit(commands);
      latencies[latencyCount++] = performance.now() - sent;
      for (let k = 0; k < results.length; k++) {
        const result = results[k];
        assert(result.code === "ok" && result.duplicate !== true, `bench command rejected: ${result.code}${result.duplicate ? " (duplicate)" : ""}`);
        assert(result.id === commands[k].id, `result ${k} carries id ${result.id}, not its command's`);
      }
      done += commands.length;
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, producer));
  const elapsed = performance.now() - begin;
  return { opsPerSec: (done / elapsed) * 1000, latencies, latencyCount };
}

