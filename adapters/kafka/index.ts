/**
 * The Kafka output sink: one Kafka message per event on one topic, through any KafkaJS-shaped producer (kafkajs,
 * or @confluentinc/kafka-javascript's KafkaJS API); `openKafkaSink` builds an idempotent kafkajs producer.
 *
 * Message: key `partnerId:accountId` (see `messageKey`), value the protobuf `OutputEvent` (or its JSON), headers
 * `hotledger-event-id` (`<shard>:<seq>`) and `content-type`, timestamp the command's stamped time. Sent with
 * `acks: -1` (every in-sync replica), a delivery in sends of at most KAFKA_SEND_EVENTS_MAX messages. Kafka orders messages per partition, so events of
 * one key stay in sequence order; across keys a consumer that needs the shard's order sorts by `seq`.
 *
 * The cursor. A producer cannot ask Kafka which event it produced last, so the sink keeps its cursor in a small
 * file (cursor-file.ts), written durably after each successful send and read back on open. This is at least once:
 * after a failed send, a lost acknowledgement, or a crash between a send and its cursor write, the relay resends
 * from the cursor, and Kafka holds those events twice (the idempotent producer only removes duplicates of its own
 * retries within one session). Consumers dedupe by the `hotledger-event-id` header. One sink per cursor file.
 *
 * The cursor file records the destination its cursors are positions in: the topic, and the cluster's id when the
 * sink is told it (`openKafkaSink` asks the brokers). A sink opened on a file of another topic or cluster refuses to
 * start (KafkaCursorDestinationError) rather than deliver from a position in a different log, which would skip
 * events (a cursor ahead of the new topic) or go on from a position the new topic never had. A sink with no cursor
 * file starts at sequence 0: it is sent every event the journal still holds, from the first.
 */
import { Buffer } from "node:buffer";
import { assert } from "../../core/assert.ts";
import { assertConsecutive, type OutputEvent, type OutputSink } from "../../core/outputs.ts";
import { encodeOutputEvent } from "../../core/wire.ts";
import { KafkaCursorFileError, readCursorFile, writeCursorFile, type KafkaDestination } from "./cursor-file.ts";

export { KafkaCursorFileError, type KafkaDestination };

/** The header holding the event id, by which consumers dedupe. */
export const HEADER_EVENT_ID = "hotledger-event-id";
/** The header holding the value's content type: one of CONTENT_TYPES. */
export const HEADER_CONTENT_TYPE = "content-type";
/** Content type per format. */
export const CONTENT_TYPES = {
  protobuf: "application/protobuf; proto=hotledger.v1.OutputEvent",
  json: "application/json",
} as const;
/**
 * Most messages per `send`. A relay that lags delivers up to 50,000 events a call; one send of that many could
 * make a partition's record batch several MB, over a broker's default `message.max.bytes` (~1 MB). 1,000 events of
 * ~200-300 bytes stay far under it even on a one-partition topic. The cursor moves after each send.
 */
export const KAFKA_SEND_EVENTS_MAX = 1000;
/** Default wait for a send's acknowledgement by every in-sync replica (kafkajs's own default). */
export const ACK_TIMEOUT_MS_DEFAULT = 30_000;

/** How events are written: protobuf (core/proto, the default) or JSON (the core's OutputEvent as is). */
export type OutputFormat = keyof typeof CONTENT_TYPES;

/** One message as this sink sends it (a KafkaJS `Message`). */
export interface KafkaMessage {
  key: string;
  value: Buffer | string;
  headers: Record<string, string>;
  /** Milliseconds since the epoch, as a decimal string (KafkaJS's form). */
  timestamp: string;
}

/** The part of a KafkaJS producer the sink uses; kafkajs's `Producer` and Confluent's KafkaJS producer fit it. */
export interface KafkaProducer {
  connect(): Promise<void>;
  send(record: { topic: string; messages: KafkaMessage[]; acks: number; timeout: number }): Promise<unknown>;
  disconnect(): Promise<void>;
}

/** Options of `kafkaSink`. */
export interface KafkaSinkOptions {
  /** Connected by the sink on open, disconnected on close. Make it idempotent with one request in flight, as `openKafkaSink` does. */
  producer: KafkaProducer;
  topic: string;
  /**
   * The cursor file (created on the first delivery). One sink per file, and one destination: a file that records
   * another topic or cluster is refused (KafkaCursorDestinationError); one that records none (written before the
   * file recorded its destination) is taken as this destination's and rewritten with it on open.
   */
  cursorFile: string;
  /**
   * The Kafka cluster's id (kafkajs: `admin.describeCluster()`), recorded in the cursor file with the topic, so a
   * file written against another cluster is refused. `openKafkaSink` asks the brokers for it. Without it, the topic
   * alone is checked, and an id the file already records is kept.
   */
  clusterId?: string;
  format?: OutputFormat;
  /** Wait for a send's acknowledgement (default ACK_TIMEOUT_MS_DEFAULT). */
  ackTimeoutMs?: number;
}

