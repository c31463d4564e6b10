// Proves the Kafka sink at the producer interface, with a recording KafkaJS-shaped producer that can fail, and events
// derived by a real Shard and EventDeriver: messages in sequence order with the right keys, headers, timestamps and
// values (decoded back), acks -1; the cursor file moves only after a successful send and survives a restart; a
// failed send, a lost acknowledgement or a failed cursor write make the relay resend (at least once, deduped by the
// event id header). The cursor file records its topic and cluster: a sink on a file of another destination is
// refused, a file of the first version (cursors only) is read and rewritten with the destination. When KAFKA_BROKERS is set, an integration test also produces to a real broker with kafkajs and
// reads the topic back; without it that one test is skipped with a message (no broker can run on the CI machine).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { equals, fromBinary } from "@bufbuild/protobuf";
import { AssertionError, Relay, type Command, type OutputEvent } from "../../core/index.ts";
import { OutputEventSchema } from "../../core/gen/hotledger/v1/ledger_pb.ts";
import { KeepingJournal, MemoryJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { MemoryJournalTail } from "../../core/testing/memory-outputs.ts";
import { deriveEvents, openWorkloadShard, randomWorkload, submitWorkload, WORKLOAD_SIZES, workloadEvents, workloadOpenings } from "../../core/testing/workload.ts";
import { outputEventToProto } from "../../core/wire.ts";
import {
  CONTENT_TYPES,
  HEADER_CONTENT_TYPE,
  HEADER_EVENT_ID,
  KAFKA_SEND_EVENTS_MAX,
  KafkaCursorDestinationError,
  KafkaCursorFileError,
  KafkaSendError,
  kafkaSink,
  messageKey,
  openKafkaSink,
  type KafkaMessage,
  type KafkaProducer,
} from "./index.ts";

const SHARD = 3;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A KafkaJS-shaped producer that records every send and fails on request. */
class RecordingProducer implements KafkaProducer {
  readonly sends: { topic: string; acks: number; timeout: number; messages: KafkaMessage[] }[] = [];
  connected = false;
  /** Reject this many next sends without storing anything (the broker is down). */
  failNext = 0;
  /** Store the next this-many sends, then reject (the acknowledgement was lost). */
  loseAckNext = 0;
  /** While set, a send waits for it before storing. */
  gate: Promise<void> | undefined;
  /** When set: store this many next sends, then reject the one after without storing it (a broker going down). */
  failAfter: number | undefined;

  async connect(): Promise<void> {
    this.connected = true;
  }

  async send(record: { topic: string; messages: KafkaMessage[]; acks: number; timeout: number }): Promise<unknown> {
    assert.ok(this.connected, "send on a connected producer");
    await this.gate;
    if (this.failAfter !== undefined && this.failAfter-- === 0) {
      this.failAfter = undefined;
      throw new Error("simulated broker outage");
    }
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("simulated broker outage");
    }
    this.sends.push(record);
    if (this.loseAckNext > 0) {
      this.loseAckNext--;
      throw new Error("simulated lost acknowledgement");
    }
    return record.messages.map(() => ({ topicName: record.topic, partition: 0, errorCode: 0 }));
  }

  async disconnect(): Promise<void> {
    this.connected = false;
  }

  get messages(): KafkaMessage[] {
    return this.sends.flatMap((send) => send.messages);
  }
}

