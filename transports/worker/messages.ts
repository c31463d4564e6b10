/**
 * The messages between a WorkerShard (main thread) and its shard worker. Requests and replies travel in batches:
 * everything asked for in one event-loop turn is one postMessage each way. Errors cross as plain data and are
 * rebuilt as the same typed errors on the other side.
 */
import { InvalidCommandError, OverloadedError, ShardUnavailableError } from "../../core/index.ts";

/** What the worker needs to open its shard. */
export interface ShardWorkerInit {
  directory: string;
  fsync: "batch" | "interval" | "never";
  accountsMax?: number;
  idempotencyCommandsMax?: number;
  snapshotEveryCommands?: number;
  snapshotEveryMs?: number;
}

export type ShardOperation = "submit" | "account" | "storedResult" | "metrics";

export interface ShardRequest {
  id: number;
  op: ShardOperation;
  args: unknown[];
}

export interface SerializedError {
  name: string;
  message: string;
  path?: string;
  retryAfterMs?: number;
}

export interface ShardReply {
  id: number;
  value?: unknown;
  error?: SerializedError;
}

export type ToWorker = { type: "requests"; requests: ShardRequest[] } | { type: "close" };
export type FromWorker =
  | { type: "ready"; lastSequence: number }
  | { type: "replies"; replies: ShardReply[]; accepting: boolean }
  | { type: "log"; line: string }
  | { type: "closed" }
  | { type: "failed"; error: SerializedError };

/** An error as data. */
export function serializeError(error: unknown): SerializedError {
  const value = error as { name?: string; message?: string; path?: string; retryAfterMs?: number };
  return { name: value?.name ?? "Error", message: value?.message ?? String(error), path: value?.path, retryAfterMs: value?.retryAfterMs };
}

/** The typed error again. */
export function deserializeError(error: SerializedError): Error {
  switch (error.name) {
    case "InvalidCommandError": {
      const path = error.path ?? "commands";
      const detail = error.message.startsWith(`${path}: `) ? error.message.slice(path.length + 2) : error.message;
      return new InvalidCommandError(path, detail);
    }
    case "OverloadedError":
      return new OverloadedError(error.message);
    case "ShardUnavailableError":
      return new ShardUnavailableError(error.message, error.retryAfterMs ?? 1000);
    default: {
      const rebuilt = new Error(error.message);
      rebuilt.name = error.name;
      return rebuilt;
    }
  }
}
