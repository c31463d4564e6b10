/**
 * The Gateway: what a transport (HTTP, NATS) calls. `RoutingGateway` routes each partner's commands to the
 * partner's shard and merges the results back into request order. A shard is reached through a `ShardPort`: a
 * core `Shard` in this process satisfies it as it is; `WorkerShard` (transports/worker) is one on a worker thread;
 * a shard on another machine over NATS would be a third.
 */
import { checkCommands, InvalidCommandError, type Account, type Command, type Result, type ShardMetrics, type SinkStatus } from "../core/index.ts";
import type { ShardMap } from "../core/routing.ts";
import type { ScannedBatch } from "../core/command-batch-reader.ts";

/** Routes commands and reads to shards. Every method may throw the shard's typed errors. */
export interface Gateway {
  /**
   * Submit commands, possibly of several partners (then of several shards), in request order. With `atomic`, all
   * commands must be of one partner. Commands of different shards are applied independently: if one shard is
   * overloaded or unavailable the request fails, and a retry with the same ids is answered from the idempotency
   * windows for the commands that were applied. A malformed command (InvalidCommandError) fails the whole request
   * before any shard is asked, so bad input changes nothing. With `mode: "async"` it resolves with no results once
   * every command is durable, without waiting for the results (the shards may have applied them already).
   */
  submit(commands: readonly Command[], options?: { atomic?: boolean; mode?: "sync" | "async" }): Promise<Result[]>;
  /**
   * Submit a scanned CommandBatch whose commands are all of `partnerId`, one by one, and resolve with the protobuf
   * ResultBatch (the NATS transport's fast path: bytes straight into the shard's ring and out of it). Undefined,
   * having done nothing, when the partner's shard cannot take one (a shard on a worker thread): the caller submits
   * the commands instead.
   */
  submitScanned?(partnerId: string, scan: ScannedBatch): Promise<Uint8Array> | undefined;
  account(partnerId: string, accountId: string): Promise<Account | undefined>;
  storedResult(partnerId: string, id: string): Promise<Result | undefined>;
  /** Whether every shard is recovered and accepting. */
  ready(): boolean;
  /** Each shard's counters, by shard index. */
  metrics(): Promise<ShardMetrics[]>;
}

/** How the gateway reaches one shard, wherever it runs. */
export interface ShardPort {
  submit(commands: readonly Command[], options: { atomic?: boolean; mode?: "sync" | "async" }): Promise<Result[]>;
  /** Optional: a shard in this process takes a scanned CommandBatch (core `Shard.submitScanned`). */
  submitScanned?(scan: ScannedBatch): Promise<Uint8Array>;
  account(partnerId: string, accountId: string): Account | undefined | Promise<Account | undefined>;
  storedResult(partnerId: string, id: string): Result | undefined | Promise<Result | undefined>;
  metrics(): ShardMetrics | Promise<ShardMetrics>;
  /** Whether the shard takes commands now. */
  readonly accepting: boolean;
}

/** A gateway over shards reached through ports. */
export class RoutingGateway implements Gateway {
  constructor(
    private readonly shards: readonly ShardPort[],
    private readonly map: ShardMap,
  ) {
    if (shards.length !== map.shardCount) throw new RangeError(`${shards.length} shards for a map of ${map.shardCount}`);
  }

  async submit(commands: readonly Command[], options: { atomic?: boolean; mode?: "sync" | "async" } = {}): Promise<Result[]> {
    if (commands.length === 0) return [];
    const first = this.shardOf(commands[0], 0);
    let position = 1;
    // A command of the partner of the one before it is on the same shard: no lookup (requests are mostly of one).
    while (
      position < commands.length &&
      (commands[position]?.partnerId === commands[position - 1].partnerId || this.shardOf(commands[position], position) === first)
    ) {
      position++;
    }
    if (position === commands.length) {
      // The common case (a request of one partner): no regrouping.
      const results = await this.shards[first].submit(commands, options);
      return options.mode === "async" ? [] : results;
    }
    if (options.atomic === true) throw new InvalidCommandError("commands", "an atomic group must belong to one partner");
    // Bad input fails the whole request before any shard is asked: each shard applies its part independently.
    checkCommands(commands);
    const byShard = new Map<number, { positions: number[]; commands: Command[] }>();
    for (position = 0; position < commands.length; position++) {
      const shard = this.shardOf(commands[position], position);
      const group = byShard.get(shard) ?? { positions: [], commands: [] };
      group.positions.push(position);
      group.commands.push(commands[position]);
      byShard.set(shard, group);
    }
    // Submit to every shard before awaiting any, so the shards work in parallel. Bad input was refused above, before
    // any shard was asked. An in-process shard throws a full ring synchronously (the shards after it are not asked),
    // a worker shard rejects: either way the request fails as a whole, with the first shard's error. Every shard's
    // outcome is awaited, so a second rejection is never left unhandled (which would end the process).
    const pending: { group: { positions: number[]; commands: Command[] }; results: Promise<Result[]> }[] = [];
    try {
      for (const [shard, group] of byShard) pending.push({ group, results: this.shards[shard].submit(group.commands, options) });
    } catch (error) {
      for (const { results } of pending) results.catch(() => undefined);
      throw error;
    }
    const outcomes = await Promise.allSettled(pending.map(({ results }) => results));
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
    if (options.mode === "async") return [];
    const results = new Array<Result>(commands.length);
    pending.forEach(({ group }, index) => {
      const shardResults = (outcomes[index] as PromiseFulfilledResult<Result[]>).value;
      group.positions.forEach((position, k) => {
        results[position] = shardResults[k];
      });
    });
    return results;
  }

  submitScanned(partnerId: string, scan: ScannedBatch): Promise<Uint8Array> | undefined {
    return this.shards[this.map.shardOf(partnerId)].submitScanned?.(scan);
  }

  /** The shard of command `position`'s partner. */
  private shardOf(command: Command, position: number): number {
    if (typeof command?.partnerId !== "string") {
      throw new InvalidCommandError(`commands[${position}].partnerId`, "must be a string");
    }
    return this.map.shardOf(command.partnerId);
  }

  async account(partnerId: string, accountId: string): Promise<Account | undefined> {
    return this.shards[this.map.shardOf(partnerId)].account(partnerId, accountId);
  }

  async storedResult(partnerId: string, id: string): Promise<Result | undefined> {
    return this.shards[this.map.shardOf(partnerId)].storedResult(partnerId, id);
  }

  ready(): boolean {
    return this.shards.every((shard) => shard.accepting);
  }

  async metrics(): Promise<ShardMetrics[]> {
    return Promise.all(this.shards.map((shard) => shard.metrics()));
  }
}

/** Most entries one history page may hold, and the default. */
export const HISTORY_PAGE_MAX = 1000;
export const HISTORY_PAGE_DEFAULT = 100;

/** One page of an account's ledger entries, oldest first; `next` is the `after` of the next page, null at the end. */
export interface HistoryPage {
  entries: readonly object[];
  next: number | null;
}

/** Account history from a projection (the Postgres output sink): keyset pages by sequence. */
export interface HistoryReader {
  entries(partnerId: string, accountId: string, page: { after: number; limit: number }): Promise<HistoryPage>;
}

/** The output side as transports see it: every relay's progress per sink, and history when a projection keeps it. */
export interface OutputsView {
  status(): SinkStatus[];
  history: HistoryReader | null;
}
