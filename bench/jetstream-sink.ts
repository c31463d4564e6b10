/**
 * How many output events per second does the JetStream sink store, in envelope mode and one message per event?
 *
 * Napkin math (2 shared vCPUs; client and nats-server on the same box). An event is ~116 B of protobuf here
 * (~350 B of JSON). At 300k events/s that is ~35 MB/s into the stream's file and over loopback: far below what
 * either takes, so bytes are not the limit. Envelope mode sends ~60 messages of ~580 KB a second, each one ack
 * round trip (~1-3 ms): ~10% of a second, so NATS should take several million events/s and the limit is the
 * client's CPU, encoding: protobuf-es (`create` + reflective `toBinary`, BigInt per int64) costs ~4-8 us per
 * event = 125-250k/s on one core, JSON.stringify ~2 us = ~500k/s. Per-event mode pays per message what envelope
 * mode pays per 5000: a request in nats.js (a promise, a timer, headers encoded, the ack parsed, ~15-25 us) and on
 * the server a message-id lookup and a store (~5-10 us), sharing the 2 cores: ~20-40k/s.
 *
 * Run: `bun bench/jetstream-sink.ts` (a table on stderr), `--json` (one JSON line per mode on stdout), `--runs N`
 * (default 3, the median is reported), `--events N` (default 500,000), `--modes envelope,per-event`,
 * `--format protobuf|json`. Needs a nats-server with JetStream (NATS_URL, default 127.0.0.1:4222).
 *
 * The events come from a real Shard: a seeded mixed workload (every command type, atomic groups, holds that
 * expire, duplicates; command ids of ~20 characters) applied once, its journal turned into events by an
 * EventDeriver, untimed. For more events than the workload gives, the derived events are repeated with new
 * sequences (same sizes and shapes). Each timed run delivers them, as a Relay does, in consecutive 5000-event
 * `deliver` calls, each awaited, to a fresh file-backed stream of its own (deleted afterwards); the time includes
 * encoding, which the sink does. `encodeEventsPerSec` times the encoding alone (protobuf-es or JSON.stringify),
 * and, for protobuf envelopes, `publishOnlyEventsPerSec` publishes the same envelopes encoded beforehand: together
 * they show how the time splits between encoding and NATS. Every run checks that the stream holds what it should (its message count
 * and the cursor), so a number never comes from a run that lost events.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, headers as natsHeaders, nanos } from "@nats-io/transport-node";
import { encodeOutputEvent, encodeOutputEventBatch, type OutputEvent } from "../core/index.ts";
import { workloadEvents } from "../core/testing/workload.ts";
import {
  CONTENT_TYPES,
  HEADER_CONTENT_TYPE,
  HEADER_FIRST_SEQ,
  HEADER_LAST_SEQ,
  openJetStreamSink,
  type OutputFormat,
} from "../adapters/jetstream/index.ts";
import { loadAverage, median, NATS_SERVERS, round } from "./children.ts";

// Bounds: every loop is bounded by one of these.
const CHUNK_EVENTS = 5_000;
const EVENTS_MAX = 5_000_000;
const RUNS_MAX = 10;
/** Workload batches applied to the shard (~4.3 commands each): ~430k distinct events. */
const WORKLOAD_BATCHES = 100_000;
const SHARD = 7;
const SERVERS = NATS_SERVERS;

const argv = process.argv.slice(2);
const jsonMode = argv.includes("--json");
const argument = (name: string): string | undefined => {
  const index = argv.indexOf(name);
  return index >= 0 ? argv[index + 1] : undefined;
};
const RUNS = Math.min(RUNS_MAX, Math.max(1, Number(argument("--runs") ?? 3)));
const EVENTS = Math.min(EVENTS_MAX, Math.max(CHUNK_EVENTS, Number(argument("--events") ?? 500_000)));
const MODES = (argument("--modes") ?? "envelope,per-event").split(",");
const FORMAT = (argument("--format") ?? "protobuf") as OutputFormat;
if (!MODES.every((mode) => mode === "envelope" || mode === "per-event")) throw new Error(`--modes takes envelope,per-event`);
if (FORMAT !== "protobuf" && FORMAT !== "json") throw new Error(`--format takes protobuf or json`);

function log(message: string): void {
  if (!jsonMode) process.stderr.write(`${message}\n`);
}


/** `count` events of shard SHARD: derived from a real shard's workload, repeated with new sequences past its end. */
async function benchEvents(count: number): Promise<OutputEvent[]> {
  const derived = await workloadEvents({
    seed: 1, batches: WORKLOAD_BATCHES, prefix: "ord_01HZX3K9QW", shard: SHARD, inFlight: 64, clockStartMs: 1_700_000_000_000,
  });
  const events = derived.slice(0, count);
  for (let seq = events.length + 1; seq <= count; seq++) {
    events.push({ ...derived[(seq - 1) % derived.length], seq, eventId: `${SHARD}:${seq}` });
  }
  return events;
}

