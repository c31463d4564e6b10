/**
 * The shard worker: one durable shard on its own thread. It opens (recovers) the shard from the directory it is
 * given, answers batches of requests from its WorkerShard, and on "close" drains, snapshots and exits.
 */
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { Shard } from "../../core/index.ts";
import { FileJournal, readJournalFloor } from "../../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../../adapters/snapshot-file/index.ts";
import { serializeError, type FromWorker, type ShardReply, type ShardRequest, type ShardWorkerInit, type ToWorker } from "./messages.ts";

const port = parentPort;
if (port === null) throw new Error("shard-worker.ts runs as a worker thread");
const send = (message: FromWorker) => port.postMessage(message);
const init = workerData as ShardWorkerInit;
const log = (line: string) => send({ type: "log", line });

const journalDirectory = join(init.directory, "journal");
let shard: Shard;
try {
  shard = await Shard.open({
    journal: await FileJournal.open({ directory: journalDirectory, fsync: init.fsync, log }),
    // Output relays (wherever they run) record what they still need here; compaction keeps it.
    journalFloor: () => readJournalFloor(journalDirectory),
    snapshots: await FileSnapshotStore.open({ directory: join(init.directory, "snapshots"), log }),
    accountsMax: init.accountsMax,
    idempotencyCommandsMax: init.idempotencyCommandsMax,
    snapshotEveryCommands: init.snapshotEveryCommands,
    snapshotEveryMs: init.snapshotEveryMs,
    yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
    log,
  });
} catch (error) {
  send({ type: "failed", error: serializeError(error) });
  throw error;
}
send({ type: "ready", lastSequence: shard.lastSequence });

// Replies of one turn go back in one message.
let outbox: ShardReply[] = [];
function reply(entry: ShardReply): void {
  if (outbox.length === 0) {
    queueMicrotask(() => {
      const replies = outbox;
      outbox = [];
      send({ type: "replies", replies, accepting: shard.accepting });
    });
  }
  outbox.push(entry);
}

function handle(request: ShardRequest): void {
  try {
    const args = request.args as never[];
    let value: unknown;
    switch (request.op) {
      case "submit":
        value = (shard.submit as (...a: unknown[]) => Promise<unknown>)(...args);
        break;
      case "account":
        value = (shard.account as (...a: unknown[]) => unknown)(...args);
        break;
      case "storedResult":
        value = (shard.storedResult as (...a: unknown[]) => unknown)(...args);
        break;
      default:
        value = shard.metrics();
    }
    Promise.resolve(value).then(
      (resolved) => reply({ id: request.id, value: resolved }),
      (error) => reply({ id: request.id, error: serializeError(error) }),
    );
  } catch (error) {
    reply({ id: request.id, error: serializeError(error) });
  }
}

port.on("message", (message: ToWorker) => {
  if (message.type === "requests") {
    for (const request of message.requests) handle(request);
    return;
  }
  void shard.close().then(() => {
    send({ type: "closed" });
    port.close();
  });
});
