// Proves the JetStream sink against the real nats-server at 127.0.0.1:4222 (override with NATS_URL), with events
// derived by a real Shard and EventDeriver: every event id lands exactly once and in order on its shard's subject,
// decodes back to the event (protobuf OutputEvent, OutputEventBatch envelopes, JSON), the cursor read from the
// stream is the last sequence, a resent chunk adds nothing (Nats-Msg-Id), a hole left by a refused message is
// filled, an incompatible existing stream is refused, a stream that lost its last messages (a purge) is a
// JetStreamGapError rather than a hole, and a Relay delivers end to end, also after such a purge and while a private
// nats-server (its own port and store directory, spawned here) is killed and restarted under load.
// Every stream and subject is unique to this run and deleted afterwards. When the shared server is unreachable the
// suite is skipped with a message, except in CI (CI=true), where it fails; likewise for the nats-server binary.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { equals, fromBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager, RetentionPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { connect, nanos, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { AssertionError, Relay, type OutputEvent } from "../../core/index.ts";
import { OutputEventBatchSchema, OutputEventSchema } from "../../core/gen/hotledger/v1/ledger_pb.ts";
import { KeepingJournal, MemorySnapshotStore } from "../../core/testing/memory-ports.ts";
import { MemoryJournalTail } from "../../core/testing/memory-outputs.ts";
import { deriveEvents, openWorkloadShard, randomWorkload, submitWorkload, WORKLOAD_SIZES, workloadEvents, workloadOpenings } from "../../core/testing/workload.ts";
import { encodeOutputEvent, outputEventToProto } from "../../core/wire.ts";
import {
  CONTENT_TYPES,
  HEADER_CONTENT_TYPE,
  HEADER_FIRST_SEQ,
  HEADER_LAST_SEQ,
  JetStreamCursorError,
  JetStreamGapError,
  JetStreamMessageTooLargeError,
  JetStreamPublishError,
  JetStreamStreamConfigError,
  openJetStreamSink,
  subjectFilterCovers,
  type JetStreamSinkSettings,
} from "./index.ts";
import { NATS_SERVER_BIN, natsReachable, PrivateNats, skipUnlessAvailable } from "../../runtime-tests/services.ts";

const SERVER = process.env.NATS_URL ?? "127.0.0.1:4222";
const RUN = randomBytes(6).toString("hex");
const SHARD = 3;
/** Bounds of the waits in this file. */
const READ_TIMEOUT_MS = 20_000;
const CATCH_UP_TIMEOUT_MS = 40_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const server = await natsReachable(SERVER);
const skip = skipUnlessAvailable(server.up, "nats-server is reachable",
  `nats-server at ${SERVER} is unreachable (${server.up ? "" : server.reason}); JetStream sink tests skipped`);
const binaryMissing = skipUnlessAvailable(existsSync(NATS_SERVER_BIN), "the nats-server binary is present",
  `${NATS_SERVER_BIN} is missing (NATS_SERVER_BIN); the restart test is skipped`);

let streams = 0;

/** A stream name and subject prefix no other run (or other test of this run) uses. */
function uniqueNames(): { stream: string; subjectPrefix: string } {
  streams++;
  return { stream: `HOTLEDGER_TEST_${RUN}_${streams}`, subjectPrefix: `hotledger.test.${RUN}.${streams}` };
}

/** The events of a seeded workload (~1800, every command type), derived once. */
const events = server.up ? await workloadEvents({ shard: SHARD }) : [];

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

interface StoredMessage {
  data: Uint8Array;
  headers: MsgHdrs;
}

