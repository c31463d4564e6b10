/**
 * How much faster is the core's hand-written OutputEvent encoder (core/output-event-writer.ts, behind
 * `encodeOutputEventBatch`) than protobuf-es on the same events?
 *
 * Napkin math: an event is ~116 B, ~25 fields in 4 messages. Written directly (a tag byte, a varint, ASCII bytes
 * copied) that is a few hundred simple stores, ~0.5-1 us; protobuf-es first builds message objects (`create`,
 * BigInt for every int64) and then walks them by reflection, ~4-8 us. So 3-10x.
 *
 * Run: `bun bench/output-event-encoder.ts`: one JSON line on stdout, {handWrittenEventsPerSec,
 * protobufEsEventsPerSec, ratio}, each the median of `--runs N` runs (default 5); `ratio` is hand-written over
 * protobuf-es. Both encode the events of a real shard's workload (derived untimed) in 5000-event envelopes, as the
 * JetStream sink does. That they write the same bytes is core/output-event-writer.test.ts's job, not this bench's.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeOutputEventBatch, outputEventToProto, type OutputEvent } from "../core/index.ts";
import { OutputEventBatchSchema } from "../core/gen/hotledger/v1/ledger_pb.ts";
import { workloadEvents } from "../core/testing/workload.ts";
import { loadAverage, median } from "./children.ts";

const CHUNK_EVENTS = 5_000;
const RUNS_MAX = 10;
/** Workload batches applied to the shard (~4.3 commands each): ~170k events. */
const WORKLOAD_BATCHES = 40_000;

/** The envelope as protobuf-es writes it: the way core/wire.ts encoded it before the hand-written writer. */
function encodeWithProtobufEs(events: readonly OutputEvent[]): Uint8Array {
  return toBinary(OutputEventBatchSchema, create(OutputEventBatchSchema, { events: events.map(outputEventToProto) }));
}

/** Events per second of `encode` over `events` in CHUNK_EVENTS envelopes. */
function rate(events: readonly OutputEvent[], encode: (chunk: readonly OutputEvent[]) => Uint8Array): number {
  const started = performance.now();
  for (let start = 0; start < events.length; start += CHUNK_EVENTS) encode(events.slice(start, start + CHUNK_EVENTS));
  return events.length / ((performance.now() - started) / 1000);
}

const argv = process.argv.slice(2);
const runsIndex = argv.indexOf("--runs");
const runs = Math.min(RUNS_MAX, Math.max(1, runsIndex >= 0 ? Number(argv[runsIndex + 1]) : 5));
const events = await workloadEvents({
  seed: 1, batches: WORKLOAD_BATCHES, prefix: "ord_01HZX3K9QW", shard: 7, inFlight: 64, clockStartMs: 1_700_000_000_000,
});
const handWritten: number[] = [];
const protobufEs: number[] = [];
for (let run = 0; run < runs; run++) {
  handWritten.push(rate(events, encodeOutputEventBatch));
  protobufEs.push(rate(events, encodeWithProtobufEs));
}
const handWrittenEventsPerSec = Math.round(median(handWritten));
const protobufEsEventsPerSec = Math.round(median(protobufEs));
console.log(JSON.stringify({
  handWrittenEventsPerSec,
  protobufEsEventsPerSec,
  ratio: Math.round((handWrittenEventsPerSec / protobufEsEventsPerSec) * 100) / 100,
  events: events.length,
  runs,
  loadAverage: loadAverage(),
}));