/** The events of a seeded workload (~1800, every command type), derived once. */
const events = await workloadEvents({ shard: SHARD });

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A fresh directory for a test's cursor file, removed afterwards. */
async function withDirectory(body: (directory: string) => Promise<void>): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), "hotledger-kafka-"));
  try {
    await body(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** The cursors the file at `path` holds, by shard (its `cursors` field). */
async function readCursors(path: string): Promise<unknown> {
  return (JSON.parse(await readFile(path, "utf8")) as { cursors: unknown }).cursors;
}

/** The event ids of `messages` with repeats removed, as a consumer deduping by the header sees them. */
function dedupedIds(messages: KafkaMessage[]): string[] {
  return [...new Set(messages.map((message) => message.headers[HEADER_EVENT_ID]))];
}

/** A relay of shard SHARD over `journal` into `sink`. */
function startRelay(journal: MemoryJournal, sink: Awaited<ReturnType<typeof kafkaSink>>): Promise<Relay> {
  return Relay.start({
    ...WORKLOAD_SIZES, shard: SHARD, sinks: [sink], snapshots: new MemorySnapshotStore(), sleep, retryMs: 2, deliverEventsMax: 100,
    openTail: async (after: number) => new MemoryJournalTail(journal, after),
  });
}

describe("Kafka sink", () => {
  test("messages in order: key, event id and content type headers, timestamp, value decoded back; acks -1; cursor file", async () => {
    await withDirectory(async (directory) => {
      const producer = new RecordingProducer();
      const cursorFile = join(directory, "cursor.json");
      const sink = await kafkaSink({ producer, topic: "ledger-events", cursorFile });
      assert.ok(producer.connected, "the sink connects the producer");
      assert.equal(await sink.cursor(SHARD), 0);
      for (const part of chunks(events, 300)) await sink.deliver(SHARD, part);
      assert.equal(await sink.cursor(SHARD), events.length);
      assert.deepEqual(JSON.parse(await readFile(cursorFile, "utf8")), { topic: "ledger-events", cursors: { [SHARD]: events.length } });
      assert.equal(producer.sends.length, Math.ceil(events.length / 300), "one send per delivery");
      for (const send of producer.sends) {
        assert.equal(send.topic, "ledger-events");
        assert.equal(send.acks, -1);
        assert.equal(send.timeout, 30_000);
      }
      const messages = producer.messages;
      assert.equal(messages.length, events.length);
      messages.forEach((message, i) => {
        const event = events[i];
        assert.equal(message.headers[HEADER_EVENT_ID], event.eventId);
        assert.equal(message.headers[HEADER_CONTENT_TYPE], CONTENT_TYPES.protobuf);
        assert.equal(message.timestamp, String(event.timeMs));
        assert.ok(typeof message.value !== "string");
        assert.ok(equals(OutputEventSchema, fromBinary(OutputEventSchema, message.value), outputEventToProto(event)), `${event.eventId} decodes back`);
        const command = event.command;
        if (command.type === "transfer") assert.equal(message.key, `${command.partnerId}:${command.fromAccountId}`);
        else if (command.type === "capture" || command.type === "release") {
          assert.equal(message.key, event.accountId === "" ? command.partnerId : `${command.partnerId}:${event.accountId}`);
          if (event.result.code === "ok" && event.result.duplicate !== true) {
            assert.ok(event.accounts.some((change) => message.key === `${change.partnerId}:${change.accountId}`), `${event.eventId}: keyed by the hold's account`);
          }
        } else assert.equal(message.key, `${command.partnerId}:${command.accountId}`);
      });
      const holdKeys = messages.filter((_, i) => events[i].command.type === "capture" || events[i].command.type === "release").map((message) => message.key);
      assert.ok(holdKeys.some((key) => key.includes(":")) && holdKeys.some((key) => !key.includes(":")), "captures and releases keyed both ways");
      await sink.close();
      assert.equal(producer.connected, false, "close disconnects the producer");
    });
  });

  test("keys: partner and the event's account; for captures and releases (and their duplicates) the hold's account, else the partner alone", async () => {
    const journal = new KeepingJournal();
    const clock = { now: 1_000 };
    const shard = await openWorkloadShard(journal, { clock: () => clock.now });
    const open = (accountId: string): Command => ({ type: "openAccount", id: `open-${accountId}`, partnerId: "p1", accountId, currency: "EUR" });
    const capture: Command = { type: "capture", id: "cap", partnerId: "p1", holdId: "h2" };
    await shard.submit([open("a1"), open("a2"), { type: "credit", id: "c1", partnerId: "p1", accountId: "a1", amount: 500 },
      { type: "credit", id: "c2", partnerId: "p1", accountId: "a2", amount: 580 }]);
    await shard.submit([{ type: "hold", id: "short", partnerId: "p1", accountId: "a1", amount: 50, expiresInMs: 5 },
      { type: "hold", id: "h2", partnerId: "p1", accountId: "a2", amount: 80 }]);
    clock.now += 10;
    await shard.submit([capture]);
    await shard.submit([{ type: "hold", id: "h3", partnerId: "p1", accountId: "a2", amount: 30 }, { type: "release", id: "rel", partnerId: "p1", holdId: "h3" },
      { type: "release", id: "bad", partnerId: "p1", holdId: "nope" }, { type: "transfer", id: "t", partnerId: "p1", fromAccountId: "a2", toAccountId: "a1", amount: 1 }]);
    await shard.submit([capture]);
    await shard.close();
    const events = deriveEvents(journal.records, SHARD);
    const byId = new Map(events.filter((event) => event.result.duplicate !== true).map((event) => [event.command.id, event]));
    const captured = byId.get("cap")!;
    assert.deepEqual(captured.accounts.map((change) => [change.accountId, change.balance, change.held, change.available]),
      [["a1", 500, 0, 500], ["a2", 500, 0, 500]], "the expiry on a1 is reported first, and both accounts end in the same state");
    assert.equal(messageKey(captured), "p1:a2");
    assert.equal(messageKey(byId.get("rel")!), "p1:a2");
    assert.equal(messageKey(byId.get("bad")!), "p1", "a release of an unknown hold shows no account");
    assert.equal(messageKey(byId.get("short")!), "p1:a1");
    assert.equal(messageKey(byId.get("t")!), "p1:a2", "a transfer's source");
    const duplicate = events[events.length - 1];
    assert.equal(duplicate.result.duplicate, true);
    assert.equal(messageKey(duplicate), "p1:a2", "a duplicate of a capture goes with the original (the hold's account)");
  });

  test("JSON: the event as it is, content type application/json", async () => {
    await withDirectory(async (directory) => {
      const producer = new RecordingProducer();
      const sink = await kafkaSink({ producer, topic: "t", cursorFile: join(directory, "cursor.json"), format: "json" });
      await sink.deliver(SHARD, events.slice(0, 50));
      assert.deepEqual(producer.messages.map((message) => JSON.parse(message.value as string)), JSON.parse(JSON.stringify(events.slice(0, 50))));
      assert.ok(producer.messages.every((message) => message.headers[HEADER_CONTENT_TYPE] === "application/json"));
      await sink.close();
    });
  });

  test("the cursor file moves only after a successful send; a failed send leaves it", async () => {
    await withDirectory(async (directory) => {
      const producer = new RecordingProducer();
      const cursorFile = join(directory, "cursor.json");
      const sink = await kafkaSink({ producer, topic: "t", cursorFile });
      await sink.deliver(SHARD, events.slice(0, 10));
      let open!: () => void;
      producer.gate = new Promise<void>((resolve) => (open = resolve));
      const pending = sink.deliver(SHARD, events.slice(10, 20));
      await sleep(20);
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 10 }, "not moved while the send is unconfirmed");
      assert.equal(await sink.cursor(SHARD), 10);
      open();
      await pending;
      producer.gate = undefined;
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 20 });
      producer.failNext = 1;
      await assert.rejects(sink.deliver(SHARD, events.slice(20, 30)), (error: unknown) =>
        error instanceof KafkaSendError && error.cause instanceof Error && /simulated broker outage/.test(error.message));
      assert.equal(await sink.cursor(SHARD), 20);
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 20 });
      await sink.close();
    });
  });

  test("a delivery larger than KAFKA_SEND_EVENTS_MAX goes in sends of at most that many, the cursor moving after each", async () => {
    await withDirectory(async (directory) => {
      assert.ok(events.length > KAFKA_SEND_EVENTS_MAX + 1, "a workload larger than one send");
      const producer = new RecordingProducer();
      const cursorFile = join(directory, "cursor.json");
      const sink = await kafkaSink({ producer, topic: "t", cursorFile });
      const first = events[0].seq;
      // The second send fails: the first one's events stay delivered, and the cursor says so.
      producer.failAfter = 1;
      await assert.rejects(sink.deliver(SHARD, events), KafkaSendError);
      assert.deepEqual(producer.sends.map((send) => send.messages.length), [KAFKA_SEND_EVENTS_MAX]);
      assert.equal(await sink.cursor(SHARD), first + KAFKA_SEND_EVENTS_MAX - 1);
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: first + KAFKA_SEND_EVENTS_MAX - 1 });
      await sink.deliver(SHARD, events.slice(KAFKA_SEND_EVENTS_MAX));
      assert.deepEqual(producer.messages.map((message) => message.headers[HEADER_EVENT_ID]), events.map((event) => event.eventId));
      assert.equal(await sink.cursor(SHARD), events.at(-1)!.seq);
      await sink.close();
    });
  });

  test("a relay resends after failed sends and lost acknowledgements: every event, in order, at least once", async () => {
    await withDirectory(async (directory) => {
      const journal = new KeepingJournal();
      const shard = await openWorkloadShard(journal);
      const producer = new RecordingProducer();
      const relay = await startRelay(journal, await kafkaSink({ producer, topic: "t", cursorFile: join(directory, "cursor.json") }));
      await submitWorkload(shard, workloadOpenings());
      producer.failNext = 3;
      await submitWorkload(shard, randomWorkload(21, 100));
      await relay.caughtUp(shard.lastSequence);
      producer.loseAckNext = 2;
      await submitWorkload(shard, randomWorkload(22, 100, "y"));
      await relay.caughtUp(shard.lastSequence);
      assert.equal(relay.status()[0].failures, 5);
      await relay.stop();
      const expected = deriveEvents(journal.records, SHARD).map((event) => event.eventId);
      assert.ok(producer.messages.length > expected.length, "lost acknowledgements were resent");
      assert.deepEqual(dedupedIds(producer.messages), expected, "deduped by the header: every event, in order");
      await shard.close();
    });
  });

  test("a cursor write that fails after the send (a crash between the two) resends: at least once", async () => {
    await withDirectory(async (directory) => {
      const cursorDirectory = join(directory, "cursors");
      await mkdir(cursorDirectory);
      const journal = new KeepingJournal();
      const shard = await openWorkloadShard(journal);
      const producer = new RecordingProducer();
      const sink = await kafkaSink({ producer, topic: "t", cursorFile: join(cursorDirectory, "cursor.json") });
      await submitWorkload(shard, workloadOpenings());
      const relay = await startRelay(journal, sink);
      await relay.caughtUp(shard.lastSequence);
      await rm(cursorDirectory, { recursive: true });
      await submitWorkload(shard, randomWorkload(23, 20));
      const deadline = Date.now() + 5_000;
      while (relay.status()[0].failures < 2 && Date.now() < deadline) await sleep(2);
      assert.ok(relay.status()[0].failures >= 2, "sent, but the cursor could not be written");
      const sentBeforeRepair = producer.messages.length;
      await mkdir(cursorDirectory);
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      assert.ok(sentBeforeRepair > shard.lastSequence, "the same events were sent more than once");
      assert.deepEqual(dedupedIds(producer.messages), deriveEvents(journal.records, SHARD).map((event) => event.eventId));
      assert.deepEqual(await readCursors(join(cursorDirectory, "cursor.json")), { [SHARD]: shard.lastSequence });
      await shard.close();
    });
  });

  test("a new sink on the same cursor file (a restart) resumes right after the cursor", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      const journal = new KeepingJournal();
      const shard = await openWorkloadShard(journal);
      const before = new RecordingProducer();
      let relay = await startRelay(journal, await kafkaSink({ producer: before, topic: "t", cursorFile }));
      await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(31, 100)]);
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      const stoppedAt = shard.lastSequence;
      await submitWorkload(shard, randomWorkload(32, 100, "y"));
      const after = new RecordingProducer();
      const sink = await kafkaSink({ producer: after, topic: "t", cursorFile });
      assert.equal(await sink.cursor(SHARD), stoppedAt, "read from the file");
      relay = await startRelay(journal, sink);
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      assert.equal(after.messages[0].headers[HEADER_EVENT_ID], `${SHARD}:${stoppedAt + 1}`);
      assert.deepEqual([...before.messages, ...after.messages].map((message) => message.headers[HEADER_EVENT_ID]),
        deriveEvents(journal.records, SHARD).map((event) => event.eventId), "exactly once across the restart");
      await shard.close();
    });
  });

  test("two shards on one sink, delivered at once: both cursors in the file", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      const sink = await kafkaSink({ producer: new RecordingProducer(), topic: "t", cursorFile });
      const other = events.slice(0, 40).map((event) => ({ ...event, shard: 4, eventId: `4:${event.seq}` }));
      await Promise.all([sink.deliver(SHARD, events.slice(0, 30)), sink.deliver(4, other)]);
      await Promise.all([sink.deliver(SHARD, events.slice(30, 35)), sink.deliver(4, other.slice(0, 10))]);
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 35, 4: 40 }, "a resend moves a cursor only forward");
      await sink.close();
    });
  });

  test("a delivery the relay gave up on is still sending: the next one of that shard waits for it, then resends", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      const producer = new RecordingProducer();
      const sink = await kafkaSink({ producer, topic: "t", cursorFile });
      let release = () => {};
      producer.gate = new Promise<void>((resolve) => (release = resolve));
      const abandoned = sink.deliver(SHARD, events.slice(0, 20));
      // The relay's timeout fired: it reads the cursor (still 0) and delivers again from there, a shorter chunk.
      assert.equal(await sink.cursor(SHARD), 0);
      const retry = sink.deliver(SHARD, events.slice(0, 10));
      await sleep(5);
      assert.equal(producer.sends.length, 0, "the retry waits for the abandoned send");
      release();
      await Promise.all([abandoned, retry]);
      assert.deepEqual(producer.sends.map((send) => send.messages.length), [20, 10], "one after the other, in order");
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 20 }, "the shorter resend does not move the cursor back");
      // A failed delivery does not block the next one.
      producer.failNext = 1;
      await assert.rejects(sink.deliver(SHARD, events.slice(20, 25)), KafkaSendError);
      await sink.deliver(SHARD, events.slice(20, 25));
      assert.equal(await sink.cursor(SHARD), 25);
      await sink.close();
    });
  });

  test("deliver asserts the relay's promise: consecutive events of its shard, no gap after the cursor", async () => {
    await withDirectory(async (directory) => {
      const producer = new RecordingProducer();
      const sink = await kafkaSink({ producer, topic: "t", cursorFile: join(directory, "cursor.json") });
      await assert.rejects(sink.deliver(SHARD, []), AssertionError);
      await assert.rejects(sink.deliver(SHARD, [events[0], events[2]]), /is not 3:2 in a delivery of shard 3/);
      await assert.rejects(sink.deliver(SHARD + 1, events.slice(0, 2)), AssertionError);
      await assert.rejects(sink.deliver(SHARD, events.slice(1, 3)), /would leave a gap/);
      assert.equal(producer.sends.length, 0, "nothing was sent");
      await sink.close();
    });
  });

  test("cursor file: missing is 0, a damaged one is refused on open, a leftover .tmp is ignored", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      await writeFile(`${cursorFile}.tmp`, "{\"3\": 99");
      const sink = await kafkaSink({ producer: new RecordingProducer(), topic: "t", cursorFile });
      assert.equal(await sink.cursor(SHARD), 0);
      await sink.deliver(SHARD, events.slice(0, 5));
      assert.deepEqual(await readCursors(cursorFile), { [SHARD]: 5 }, "the .tmp was replaced, not read");
      const damagedDocuments = [
        "{\"3\": 12", "[1, 2]", "{\"3\": -1}", "{\"x\": 1}", "{\"3\": 1.5}",
        "{\"topic\": \"t\", \"cursors\": [3]}", "{\"topic\": \"\", \"cursors\": {}}", "{\"cursors\": {\"3\": 1}}",
        "{\"topic\": \"t\", \"clusterId\": 7, \"cursors\": {}}", "{\"topic\": \"t\", \"cursors\": {\"3\": -1}}",
        "{\"topic\": \"t\", \"partition\": 0, \"cursors\": {}}",
      ];
      for (const damaged of damagedDocuments) {
        await writeFile(cursorFile, damaged);
        await assert.rejects(kafkaSink({ producer: new RecordingProducer(), topic: "t", cursorFile }), KafkaCursorFileError, damaged);
      }
    });
  });
});