/** Every message of `stream` (one subject per test stream), in stream order, read by an ordered consumer. */
async function readStream(nc: NatsConnection, stream: string): Promise<StoredMessage[]> {
  const manager = await jetstreamManager(nc);
  const count = (await manager.streams.info(stream)).state.messages;
  const out: StoredMessage[] = [];
  if (count === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume({ max_messages: 1000 });
  const timer = setTimeout(() => messages.stop(), READ_TIMEOUT_MS);
  try {
    for await (const message of messages) {
      assert.ok(message.headers !== undefined, "every message has headers");
      out.push({ data: message.data, headers: message.headers });
      if (out.length === count) break;
    }
  } finally {
    clearTimeout(timer);
    messages.stop();
  }
  assert.equal(out.length, count, `read all ${count} messages of ${stream}`);
  return out;
}

/** The event ids a stream holds, in order: from per-event messages or from envelopes, checking headers. */
function storedEventIds(messages: StoredMessage[], envelope: boolean): string[] {
  const ids: string[] = [];
  for (const { data, headers } of messages) {
    const batch = envelope ? fromBinary(OutputEventBatchSchema, data).events : [fromBinary(OutputEventSchema, data)];
    assert.equal(headers.get(HEADER_LAST_SEQ), String(batch[batch.length - 1].seq));
    if (envelope && batch.length > 1) assert.equal(headers.get(HEADER_FIRST_SEQ), String(batch[0].seq));
    assert.equal(headers.get("Nats-Msg-Id"), envelope ? `${SHARD}:${batch[0].seq}-${batch[batch.length - 1].seq}` : batch[0].eventId);
    for (const event of batch) ids.push(event.eventId);
  }
  return ids;
}

/** The bytes of a per-event message's NATS header block (the server counts them in max_msg_size). */
function headerBytes(event: OutputEvent): number {
  const lines = [`${HEADER_LAST_SEQ}: ${event.seq}`, `${HEADER_CONTENT_TYPE}: ${CONTENT_TYPES.protobuf.event}`, `Nats-Msg-Id: ${event.eventId}`];
  return "NATS/1.0\r\n".length + lines.reduce((sum, line) => sum + line.length + 2, 0) + 2;
}

/**
 * A message size limit that refuses some of messages `sizes` and lets a later one through, in the widest gap
 * between sizes (so that a few bytes of difference in how the server counts cannot move it).
 */
function holeMakingLimit(sizes: number[]): number {
  const distinct = [...new Set(sizes)].sort((a, b) => a - b);
  let best = { gap: 0, limit: 0 };
  for (let i = 1; i < distinct.length; i++) {
    const limit = Math.floor((distinct[i - 1] + distinct[i]) / 2);
    const firstRefused = sizes.findIndex((size) => size > limit);
    const laterStored = sizes.slice(firstRefused + 1).some((size) => size <= limit);
    if (laterStored && distinct[i] - distinct[i - 1] > best.gap) best = { gap: distinct[i] - distinct[i - 1], limit };
  }
  assert.ok(best.gap >= 8, `a size gap of at least 8 bytes with a smaller message after a larger one (${best.gap})`);
  return best.limit;
}

/** A connection and manager for checking and deleting the test's streams. */
async function openChecker(servers = SERVER): Promise<{ nc: NatsConnection; manager: JetStreamManager }> {
  const nc = await connect({ servers });
  return { nc, manager: await jetstreamManager(nc) };
}

/** Opens a sink on a fresh stream, runs `body`, deletes the stream and closes everything. */
async function withSink(
  settings: JetStreamSinkSettings,
  body: (sink: Awaited<ReturnType<typeof openJetStreamSink>>, checker: { nc: NatsConnection; manager: JetStreamManager }) => Promise<void>,
): Promise<void> {
  const names = uniqueNames();
  const checker = await openChecker();
  const sink = await openJetStreamSink({ servers: SERVER, ...names, ...settings });
  try {
    await body(sink, checker);
  } finally {
    await sink.close();
    await checker.manager.streams.delete(names.stream);
    await checker.nc.close();
  }
}

describe("JetStream sink", { skip }, () => {
  test("subject filters: what covers <prefix>.*", () => {
    assert.ok(subjectFilterCovers("a.b.>", "a.b.*"));
    assert.ok(subjectFilterCovers("a.b.*", "a.b.*"));
    assert.ok(subjectFilterCovers(">", "a.b.*"));
    assert.ok(subjectFilterCovers("a.*.*", "a.b.*"));
    assert.ok(!subjectFilterCovers("a.b.1", "a.b.*"), "one shard's subject is not all of them");
    assert.ok(!subjectFilterCovers("a.b", "a.b.*"));
    assert.ok(!subjectFilterCovers("a.b.*.>", "a.b.*"));
    assert.ok(!subjectFilterCovers("a.c.>", "a.b.*"));
  });

  test("per-event protobuf: each event once, in order, decodable, with its headers; cursor; a resent chunk adds nothing", async () => {
    await withSink({}, async (sink, { nc, manager }) => {
      assert.equal(await sink.cursor(SHARD), 0, "an empty subject is cursor 0");
      const parts = chunks(events, 250);
      for (const part of parts) await sink.deliver(SHARD, part);
      assert.equal(await sink.cursor(SHARD), events.length);
      assert.equal(await sink.cursor(SHARD + 1), 0, "another shard's subject is empty");
      await sink.deliver(SHARD, parts[2]);
      await sink.deliver(SHARD, parts[parts.length - 1]);
      assert.equal((await manager.streams.info(sink.stream)).state.messages, events.length, "resends were dropped as duplicates");
      assert.equal(await sink.cursor(SHARD), events.length);
      const messages = await readStream(nc, sink.stream);
      assert.deepEqual(storedEventIds(messages, false), events.map((event) => event.eventId), "exactly once, in order");
      messages.forEach(({ data, headers }, i) => {
        assert.ok(equals(OutputEventSchema, fromBinary(OutputEventSchema, data), outputEventToProto(events[i])), `${events[i].eventId} decodes back`);
        assert.equal(headers.get(HEADER_CONTENT_TYPE), CONTENT_TYPES.protobuf.event);
        assert.equal(headers.get(HEADER_FIRST_SEQ), "", "a single event has no first-seq header");
      });
    });
  });

  test("envelope protobuf: OutputEventBatch per deliver, Msg-Id <shard>:<first>-<last>; a resent envelope adds nothing", async () => {
    await withSink({ envelope: true }, async (sink, { nc, manager }) => {
      const parts = chunks(events, 400);
      for (const part of parts) await sink.deliver(SHARD, part);
      assert.equal(await sink.cursor(SHARD), events.length);
      await sink.deliver(SHARD, parts[1]);
      assert.equal((await manager.streams.info(sink.stream)).state.messages, parts.length, "one message per deliver; the resend was dropped");
      const messages = await readStream(nc, sink.stream);
      assert.deepEqual(storedEventIds(messages, true), events.map((event) => event.eventId));
      messages.forEach(({ data, headers }, i) => {
        const batch = fromBinary(OutputEventBatchSchema, data);
        assert.equal(batch.events.length, parts[i].length);
        batch.events.forEach((event, j) => assert.ok(equals(OutputEventSchema, event, outputEventToProto(parts[i][j]))));
        assert.equal(headers.get(HEADER_CONTENT_TYPE), CONTENT_TYPES.protobuf.envelope);
      });
    });
  });

  test("an envelope over the stream's max_msg_size is split into several, each within it", async () => {
    const names = uniqueNames();
    const checker = await openChecker();
    try {
      const messageBytesMax = 8 * 1024;
      await checker.manager.streams.add({ name: names.stream, subjects: [`${names.subjectPrefix}.>`], duplicate_window: nanos(120_000), max_msg_size: messageBytesMax });
      const sink = await openJetStreamSink({ servers: SERVER, ...names, envelope: true });
      try {
        for (const part of chunks(events, 1000)) await sink.deliver(SHARD, part);
        assert.equal(await sink.cursor(SHARD), events.length);
      } finally {
        await sink.close();
      }
      const messages = await readStream(checker.nc, names.stream);
      assert.ok(messages.length > 2, `split into ${messages.length} envelopes`);
      for (const { data } of messages) assert.ok(data.length <= messageBytesMax, `an envelope of ${data.length} bytes`);
      assert.deepEqual(storedEventIds(messages, true), events.map((event) => event.eventId));
    } finally {
      await checker.manager.streams.delete(names.stream);
      await checker.nc.close();
    }
  });

  test("an event too large for any envelope: the envelopes before it are stored, then JetStreamMessageTooLargeError", async () => {
    const names = uniqueNames();
    const checker = await openChecker();
    try {
      await checker.manager.streams.add({ name: names.stream, subjects: [`${names.subjectPrefix}.>`], duplicate_window: nanos(120_000), max_msg_size: 4096 });
      const sink = await openJetStreamSink({ servers: SERVER, ...names, envelope: true });
      try {
        const part = events.slice(0, 60);
        part[50] = { ...part[50], accountId: "x".repeat(5000) };
        await assert.rejects(sink.deliver(SHARD, part), (error: unknown) => error instanceof JetStreamMessageTooLargeError && error.message.includes(part[50].eventId));
        assert.equal(await sink.cursor(SHARD), part[49].seq, "every envelope before the oversized event is stored");
      } finally {
        await sink.close();
      }
      const messages = await readStream(checker.nc, names.stream);
      assert.ok(messages.length >= 2, `${messages.length} envelopes`);
      assert.deepEqual(storedEventIds(messages, true), events.slice(0, 50).map((event) => event.eventId));
    } finally {
      await checker.manager.streams.delete(names.stream);
      await checker.nc.close();
    }
  });

  test("JSON, per event and in envelopes: the events as they are, Content-Type application/json", async () => {
    for (const envelope of [false, true]) {
      await withSink({ format: "json", envelope }, async (sink, { nc }) => {
        for (const part of chunks(events, 300)) await sink.deliver(SHARD, part);
        assert.equal(await sink.cursor(SHARD), events.length);
        const decoded: unknown[] = [];
        for (const { data, headers } of await readStream(nc, sink.stream)) {
          assert.equal(headers.get(HEADER_CONTENT_TYPE), "application/json");
          const body: unknown = JSON.parse(new TextDecoder().decode(data));
          if (envelope) decoded.push(...(body as unknown[]));
          else decoded.push(body);
        }
        assert.deepEqual(decoded, JSON.parse(JSON.stringify(events)), `envelope ${envelope}`);
      });
    }
  });

  test("an existing stream that cannot serve is refused with every reason, and left as it was", async () => {
    const checker = await openChecker();
    const created: string[] = [];
    try {
      const narrow = uniqueNames();
      created.push(narrow.stream);
      await checker.manager.streams.add({ name: narrow.stream, subjects: [`${narrow.subjectPrefix}.1`], duplicate_window: nanos(10_000) });
      await assert.rejects(openJetStreamSink({ servers: SERVER, ...narrow }), (error: unknown) => {
        assert.ok(error instanceof JetStreamStreamConfigError);
        assert.equal(error.problems.length, 2);
        assert.match(error.message, new RegExp(`do not cover ${narrow.subjectPrefix.replaceAll(".", "\\.")}\\.\\*`));
        assert.match(error.message, /duplicate window is 10000 ms, at least 120000 ms is needed/);
        return true;
      });
      assert.equal(Math.round((await checker.manager.streams.info(narrow.stream)).config.duplicate_window / 1e6), 10_000, "unchanged");
      // The same window is enough when the sink is told it needs less.
      const sink = await openJetStreamSink({ servers: SERVER, ...narrow, subjectPrefix: narrow.subjectPrefix.replace(/\.\d+$/, ""), duplicateWindowMs: 10_000 })
        .catch((error: unknown) => error);
      assert.ok(sink instanceof JetStreamStreamConfigError, "still does not cover the subjects");
      const queue = uniqueNames();
      created.push(queue.stream);
      await checker.manager.streams.add({ name: queue.stream, subjects: [`${queue.subjectPrefix}.>`], retention: RetentionPolicy.Workqueue, duplicate_window: nanos(120_000) });
      await assert.rejects(openJetStreamSink({ servers: SERVER, ...queue }), /retention is workqueue, not limits/);
      // A stream-wide count limit that discards old messages would push a quiet shard's last message (its cursor) out.
      const counted = uniqueNames();
      created.push(counted.stream);
      await checker.manager.streams.add({ name: counted.stream, subjects: [`${counted.subjectPrefix}.>`], max_msgs: 5, duplicate_window: nanos(120_000) });
      await assert.rejects(openJetStreamSink({ servers: SERVER, ...counted }), /discards old messages past max_msgs 5/);
    } finally {
      for (const stream of created) await checker.manager.streams.delete(stream);
      await checker.nc.close();
    }
  });

  test("a foreign message on a shard's subject makes the cursor fail clearly", async () => {
    await withSink({}, async (sink, { nc }) => {
      await sink.deliver(SHARD, events.slice(0, 10));
      await jetstream(nc).publish(sink.subject(SHARD), new Uint8Array([1, 2, 3]));
      await assert.rejects(sink.cursor(SHARD), (error: unknown) => error instanceof JetStreamCursorError && /no valid Hotledger-Last-Seq/.test(error.message));
    });
  });

  test("per event: a message refused in the middle holds the cursor below it, and the resend fills the hole", async () => {
    await withSink({}, async (sink, { nc, manager }) => {
      await sink.deliver(SHARD, events.slice(0, 100));
      // The stream is made to refuse the largest events of the next hundred (max_msg_size counts headers too);
      // the sink still has the old limit, so it publishes them all and later, smaller ones are stored.
      const part = events.slice(100, 200);
      const sizes = part.map((event) => encodeOutputEvent(event).length + headerBytes(event));
      const limit = holeMakingLimit(sizes);
      const refusedIndex = sizes.findIndex((size) => size > limit);
      const config = (await manager.streams.info(sink.stream)).config;
      await manager.streams.update(sink.stream, { ...config, max_msg_size: limit });
      await assert.rejects(sink.deliver(SHARD, part), JetStreamPublishError);
      const stored = (await manager.streams.info(sink.stream)).state.messages;
      assert.ok(stored > 100 + refusedIndex, "events after the refused one were stored: a hole");
      const refused = part[refusedIndex];
      assert.equal(await sink.cursor(SHARD), refused.seq - 1, "held below the first refused event");
      await manager.streams.update(sink.stream, { ...config, max_msg_size: -1 });
      await sink.deliver(SHARD, events.slice(refused.seq - 1, 200));
      // The last message on the subject is now the last filler of the hole: the cursor may read low (a restarted
      // relay would resend up to 200, dropped as duplicates) but never high. The next delivery sets it right.
      const afterFill = await sink.cursor(SHARD);
      assert.ok(afterFill >= refused.seq && afterFill <= 200, `cursor ${afterFill} after the fill`);
      await sink.deliver(SHARD, events.slice(200, 300));
      assert.equal(await sink.cursor(SHARD), 300);
      const ids = storedEventIds(await readStream(nc, sink.stream), false);
      const expected = events.slice(0, 300).map((event) => event.eventId);
      assert.deepEqual([...ids].sort(), [...expected].sort(), "every event exactly once");
      assert.notDeepEqual(ids, expected, "the hole was filled late, after the events stored above it");
    });
  });

  /** A duplicate window short enough for a test to wait out (the sink holds lost events back for it, plus ~1 s). */
  const SHORT_WINDOW_MS = 1_000;

  for (const envelope of [false, true]) {
    test(`${envelope ? "envelopes" : "per event"}: a stream that lost its last messages (a purge) is a JetStreamGapError, not a hole; the lost events are resent after the duplicate window`, async () => {
      await withSink({ envelope, duplicateWindowMs: SHORT_WINDOW_MS }, async (sink, { nc, manager }) => {
        await sink.deliver(SHARD, events.slice(0, 50));
        await sink.deliver(SHARD, events.slice(50, 60));
        await manager.streams.purge(sink.stream, { filter: sink.subject(SHARD) });
        await assert.rejects(sink.deliver(SHARD, events.slice(60, 70)), (error: unknown) => {
          assert.ok(error instanceof JetStreamGapError, String(error));
          assert.deepEqual([error.shard, error.cursor, error.firstSeq, error.resendAtMs], [SHARD, 0, 61, undefined]);
          assert.match(error.message, /no longer holds 1\.\.60/);
          return true;
        });
        assert.equal((await manager.streams.info(sink.stream)).state.messages, 0, "nothing was published above the hole");
        assert.equal(await sink.cursor(SHARD), 0, "the relay reads the cursor again and resends from it");
        // The purged ids are still in the server's duplicate window: a resend now would be acknowledged and dropped.
        let gap: unknown;
        await sink.deliver(SHARD, events.slice(0, 70)).catch((error: unknown) => (gap = error));
        assert.ok(gap instanceof JetStreamGapError && gap.resendAtMs !== undefined, `held back within the window: ${String(gap)}`);
        assert.match(gap.message, /lost events up to 60 within its duplicate window/);
        assert.equal((await manager.streams.info(sink.stream)).state.messages, 0, "nothing was published");
        await sleep(gap.resendAtMs - Date.now() + 10);
        await sink.deliver(SHARD, events.slice(0, 70));
        await sink.deliver(SHARD, events.slice(70, 80));
        assert.equal(await sink.cursor(SHARD), 80);
        const ids = storedEventIds(await readStream(nc, sink.stream), envelope);
        assert.deepEqual(ids, events.slice(0, 80).map((event) => event.eventId), "every event once, in order: the lost ones were stored again");
      });
    });
  }

  test("a stream deleted and created again under the sink: the next delivery is a JetStreamGapError", async () => {
    await withSink({}, async (sink, { manager }) => {
      await sink.deliver(SHARD, events.slice(0, 20));
      const config = (await manager.streams.info(sink.stream)).config;
      await manager.streams.delete(sink.stream);
      await manager.streams.add(config);
      await assert.rejects(sink.deliver(SHARD, events.slice(20, 30)), (error: unknown) => error instanceof JetStreamGapError && error.cursor === 0);
      assert.equal((await manager.streams.info(sink.stream)).state.messages, 0);
    });
  });

  test("a last message gone after the stream's max age is not a gap: a running relay goes on", async () => {
    await withSink({ maxAgeMs: SHORT_WINDOW_MS, duplicateWindowMs: SHORT_WINDOW_MS }, async (sink, { manager }) => {
      await sink.deliver(SHARD, events.slice(0, 10));
      const deadline = Date.now() + 10_000;
      while ((await manager.streams.info(sink.stream)).state.messages > 0 && Date.now() < deadline) await sleep(100);
      assert.equal(await sink.cursor(SHARD), 0, "aged out");
      await sink.deliver(SHARD, events.slice(10, 20));
      assert.equal(await sink.cursor(SHARD), 20);
    });
  });

  test("deliver asserts the relay's promise: consecutive events of its shard", async () => {
    await withSink({}, async (sink, { manager }) => {
      await assert.rejects(sink.deliver(SHARD, []), AssertionError);
      await assert.rejects(sink.deliver(SHARD, [events[0], events[2]]), /is not 3:2 in a delivery of shard 3/);
      await assert.rejects(sink.deliver(SHARD + 1, events.slice(0, 2)), AssertionError);
      assert.equal((await manager.streams.info(sink.stream)).state.messages, 0, "nothing was published");
    });
  });

  test("does not close a connection it was given", async () => {
    const names = uniqueNames();
    const nc = await connect({ servers: SERVER });
    try {
      const sink = await openJetStreamSink({ connection: nc, ...names });
      await sink.deliver(SHARD, events.slice(0, 5));
      await sink.close();
      assert.equal(nc.isClosed(), false);
      assert.equal(await (await openJetStreamSink({ connection: nc, ...names })).cursor(SHARD), 5, "a new sink reads the cursor back");
    } finally {
      await (await jetstreamManager(nc)).streams.delete(names.stream);
      await nc.close();
    }
  });

  test("end to end through a Relay: every event exactly once, in order, across a relay restart", async () => {
    const names = uniqueNames();
    const checker = await openChecker();
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal);
    const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
    const openRelay = async () => Relay.start({
      ...WORKLOAD_SIZES, shard: SHARD, snapshots: new MemorySnapshotStore(), sleep, retryMs: 50, deliverEventsMax: 200,
      sinks: [await openJetStreamSink({ servers: SERVER, ...names, envelope: true })],
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    });
    try {
      let relay = await openRelay();
      await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(41, 200)]);
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      const first = shard.lastSequence;
      await submitWorkload(shard, randomWorkload(42, 200, "y"));
      relay = await openRelay();
      assert.equal(relay.status()[0].cursor, first, "the new relay's sink read its cursor from the stream");
      await relay.caughtUp(shard.lastSequence);
      await relay.stop();
      const ids = storedEventIds(await readStream(checker.nc, names.stream), true);
      assert.deepEqual(ids, deriveEvents(journal.records, SHARD).map((event) => event.eventId));
    } finally {
      await shard.close();
      await checker.manager.streams.delete(names.stream);
      await checker.nc.close();
    }
  });
});