/** Events per second of encoding alone, the way the mode encodes. */
function encodeRate(events: readonly OutputEvent[], envelope: boolean): number {
  const encoder = new TextEncoder();
  const started = performance.now();
  for (let start = 0; start < events.length; start += CHUNK_EVENTS) {
    const chunk = events.slice(start, start + CHUNK_EVENTS);
    if (envelope) {
      if (FORMAT === "json") encoder.encode(JSON.stringify(chunk));
      else encodeOutputEventBatch(chunk);
    } else {
      for (const event of chunk) {
        if (FORMAT === "json") encoder.encode(JSON.stringify(event));
        else encodeOutputEvent(event);
      }
    }
  }
  return events.length / ((performance.now() - started) / 1000);
}

/**
 * Envelope mode's ceiling without encoding: the same envelopes, encoded beforehand (untimed), published one at a
 * time with the sink's message ids and headers into a fresh stream. What the sink would reach with a free encoder.
 */
async function publishOnlyRate(events: readonly OutputEvent[], tag: string): Promise<number> {
  const stream = `BENCH_SINK_${tag}`;
  const subject = `bench.sink.${tag}.${SHARD}`;
  const nc = await connect({ servers: SERVERS });
  const manager = await jetstreamManager(nc);
  try {
    await manager.streams.add({ name: stream, subjects: [`bench.sink.${tag}.>`], duplicate_window: nanos(120_000) });
    const client = jetstream(nc);
    const envelopes: Uint8Array[] = [];
    for (let start = 0; start < events.length; start += CHUNK_EVENTS) envelopes.push(encodeOutputEventBatch(events.slice(start, start + CHUNK_EVENTS)));
    const started = performance.now();
    for (let i = 0; i < envelopes.length; i++) {
      const first = i * CHUNK_EVENTS + 1;
      const last = Math.min(events.length, first + CHUNK_EVENTS - 1);
      const headers = natsHeaders();
      headers.set(HEADER_FIRST_SEQ, String(first));
      headers.set(HEADER_LAST_SEQ, String(last));
      headers.set(HEADER_CONTENT_TYPE, CONTENT_TYPES.protobuf.envelope);
      await client.publish(subject, envelopes[i], { msgID: `${SHARD}:${first}-${last}`, headers, timeout: 5_000 });
    }
    return events.length / ((performance.now() - started) / 1000);
  } finally {
    await manager.streams.delete(stream);
    await nc.close();
  }
}

/** One timed run into a fresh stream; checks the stream afterwards and deletes it. */
async function deliverRun(events: readonly OutputEvent[], envelope: boolean, tag: string): Promise<number> {
  const stream = `BENCH_SINK_${tag}`;
  const subjectPrefix = `bench.sink.${tag}`;
  const sink = await openJetStreamSink({ servers: SERVERS, stream, subjectPrefix, format: FORMAT, envelope });
  const checker = await connect({ servers: SERVERS });
  const manager = await jetstreamManager(checker);
  try {
    const started = performance.now();
    for (let start = 0; start < events.length; start += CHUNK_EVENTS) {
      await sink.deliver(SHARD, events.slice(start, start + CHUNK_EVENTS));
    }
    const seconds = (performance.now() - started) / 1000;
    const cursor = await sink.cursor(SHARD);
    if (cursor !== events.length) throw new Error(`the cursor is ${cursor}, not ${events.length}`);
    const stored = (await manager.streams.info(stream)).state.messages;
    if (!envelope && stored !== events.length) throw new Error(`${stored} messages stored, not ${events.length}`);
    return events.length / seconds;
  } finally {
    await sink.close();
    await manager.streams.delete(stream);
    await checker.close();
  }
}

const events = await benchEvents(EVENTS);
log(`${events.length} events of shard ${SHARD} (workload-derived, untimed), ${FORMAT}, ${CHUNK_EVENTS} per deliver, NATS ${SERVERS}`);
for (const mode of MODES) {
  const envelope = mode === "envelope";
  const rates: number[] = [];
  const encodeRates: number[] = [];
  const publishOnlyRates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const tag = `${process.pid}_${mode.replace("-", "")}_${run}_${Date.now().toString(36)}`;
    encodeRates.push(encodeRate(events, envelope));
    rates.push(await deliverRun(events, envelope, tag));
    if (envelope && FORMAT === "protobuf") publishOnlyRates.push(await publishOnlyRate(events, `${tag}_p`));
    const publishOnly = publishOnlyRates.length > run ? `, publishing pre-encoded envelopes ${round(publishOnlyRates[run])}/s` : "";
    log(`${mode} run ${run}: ${round(rates[run])} events/s (encoding alone ${round(encodeRates[run])}/s${publishOnly})`);
  }
  const line = {
    mode,
    format: FORMAT,
    events: events.length,
    jetstreamEventsPerSec: round(median(rates)),
    runs: rates.map(round),
    encodeEventsPerSec: round(median(encodeRates)),
    ...(publishOnlyRates.length > 0 ? { publishOnlyEventsPerSec: round(median(publishOnlyRates)) } : {}),
    loadAverage: loadAverage(),
  };
  if (jsonMode) console.log(JSON.stringify(line));
  else log(`${mode}: median ${line.jetstreamEventsPerSec} events/s over ${RUNS} runs; encoding alone ${line.encodeEventsPerSec}/s`);
}
