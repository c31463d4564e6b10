/**
 * Outputs: a relay tails a durable shard's journal and delivers one event per command to a sink with its own
 * durable cursor; here the Postgres projection on an in-memory PGlite, which then serves the account's history.
 * Run: `bun examples/03-outputs.ts`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Relay, Shard } from "../core/index.ts";
import { FileJournal, FileJournalTail, keepJournalForOutputs, readJournalFloor, writeJournalFloor } from "../adapters/journal-file/index.ts";
import { FileSnapshotStore } from "../adapters/snapshot-file/index.ts";
import { openPgliteSink } from "../adapters/postgres/index.ts";

const directory = mkdtempSync(join(tmpdir(), "hotledger-example-"));
const journalDirectory = join(directory, "journal");
const snapshotDirectory = join(directory, "snapshots");
await keepJournalForOutputs(journalDirectory); // outputs are configured: keep the journal until the relay has it
const shard = await Shard.open({
  journal: await FileJournal.open({ directory: journalDirectory, fsync: "batch" }),
  snapshots: await FileSnapshotStore.open({ directory: snapshotDirectory }),
  journalFloor: () => readJournalFloor(journalDirectory), // never compact what the relay still needs
});

const projection = await openPgliteSink(); // or openPostgresSink({ url: "postgres://..." })
const relay = await Relay.start({
  shard: 0,
  sinks: [projection], // several at once: JetStream, Kafka...
  snapshots: await FileSnapshotStore.open({ directory: snapshotDirectory, readOnly: true }),
  openTail: (afterSequence) => FileJournalTail.open({ directory: journalDirectory, afterSequence, sleep }),
  saveJournalFloor: (sequence) => writeJournalFloor(journalDirectory, sequence),
  sleep,
});

await shard.submit([
  { type: "openAccount", id: "open-1", partnerId: "shop", accountId: "wallet:alice", currency: "USD" },
  { type: "openAccount", id: "open-2", partnerId: "shop", accountId: "wallet:bob", currency: "USD" },
  { type: "credit", id: "topup-1", partnerId: "shop", accountId: "wallet:alice", amount: 10_000 },
  { type: "transfer", id: "gift-1", partnerId: "shop", fromAccountId: "wallet:alice", toAccountId: "wallet:bob", amount: 2_500 },
  { type: "debit", id: "payout-1", partnerId: "shop", accountId: "wallet:alice", amount: 9_000 },
]);
await relay.caughtUp(shard.lastSequence); // the shard never waits for outputs; this example does

const page = await projection.entries("shop", "wallet:alice", { limit: 10 });
for (const entry of page.entries) console.log(`#${entry.seq} ${entry.commandId} ${entry.type} ${entry.amount} -> ${entry.balanceAfter}`);
console.log(`status: ${relay.status().map((sink) => `${sink.name} at ${sink.cursor}, lag ${sink.lagEvents}`).join("; ")}`);

await relay.stop(); // closes the sinks
await shard.close();
rmSync(directory, { recursive: true, force: true });