describe("JetStream sink through a Relay, a stream purged under it", { skip }, () => {
  test("the relay resends what the purge took once the duplicate window has passed: every event in the stream, in order", { timeout: 30_000 }, async () => {
    const names = uniqueNames();
    const checker = await openChecker();
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal);
    const lines: string[] = [];
    const relay = await Relay.start({
      ...WORKLOAD_SIZES, shard: SHARD, snapshots: new MemorySnapshotStore(), sleep, retryMs: 100, deliverEventsMax: 200,
      sinks: [await openJetStreamSink({ servers: SERVER, ...names, duplicateWindowMs: 1_000 })],
      openTail: async (after: number) => new MemoryJournalTail(journal, after), log: (line) => lines.push(line),
    });
    try {
      await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(43, 100)]);
      await relay.caughtUp(shard.lastSequence);
      await checker.manager.streams.purge(names.stream);
      await submitWorkload(shard, randomWorkload(44, 50, "p"));
      const deadline = Date.now() + 20_000;
      while (relay.status()[0].cursor < shard.lastSequence && Date.now() < deadline) await sleep(50);
      assert.equal(relay.status()[0].cursor, shard.lastSequence, `caught up (${relay.status()[0].lastError})`);
      const ids = storedEventIds(await readStream(checker.nc, names.stream), false);
      assert.deepEqual(ids, deriveEvents(journal.records, SHARD).map((event) => event.eventId), "no hole: every event once, in order");
      assert.ok(lines.some((line) => line.includes("no longer holds")) && lines.some((line) => line.includes("within its duplicate window")), lines.join("\n"));
    } finally {
      await relay.stop();
      await shard.close();
      await checker.manager.streams.delete(names.stream);
      await checker.nc.close();
    }
  });
});

