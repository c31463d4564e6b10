/**
 * Every bound in the core, in one place. Each says what it costs; the relations between them are asserted at
 * load, so a bad edit fails the first import instead of corrupting a shard.
 */
import { assert } from "./assert.ts";

/** Longest identifier (command id, partner id, account id, hold id), in ASCII bytes. Costs 64 B per key. */
export const KEY_BYTES_MAX = 64;

/** Longest currency code, in ASCII bytes ([A-Z0-9]{3,12}). */
export const CURRENCY_BYTES_MAX = 12;
/** Shortest currency code. */
export const CURRENCY_BYTES_MIN = 3;

/**
 * The characters of an identifier and of a currency code, as regular-expression character classes: the one
 * definition the translator's lookup tables, the HTTP validation, the OpenAPI document and the messages share.
 */
export const IDENTIFIER_CLASS = "A-Za-z0-9._:-";
export const CURRENCY_CLASS = "A-Z0-9";

/** Largest amount and balance: 2^53-1 minor units, the largest integer a float64 holds exactly. */
export const AMOUNT_MAX = Number.MAX_SAFE_INTEGER;

/** Most commands in one atomic group (and one HTTP request). The undo log is sized from it: ~64 KiB. */
export const GROUP_COMMANDS_MAX = 1000;

/** Most slots a ring may have. Each slot costs SLOT_BYTES (~330 B): 2^16 slots = ~21 MiB. */
export const RING_SLOTS_MAX = 1 << 16;
/** Default ring size: 2^13 slots = ~2.7 MiB per shard. */
export const RING_SLOTS_DEFAULT = 1 << 13;

/** Default most accounts per shard. Preallocated: ~110 B each, so 2^20 accounts = ~115 MiB (touched lazily). */
export const ACCOUNTS_DEFAULT = 1 << 20;
/** Hard ceiling on accounts per shard (Int32 indices, hash index at load <= 0.5). */
export const ACCOUNTS_MAX = 1 << 26;

/** Default most partners per shard. Costs ~80 B each. */
export const PARTNERS_DEFAULT = 1 << 14;

/** Most distinct currencies per shard (stored as Uint16 per account). */
export const CURRENCIES_MAX = 1 << 10;

/** Default hold slots per shard (open holds plus recently closed ones). ~130 B each: 2^18 = ~33 MiB. */
export const HOLDS_DEFAULT = 1 << 18;

/**
 * Default idempotency window, in commands per shard. ~140 B per entry: 2^20 = ~145 MiB, preallocated.
 * A shard answers retries for the newest IDEMPOTENCY_COMMANDS_DEFAULT commands or IDEMPOTENCY_RETENTION_MS_DEFAULT,
 * whichever is shorter.
 */
export const IDEMPOTENCY_COMMANDS_DEFAULT = 1 << 20;
/** Default idempotency retention: 24 hours of stamped time. */
export const IDEMPOTENCY_RETENTION_MS_DEFAULT = 24 * 60 * 60 * 1000;

/**
 * Default snapshot interval of a shard (and of an output relay's follower): every this many commands, or every
 * SNAPSHOT_EVERY_MS_DEFAULT of stamped time, whichever comes first. A snapshot copies and writes the whole state,
 * idempotency window included (~133 MB at 1M accounts with a full 2^20 window); every 1M commands it cost the NATS
 * gateway ~15% of its CPU in bench:nats. Every 10M commands it costs a tenth of that, and a recovery replays at most 10M
 * commands (bench:durable's `recover1MAccounts10MCommandsMs` measures exactly that) or a minute of traffic.
 * The journal keeps the commands since the oldest retained snapshot on disk: ~65-70 B each with short ids (measured),
 * so with 3 snapshots kept up to ~30M commands (~2 GB) per shard under sustained load.
 */
export const SNAPSHOT_EVERY_COMMANDS_DEFAULT = 10_000_000;
/** Default snapshot interval in stamped time: one minute. */
export const SNAPSHOT_EVERY_MS_DEFAULT = 60_000;
/** The longest wait before an automatic snapshot is tried again after failed ones (the wait doubles up to it). */
export const SNAPSHOT_RETRY_MS_MAX = 60_000;

/**
 * Default most events per sink call of an output relay. A relay that is caught up sends what there is (a record or
 * a few); one that lags sends this many at once, and bigger calls amortise a sink's fixed costs: in bench:outputs
 * the Postgres sink (one account row per account a call touches, one commit per call) went from ~90k events/s at
 * 5,000 a call to ~140k at 20,000 and ~205k at 50,000. The Postgres sink takes at most 65,536 a call; the Kafka sink
 * splits a call into sends of KAFKA_SEND_EVENTS_MAX. Memory: a call's events are plain objects (~0.5-1 KB each with
 * their strings, so ~25-50 MB at the limit), and the Postgres sink's COPY payloads ~150 B an event (~7.5 MB).
 */
export const OUTPUT_DELIVER_EVENTS_DEFAULT = 50_000;

/** Longest hold expiry a client may ask for: 366 days. Keeps `time + expiresInMs` far inside the safe range. */
export const HOLD_EXPIRY_MS_MAX = 366 * 24 * 60 * 60 * 1000;

/**
 * Commands a replay decodes into the ring before draining them (plus the rest of an atomic group): ~340 B of ring
 * slot each, so a piece (~170 KiB) is still in L2 when the processor reads it. Costs no memory of its own.
 */
export const REPLAY_PIECE_COMMANDS = 512;

/**
 * Upper bounds (milliseconds, inclusive) of the buckets a shard counts its journal commits in, for the
 * `hotledger_journal_commit_milliseconds` histogram: from a record's write starting to its being durable, measured
 * with the shard's clock (whole milliseconds with the default `Date.now`). A commit slower than the last bound is
 * counted only in the total. Costs 8 B per bound per shard.
 */
export const COMMIT_MS_BUCKETS: readonly number[] = [1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 10_000];

/** Undo log entries: a group command touches at most 2 accounts, 1 hold, 1 partner -> 4 per command. */
export const UNDO_ENTRIES_MAX = GROUP_COMMANDS_MAX * 4;

assert(Number.isSafeInteger(AMOUNT_MAX), "AMOUNT_MAX must be a safe integer");
assert((RING_SLOTS_MAX & (RING_SLOTS_MAX - 1)) === 0, "RING_SLOTS_MAX must be a power of two");
assert((RING_SLOTS_DEFAULT & (RING_SLOTS_DEFAULT - 1)) === 0, "RING_SLOTS_DEFAULT must be a power of two");
assert(RING_SLOTS_DEFAULT <= RING_SLOTS_MAX, "RING_SLOTS_DEFAULT <= RING_SLOTS_MAX");
assert(GROUP_COMMANDS_MAX <= RING_SLOTS_DEFAULT, "a group must fit in the default ring");
assert(REPLAY_PIECE_COMMANDS + GROUP_COMMANDS_MAX <= RING_SLOTS_DEFAULT, "a replay piece and the rest of its last group fit the default ring");
assert(COMMIT_MS_BUCKETS.every((bound, index) => index === 0 || bound > COMMIT_MS_BUCKETS[index - 1]), "COMMIT_MS_BUCKETS ascend");
assert(KEY_BYTES_MAX % 4 === 0, "keys are compared a 32-bit word at a time");
assert(KEY_BYTES_MAX <= 255, "key lengths are stored in a byte");
assert(ACCOUNTS_DEFAULT <= ACCOUNTS_MAX, "ACCOUNTS_DEFAULT <= ACCOUNTS_MAX");