/** Options of `openKafkaSink`: where the brokers are, instead of a producer. */
export interface OpenKafkaSinkOptions extends Omit<KafkaSinkOptions, "producer"> {
  brokers: string[];
  clientId: string;
}

/**
 * The cursor file holds positions in another destination (topic or cluster) than the sink's. Delivering from them
 * would skip or repeat events, so the sink does not open. Point the sink at the destination the file records, or
 * give the new destination a cursor file of its own (it then starts at sequence 0: every event the journal holds).
 */
export class KafkaCursorDestinationError extends Error {
  override name = "KafkaCursorDestinationError";

  constructor(
    readonly cursorFile: string,
    readonly recorded: KafkaDestination,
    readonly configured: KafkaDestination,
  ) {
    super(`${cursorFile} holds the cursors of ${describeDestination(recorded)}, but the sink sends to ${describeDestination(configured)}: `
      + "delivering from them would skip or repeat events; use the destination the file records, or another cursor file for the new one");
  }
}

function describeDestination(destination: KafkaDestination): string {
  return `topic "${destination.topic}"${destination.clusterId === undefined ? "" : ` on cluster ${destination.clusterId}`}`;
}

/**
 * The destination to record in `cursorFile`, given what it records now (undefined: nothing, or no file): the
 * configured one, keeping a cluster id the file records when the sink does not know its own. Throws
 * KafkaCursorDestinationError when the file records another topic or cluster.
 */
function checkDestination(cursorFile: string, recorded: KafkaDestination | undefined, configured: KafkaDestination): KafkaDestination {
  if (recorded === undefined) return configured;
  const clusterDiffers = recorded.clusterId !== undefined && configured.clusterId !== undefined && recorded.clusterId !== configured.clusterId;
  if (recorded.topic !== configured.topic || clusterDiffers) throw new KafkaCursorDestinationError(cursorFile, recorded, configured);
  const clusterId = configured.clusterId ?? recorded.clusterId;
  return clusterId === undefined ? { topic: configured.topic } : { topic: configured.topic, clusterId };
}