describe("Kafka cursor file: the destination it records", () => {
  test("a sink on a file of another topic or cluster is refused (KafkaCursorDestinationError), the file left as it was", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      const sink = await kafkaSink({ producer: new RecordingProducer(), topic: "events-a", clusterId: "cluster-1", cursorFile });
      await sink.deliver(SHARD, events.slice(0, 10));
      await sink.close();
      const written = await readFile(cursorFile, "utf8");
      assert.deepEqual(JSON.parse(written), { topic: "events-a", clusterId: "cluster-1", cursors: { [SHARD]: 10 } });
      const others = [
        { topic: "events-b", clusterId: "cluster-1" },
        { topic: "events-a", clusterId: "cluster-2" },
        { topic: "events-b", clusterId: undefined },
      ];
      for (const other of others) {
        const producer = new RecordingProducer();
        await assert.rejects(kafkaSink({ producer, ...other, cursorFile }), (error: unknown) => {
          assert.ok(error instanceof KafkaCursorDestinationError, String(error));
          assert.deepEqual(error.recorded, { topic: "events-a", clusterId: "cluster-1" });
          assert.equal(error.configured.topic, other.topic);
          assert.match(error.message, /holds the cursors of topic "events-a" on cluster cluster-1, but the sink sends to topic "events-/);
          return true;
        }, JSON.stringify(other));
        assert.equal(producer.connected, false, "refused before connecting");
      }
      assert.equal(await readFile(cursorFile, "utf8"), written, "the file is left as it was");
      // The same topic by a sink that does not know its cluster: the topic is checked, the recorded cluster kept.
      const unknownCluster = await kafkaSink({ producer: new RecordingProducer(), topic: "events-a", cursorFile });
      assert.equal(await unknownCluster.cursor(SHARD), 10);
      await unknownCluster.deliver(SHARD, events.slice(10, 12));
      await unknownCluster.close();
      assert.deepEqual(JSON.parse(await readFile(cursorFile, "utf8")), { topic: "events-a", clusterId: "cluster-1", cursors: { [SHARD]: 12 } });
    });
  });

  test("a file of the first version (cursors only) is read as this destination's and rewritten with it on open", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      await writeFile(cursorFile, JSON.stringify({ [SHARD]: 42, 4: 7 }));
      const sink = await kafkaSink({ producer: new RecordingProducer(), topic: "t", clusterId: "cluster-1", cursorFile });
      assert.equal(await sink.cursor(SHARD), 42);
      assert.equal(await sink.cursor(4), 7);
      assert.deepEqual(JSON.parse(await readFile(cursorFile, "utf8")), { topic: "t", clusterId: "cluster-1", cursors: { [SHARD]: 42, 4: 7 } },
        "rewritten with the destination before any delivery");
      await sink.close();
      await assert.rejects(kafkaSink({ producer: new RecordingProducer(), topic: "u", cursorFile }), KafkaCursorDestinationError);
      // Without a cluster id, the first version's file gets the topic alone.
      await writeFile(cursorFile, JSON.stringify({ [SHARD]: 5 }));
      await (await kafkaSink({ producer: new RecordingProducer(), topic: "t", cursorFile })).close();
      assert.deepEqual(JSON.parse(await readFile(cursorFile, "utf8")), { topic: "t", cursors: { [SHARD]: 5 } });
      // A sink that learns its cluster records it in a file that has the topic only.
      await (await kafkaSink({ producer: new RecordingProducer(), topic: "t", clusterId: "cluster-9", cursorFile })).close();
      assert.deepEqual(JSON.parse(await readFile(cursorFile, "utf8")), { topic: "t", clusterId: "cluster-9", cursors: { [SHARD]: 5 } });
    });
  });

  test("a relay whose Kafka sink was moved to another topic does not start; on its own cursor file it starts at 0", async () => {
    await withDirectory(async (directory) => {
      const cursorFile = join(directory, "cursor.json");
      const journal = new KeepingJournal();
      const shard = await openWorkloadShard(journal);
      await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(61, 20)]);
      let relay = await startRelay(journal, await kafkaSink({ producer: new RecordingProducer(), topic: "old", cursorFile }));
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      await assert.rejects(kafkaSink({ producer: new RecordingProducer(), topic: "new", cursorFile }), KafkaCursorDestinationError);
      const fresh = new RecordingProducer();
      relay = await startRelay(journal, await kafkaSink({ producer: fresh, topic: "new", cursorFile: join(directory, "new-cursor.json") }));
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      assert.deepEqual(fresh.messages.map((message) => message.headers[HEADER_EVENT_ID]), deriveEvents(journal.records, SHARD).map((event) => event.eventId),
        "the new topic gets every event from the first");
      await shard.close();
    });
  });
});

