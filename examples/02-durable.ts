/**
 * A durable shard on files: commands are acknowledged only once journaled (fsync per batch); after a restart the
 * state and the idempotency window are back, so a retry is answered as a duplicate. Run: `bun examples/02-durable.ts`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Shard } from "../core/index.ts";
import { FileJournal } from "../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../adapters/snapshot-file/index.ts";

const directory = mkdtempSync(join(tmpdir(), "hotledger-example-"));
const openShard = async () =>
  Shard.open({
    journal: await FileJournal.open({ directory: join(directory, "journal"), fsync: "batch" }),
    snapshots: await FileSnapshotStore.open({ directory: join(directory, "snapshots"), keep: 3 }),
    snapshotEveryCommands: 10_000_000, // the default; or snapshotEveryMs: 60_000, whichever comes first
    yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)), // snapshots run between batches
  });

const shard = await openShard();
const results = await shard.submit([
  { type: "openAccount", id: "open-1", partnerId: "shop", accountId: "wallet:alice", currency: "USD" },
  { type: "credit", id: "topup-1", partnerId: "shop", accountId: "wallet:alice", amount: 10_000 },
]);
console.log(results.map((result) => `${result.id}: ${result.code}`).join(", "));
await shard.close(); // drains, snapshots, closes the journal

const reopened = await openShard();
const [retry] = await reopened.submit([{ type: "credit", id: "topup-1", partnerId: "shop", accountId: "wallet:alice", amount: 10_000 }]);
console.log(`after restart: balance ${(await reopened.account("shop", "wallet:alice"))?.balance}, retry duplicate: ${retry.duplicate}`);
await reopened.close();
rmSync(directory, { recursive: true, force: true });
