/**
 * Sizes shared by the crash test's child (shard-child.ts) and parent (crash.test.ts). The parent checks every
 * acknowledged command by re-sending it and expecting its stored result, which only holds while the command is in
 * the idempotency window, and it replays into a reference ledger that never forgets a hold; so one data directory
 * (an "epoch") gets at most EPOCH_COMMANDS_MAX distinct command ids and EPOCH_HOLDS_MAX holds, and the test
 * starts a fresh directory when either runs out.
 */

/** The shard's tables: small, so snapshots are cheap to take often. Memory: a few MB in the child. */
export const CHILD_SIZES = {
  accountsMax: 4096,
  partnersMax: 16,
  holdsMax: 4096,
  idempotencyCommandsMax: 65536,
  ringSlots: 1024,
} as const;

/** Snapshot (and compact the journal) every this many commands, so both happen many times during a test. */
export const CHILD_SNAPSHOT_EVERY_COMMANDS = 2000;

/**
 * Journal segment size: small, so segments rotate, and compaction after each snapshot deletes old ones, many times
 * per test (the default, 64 MiB, would never rotate here). Costs nothing but more files.
 */
export const CHILD_SEGMENT_BYTES_MAX = 256 * 1024;

/** Most commands in one request the parent sends as load. */
export const REQUEST_COMMANDS_MAX = 20;

/** Requests in flight at once: 32 x 20 = 640 commands, inside the 1024-slot ring, so no OverloadedError. */
export const REQUESTS_IN_FLIGHT_MAX = 32;

/**
 * New requests stop once an epoch has this many distinct command ids, so it holds at most this plus one request's
 * worth: below the idempotency window, so no acknowledged command is ever forgotten. Memory: the parent keeps each
 * command and its results (~1 KB), ~50 MB at most.
 */
export const EPOCH_COMMANDS_MAX = 50_000;

/** New holds stop at this many per epoch: below holdsMax, so no hold is forgotten (the reference never forgets one). */
export const EPOCH_HOLDS_MAX = 3_000;

if (EPOCH_COMMANDS_MAX + REQUEST_COMMANDS_MAX > CHILD_SIZES.idempotencyCommandsMax) {
  throw new Error("an epoch's command ids must fit the idempotency window");
}
if (EPOCH_HOLDS_MAX > CHILD_SIZES.holdsMax) {
  throw new Error("an epoch's holds must fit the hold table");
}
if (REQUESTS_IN_FLIGHT_MAX * REQUEST_COMMANDS_MAX > CHILD_SIZES.ringSlots) {
  throw new Error("the requests in flight must fit the ring");
}
