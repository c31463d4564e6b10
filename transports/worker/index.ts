/**
 * WorkerShard: a durable shard on a worker thread, as a ShardPort for the RoutingGateway. Calls made in one
 * event-loop turn are sent as one postMessage (batches, not a message per request), and the worker answers the
 * same way. Transports stay on the main thread; each shard's processor has a thread (a core) of its own.
 */
import { Worker } from "node:worker_threads";
import { InvalidCommandError, ShardUnavailableError, type Account, type Command, type Result, type ShardMetrics } from "../../core/index.ts";
import type { ShardPort } from "../gateway.ts";
import { deserializeError, type FromWorker, type ShardOperation, type ShardRequest, type ShardWorkerInit } from "./messages.ts";

/** A shard on its own thread. Create with `WorkerShard.start`. */
export class WorkerShard implements ShardPort {
  accepting = false;
  private readonly calls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private outbox: ShardRequest[] = [];
  private closed: Promise<void> | undefined;
  /** Set when the worker thread ended without being closed: every call is refused with it from then on. */
  private stopped: ShardUnavailableError | undefined;
  private resolveClosed: (() => void) | undefined;

  private constructor(private readonly worker: Worker) {}

  /** Start a worker and wait until its shard has recovered. Rejects with the worker's error if it cannot. */
  static start(init: ShardWorkerInit, log: (line: string) => void = console.log): Promise<WorkerShard> {
    const worker = new Worker(new URL("./shard-worker.ts", import.meta.url), { workerData: init });
    const shard = new WorkerShard(worker);
    return new Promise((resolve, reject) => {
      worker.on("message", (message: FromWorker) => {
        if (message.type === "ready") {
          shard.accepting = true;
          resolve(shard);
        } else if (message.type === "failed") {
          reject(deserializeError(message.error));
        } else if (message.type === "log") {
          log(message.line);
        } else if (message.type === "replies") {
          shard.accepting = message.accepting;
          for (const reply of message.replies) {
            const call = shard.calls.get(reply.id);
            shard.calls.delete(reply.id);
            if (reply.error !== undefined) call?.reject(deserializeError(reply.error));
            else call?.resolve(reply.value);
          }
        }
      });
      // An uncaught error ends the worker: what waits and what comes is refused as the exit below refuses it, a shard
      // unavailable (typed, with a retry time) rather than the worker's internal error, which is logged here instead.
      worker.on("error", (error) => {
        shard.accepting = false;
        reject(error);
        shard.stopped ??= new ShardUnavailableError("shard worker failed; restart the gateway", 1000, { cause: error });
        log(`shard worker ${init.directory} failed: ${error.stack ?? error.message}`);
        shard.refuseAll(shard.stopped);
      });
      // A worker that ends (an uncaught error, the process killing the thread) answers nothing more: refuse what
      // waits and what comes, instead of leaving callers (and a close) waiting forever.
      worker.on("exit", (code) => {
        shard.accepting = false;
        if (shard.closed === undefined && shard.stopped === undefined) {
          shard.stopped = new ShardUnavailableError(`shard worker stopped (exit code ${code}); restart the gateway`, 1000);
          log(`shard worker ${init.directory} stopped (exit code ${code})`);
        }
        shard.refuseAll(shard.stopped ?? new ShardUnavailableError("shard closed", 0));
        shard.resolveClosed?.();
        reject(shard.stopped ?? new Error("shard worker stopped before it was ready"));
      });
    });
  }

  private refuseAll(error: Error): void {
    for (const call of this.calls.values()) call.reject(error);
    this.calls.clear();
  }

  submit(commands: readonly Command[], options: { atomic?: boolean; mode?: "sync" | "async" }): Promise<Result[]> {
    return this.call("submit", [commands, options]) as Promise<Result[]>;
  }

  account(partnerId: string, accountId: string): Promise<Account | undefined> {
    return this.call("account", [partnerId, accountId]) as Promise<Account | undefined>;
  }

  storedResult(partnerId: string, id: string): Promise<Result | undefined> {
    return this.call("storedResult", [partnerId, id]) as Promise<Result | undefined>;
  }

  metrics(): Promise<ShardMetrics> {
    return this.call("metrics", []) as Promise<ShardMetrics>;
  }

  /** Drain, snapshot and stop the worker. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.accepting = false;
      if (this.stopped !== undefined) return resolve();
      this.resolveClosed = resolve;
      this.worker.on("message", (message: FromWorker) => {
        if (message.type === "closed") resolve();
      });
      this.flush();
      this.worker.postMessage({ type: "close" });
    }).then(() => this.worker.terminate().then(() => undefined));
    return this.closed;
  }

  private call(op: ShardOperation, args: unknown[]): Promise<unknown> {
    if (this.stopped !== undefined) return Promise.reject(this.stopped);
    if (this.closed !== undefined) return Promise.reject(deserializeError({ name: "ShardUnavailableError", message: "shard closed", retryAfterMs: 0 }));
    const id = this.nextId++;
    if (this.outbox.length === 0) queueMicrotask(() => this.flush());
    this.outbox.push({ id, op, args });
    return new Promise((resolve, reject) => this.calls.set(id, { resolve, reject }));
  }

  private flush(): void {
    if (this.outbox.length === 0) return;
    const requests = this.outbox;
    this.outbox = [];
    try {
      this.worker.postMessage({ type: "requests", requests });
    } catch (error) {
      // A call whose arguments cannot be cloned (a function or symbol in a command): thrown here, in a microtask, it
      // would end the process and leave the turn's other calls waiting forever. Nothing was sent: each goes alone.
      if (!isDataCloneError(error)) throw error;
      this.flushEach(requests);
    }
  }

  /** Send `requests` one message each, refusing those that cannot be cloned (a submit's as invalid input). */
  private flushEach(requests: readonly ShardRequest[]): void {
    for (const request of requests) {
      try {
        this.worker.postMessage({ type: "requests", requests: [request] });
      } catch (error) {
        if (!isDataCloneError(error)) throw error;
        const call = this.calls.get(request.id);
        this.calls.delete(request.id);
        call?.reject(request.op === "submit" ? new InvalidCommandError("commands", "must be plain data (no functions or symbols)") : error);
      }
    }
  }
}

/** Whether postMessage refused a value that cannot be structured-cloned (nothing was sent). */
function isDataCloneError(error: unknown): error is DOMException {
  return error instanceof DOMException && error.name === "DataCloneError";
}