describe("JetStream sink, private nats-server", { skip: skip || binaryMissing }, () => {
  for (const envelope of [false, true]) {
    test(`${envelope ? "envelopes" : "per event"}: the server killed for ~2.5 s under load, then restarted: every event once, in order`, { timeout: 60_000 }, async () => {
      const server = await PrivateNats.create();
      const servers = server.url;
      const journal = new KeepingJournal();
      const shard = await openWorkloadShard(journal);
      const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
      let relay: Relay | undefined;
      try {
        const names = uniqueNames();
        const sink = await openJetStreamSink({ servers, ...names, envelope, ackTimeoutMs: 1_000 });
        relay = await Relay.start({
          ...WORKLOAD_SIZES, shard: SHARD, snapshots: new MemorySnapshotStore(), sleep, retryMs: 100, deliverEventsMax: 250,
          sinks: [sink], openTail: async (after: number) => new MemoryJournalTail(journal, after),
        });
        await submitWorkload(shard, workloadOpenings());
        // Load for ~4 s; the server is down from ~0.8 s to ~3.3 s of it.
        const load = (async () => {
          for (let round = 0; round < 40; round++) {
            await submitWorkload(shard, randomWorkload(100 + round, 25, `r${round}`));
            await sleep(100);
          }
        })();
        await sleep(800);
        await server.stop("SIGKILL");
        const deliveredBeforeOutage = relay.status()[0].delivered;
        await sleep(2_500);
        await server.start();
        await load;
        const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
        while (relay.status()[0].cursor < shard.lastSequence && Date.now() < deadline) await sleep(50);
        const status = relay.status()[0];
        assert.equal(status.cursor, shard.lastSequence, `caught up within ${CATCH_UP_TIMEOUT_MS} ms (${status.lastError})`);
        assert.ok(status.failures > 0, "deliveries failed during the outage");
        assert.ok(deliveredBeforeOutage > 0, "deliveries happened before the outage");
        await relay.stop();
        relay = undefined;
        const checker = await openChecker(servers);
        try {
          const ids = storedEventIds(await readStream(checker.nc, names.stream), envelope);
          assert.deepEqual(ids, deriveEvents(journal.records, SHARD).map((event) => event.eventId), "every event once, in order");
        } finally {
          await checker.nc.close();
        }
      } finally {
        await relay?.stop();
        await shard.close();
        await server.destroy();
      }
    });
  }
});