/** A send the producer did not confirm; `cause` is the producer's error. The cursor did not move. */
export class KafkaSendError extends Error {
  override name = "KafkaSendError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * The message key: the account whose events must stay in order, `partnerId:accountId` with the event's
 * `accountId` (the account its result is of: the command's, a transfer's source, a capture's or release's hold's).
 * An event without one (a capture or release of a hold the ledger does not know) is keyed by the partner alone, so
 * it may sit on another partition than the account's other events.
 */
export function messageKey(event: OutputEvent): string {
  const partnerId = event.command.partnerId;
  return event.accountId === "" ? partnerId : `${partnerId}:${event.accountId}`;
}

/**
 * Reads the cursor file and checks that it records this destination (KafkaCursorDestinationError), records the
 * destination in a file that has none, connects the producer, and returns the sink.
 */
export async function kafkaSink(options: KafkaSinkOptions): Promise<KafkaSink> {
  const format = options.format ?? "protobuf";
  const ackTimeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS_DEFAULT;
  assert(options.topic.length > 0, "a topic is needed");
  assert(options.clusterId === undefined || options.clusterId.length > 0, "a cluster id is not empty");
  assert(format in CONTENT_TYPES, `unknown format ${format}`);
  assert(Number.isSafeInteger(ackTimeoutMs) && ackTimeoutMs > 0, "ackTimeoutMs must be > 0");
  const configured: KafkaDestination = options.clusterId === undefined ? { topic: options.topic } : { topic: options.topic, clusterId: options.clusterId };
  const document = await readCursorFile(options.cursorFile);
  const destination = checkDestination(options.cursorFile, document?.destination, configured);
  const cursors = document?.cursors ?? new Map<number, number>();
  const recordsIt = document?.destination !== undefined && document.destination.clusterId === destination.clusterId;
  if (document !== undefined && !recordsIt) {
    // A file that does not record the destination (or its cluster) yet: from now on it does.
    try {
      await writeCursorFile(options.cursorFile, destination, cursors);
    } catch (error) {
      throw new KafkaCursorFileError(`cannot write ${options.cursorFile}: ${(error as Error).message}`, { cause: error });
    }
  }
  await options.producer.connect();
  return new KafkaSink(options.producer, destination, options.cursorFile, format, ackTimeoutMs, cursors);
}

/**
 * `kafkaSink` over a kafkajs producer: idempotent (the broker drops the producer's own retries), one request in
 * flight (so a retry cannot reorder a partition), the Java-compatible partitioner (a key lands on the partition
 * Java clients would pick). kafkajs is imported here only, so `kafkaSink` works without it.
 */
export async function openKafkaSink(options: OpenKafkaSinkOptions): Promise<KafkaSink> {
  const { Kafka, Partitioners } = await import("kafkajs");
  const kafka = new Kafka({ clientId: options.clientId, brokers: options.brokers });
  let clusterId = options.clusterId;
  if (clusterId === undefined) {
    // The cluster's own id, for the cursor file: a broker list can change while the cluster stays the same.
    const admin = kafka.admin();
    try {
      await admin.connect(); // inside the try: a failed connect is disconnected too
      // Brokers older than Kafka 0.10.1 have none: the topic alone is checked then.
      clusterId = (await admin.describeCluster()).clusterId || undefined;
    } finally {
      await admin.disconnect();
    }
  }
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  return kafkaSink({ ...options, clusterId, producer });
}

/** Events on a Kafka topic, with a cursor file. Create with `kafkaSink` or `openKafkaSink`. */
export class KafkaSink implements OutputSink {
  readonly name = "kafka";
  /**
   * The latest delivery of each shard. A delivery waits for the one before it: the relay delivers one at a time per
   * shard, but gives up on one that does not settle within its deliverTimeoutMs and starts again from the cursor,
   * while kafkajs may still be retrying the abandoned send. The new one then runs after it (some events sent twice,
   * deduped by their event-id header), never beside it.
   */
  private readonly deliveries = new Map<number, Promise<void>>();
  /** Cursor writes, one after another: each writes every shard's cursor, so two must not interleave. */
  private cursorWrites: Promise<void> = Promise.resolve();
  private readonly contentType: string;
  /** The topic the events go to. */
  readonly topic: string;

  /** @internal Use `kafkaSink` or `openKafkaSink`. */
  constructor(
    private readonly producer: KafkaProducer,
    /** Where the events go, as the cursor file records it. */
    readonly destination: KafkaDestination,
    private readonly cursorFile: string,
    private readonly format: OutputFormat,
    private readonly ackTimeoutMs: number,
    /** What the cursor file holds: changed only after the file was written. */
    private readonly cursors: Map<number, number>,
  ) {
    this.contentType = CONTENT_TYPES[format];
    this.topic = destination.topic;
  }

  /** The shard's cursor as the cursor file holds it. */
  async cursor(shard: number): Promise<number> {
    return this.cursors.get(shard) ?? 0;
  }

  async deliver(shard: number, events: readonly OutputEvent[]): Promise<void> {
    assertConsecutive(shard, events);
    const previous = this.deliveries.get(shard);
    const delivery = previous === undefined ? this.send(shard, events) : previous.then(() => this.send(shard, events));
    // The next delivery waits for this one whether it succeeds or not; its failure is this caller's.
    const settled = delivery.catch(() => undefined);
    this.deliveries.set(shard, settled);
    void settled.then(() => {
      if (this.deliveries.get(shard) === settled) this.deliveries.delete(shard);
    });
    return delivery;
  }

  private async send(shard: number, events: readonly OutputEvent[]): Promise<void> {
    const cursor = this.cursors.get(shard) ?? 0;
    assert(events[0].seq <= cursor + 1, `shard ${shard}: event ${events[0].eventId} after cursor ${cursor} would leave a gap`);
    for (let start = 0; start < events.length; start += KAFKA_SEND_EVENTS_MAX) {
      const chunk = events.slice(start, start + KAFKA_SEND_EVENTS_MAX);
      const messages = chunk.map((event) => this.message(event));
      try {
        await this.producer.send({ topic: this.topic, messages, acks: -1, timeout: this.ackTimeoutMs });
      } catch (error) {
        throw new KafkaSendError(`sending ${chunk[0].eventId}..${chunk[chunk.length - 1].eventId} to ${this.topic} failed: ${(error as Error).message}`, { cause: error });
      }
      await this.writeCursor(shard, chunk[chunk.length - 1].seq);
    }
  }

  /** Disconnects the producer. */
  async close(): Promise<void> {
    await this.cursorWrites;
    await this.producer.disconnect();
  }

  private message(event: OutputEvent): KafkaMessage {
    let value: Buffer | string;
    if (this.format === "json") {
      value = JSON.stringify(event);
    } else {
      const bytes = encodeOutputEvent(event);
      value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    return {
      key: messageKey(event),
      value,
      headers: { [HEADER_EVENT_ID]: event.eventId, [HEADER_CONTENT_TYPE]: this.contentType },
      timestamp: String(event.timeMs),
    };
  }

  /**
   * Writes the file with `shard` at `sequence` (never backwards: a resend of older events leaves it) after the
   * writes before it; then the in-memory copy follows.
   */
  private writeCursor(shard: number, sequence: number): Promise<void> {
    const write = this.cursorWrites.then(async () => {
      const next = new Map(this.cursors);
      next.set(shard, Math.max(sequence, next.get(shard) ?? 0));
      try {
        await writeCursorFile(this.cursorFile, this.destination, next);
      } catch (error) {
        throw new KafkaCursorFileError(`cannot write ${this.cursorFile}; the events up to ${shard}:${sequence} were sent and will be sent again: ${(error as Error).message}`, { cause: error });
      }
      this.cursors.set(shard, next.get(shard) ?? 0);
    });
    // The next write waits for this one whether it succeeds or not; its failure is this delivery's.
    this.cursorWrites = write.catch(() => undefined);
    return write;
  }
}