const BROKERS = process.env.KAFKA_BROKERS;
const kafkaSkip = BROKERS === undefined || BROKERS === ""
  ? "KAFKA_BROKERS is not set (e.g. KAFKA_BROKERS=127.0.0.1:9092); the Kafka broker integration test is skipped"
  : false;
if (kafkaSkip) console.warn(`SKIP: ${kafkaSkip}`);

describe("Kafka sink, real broker (KAFKA_BROKERS)", { skip: kafkaSkip }, () => {
  test("kafkajs: produced with the sink, read back with a consumer: every event once, per-key order, headers", { timeout: 60_000 }, async () => {
    const { Kafka, logLevel } = await import("kafkajs");
    const brokers = (BROKERS ?? "").split(",");
    const run = randomBytes(6).toString("hex");
    const topic = `hotledger-test-${run}`;
    const kafka = new Kafka({ clientId: `hotledger-test-${run}`, brokers, logLevel: logLevel.WARN });
    const admin = kafka.admin();
    await admin.connect();
    const consumer = kafka.consumer({ groupId: `hotledger-test-${run}` });
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
      await withDirectory(async (directory) => {
        const sink = await openKafkaSink({ brokers, clientId: `hotledger-test-${run}`, topic, cursorFile: join(directory, "cursor.json") });
        try {
          for (const part of chunks(events, 500)) await sink.deliver(SHARD, part);
          assert.equal(await sink.cursor(SHARD), events.length);
        } finally {
          await sink.close();
        }
      });
      const received: { key: string; eventId: string; seq: number }[] = [];
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          const event = fromBinary(OutputEventSchema, message.value ?? new Uint8Array());
          assert.equal(message.headers?.[HEADER_EVENT_ID]?.toString(), event.eventId);
          received.push({ key: message.key?.toString() ?? "", eventId: event.eventId, seq: Number(event.seq) });
        },
      });
      const deadline = Date.now() + 45_000;
      while (received.length < events.length && Date.now() < deadline) await sleep(100);
      assert.deepEqual(received.map((message) => message.eventId).sort(), events.map((event) => event.eventId).sort(), "every event once");
      const lastSeqByKey = new Map<string, number>();
      for (const message of received) {
        assert.ok((lastSeqByKey.get(message.key) ?? 0) < message.seq, `${message.eventId} in order within key ${message.key}`);
        lastSeqByKey.set(message.key, message.seq);
      }
    } finally {
      await consumer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch((error: unknown) => console.warn(`could not delete topic ${topic}: ${error}`));
      await admin.disconnect();
    }
  });
});
