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
 */
import { Buffer } from "node:buffer";
import { assert } from "../../core/assert.ts";
import { assertConsecutive, type OutputEvent, type OutputSink } from "../../core/outputs.ts";
import { encodeOutputEvent } from "../../core/wire.ts";
import { KafkaCursorFileError, readCursorFile, writeCursorFile } from "./cursor-file.ts";

export { KafkaCursorFileError };

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
  /** The cursor file (created on the first delivery). One sink per file. */
  cursorFile: string;
  format?: OutputFormat;
  /** Wait for a send's acknowledgement (default ACK_TIMEOUT_MS_DEFAULT). */
  ackTimeoutMs?: number;
}

/** Options of `openKafkaSink`: where the brokers are, instead of a producer. */
export interface OpenKafkaSinkOptions extends Omit<KafkaSinkOptions, "producer"> {
  brokers: string[];
  clientId: string;
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

/** Connects the producer, reads the cursor file, and returns the sink. */
export async function kafkaSink(options: KafkaSinkOptions): Promise<KafkaSink> {
  const format = options.format ?? "protobuf";
  const ackTimeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS_DEFAULT;
  assert(options.topic.length > 0, "a topic is needed");
  assert(format in CONTENT_TYPES, `unknown format ${format}`);
  assert(Number.isSafeInteger(ackTimeoutMs) && ackTimeoutMs > 0, "ackTimeoutMs must be > 0");
  const cursors = await readCursorFile(options.cursorFile);
  await options.producer.connect();
  return new KafkaSink(options.producer, options.topic, options.cursorFile, format, ackTimeoutMs, cursors);
}

/**
 * `kafkaSink` over a kafkajs producer: idempotent (the broker drops the producer's own retries), one request in
 * flight (so a retry cannot reorder a partition), the Java-compatible partitioner (a key lands on the partition
 * Java clients would pick). kafkajs is imported here only, so `kafkaSink` works without it.
 */
export async function openKafkaSink(options: OpenKafkaSinkOptions): Promise<KafkaSink> {
  const { Kafka, Partitioners } = await import("kafkajs");
  const kafka = new Kafka({ clientId: options.clientId, brokers: options.brokers });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  return kafkaSink({ ...options, producer });
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

  /** @internal Use `kafkaSink` or `openKafkaSink`. */
  constructor(
    private readonly producer: KafkaProducer,
    readonly topic: string,
    private readonly cursorFile: string,
    private readonly format: OutputFormat,
    private readonly ackTimeoutMs: number,
    /** What the cursor file holds: changed only after the file was written. */
    private readonly cursors: Map<number, number>,
  ) {
    this.contentType = CONTENT_TYPES[format];
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
        await writeCursorFile(this.cursorFile, next);
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
