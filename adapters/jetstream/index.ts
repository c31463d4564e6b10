/**
 * The JetStream output sink: a shard's events go to a file-backed JetStream stream, one subject per shard
 * (`<subjectPrefix>.<shard>`), as protobuf `OutputEvent` messages (or an `OutputEventBatch` envelope holding many),
 * or as JSON.
 *
 * The stream is its own cursor. Every message carries `Hotledger-Last-Seq`, the last sequence it holds, so the
 * last message on a shard's subject says how far that shard got; reading it back (the stream leader's
 * STREAM.MSG.GET with `last_by_subj`) needs no second store that a crash could leave behind the stream. Each
 * message also carries `Nats-Msg-Id` (the event id, or `<shard>:<first>-<last>` for an envelope), so a resend
 * within the stream's duplicate window is dropped by the server: a publish that timed out but was stored costs
 * nothing when the relay resends it.
 *
 * Order. One connection delivers messages to the server in the order they were published, and the client drops
 * what it had not sent when the connection breaks (nats.js resets its outbound buffer on every dial), so a failed
 * delivery normally leaves a prefix of its messages stored, which is exactly what the cursor then reports.
 * Envelopes go one at a time (each awaits its ack), so in envelope mode that always holds and the stream keeps each
 * shard's events in order. Per-event mode keeps up to PUBLISHES_IN_FLIGHT_MAX publishes in flight; there the
 * server can refuse one message and store a later one (a leader change in a cluster, a full stream with
 * `discard: new`), leaving a hole under the last message. So after a failed per-event delivery the cursor is held
 * at the last sequence up to which every publish was acknowledged: the relay resends from there, the server drops
 * what it already has, and the hole is filled late, after the events stored above it. The last message is then
 * the last filler, so the cursor reads low until the next delivery (a relay restarting just then resends a few
 * events, which the server drops).
 *
 * At least once. A resend after the duplicate window has passed is stored again, and so is a resent envelope cut
 * differently from the one that timed out (envelope boundaries follow the relay's chunks), so consumers dedupe by
 * event id; consumers that need strict order use envelope mode or sort by sequence.
 *
 * Gaps. Before a delivery publishes (while its first message is encoded), it checks that the stream still holds the
 * event before its first: when the delivery goes on from this sink's last successful one, by reading that delivery's
 * last message back by its stream sequence (from its ack); else (the first delivery of a shard, or one after a
 * failure, both right after the relay read the cursor) by the last message on the shard's subject, which must hold
 * at least that event. (Not the last message alone: after a hole was filled late it reads low, see above.) When the
 * stream no longer holds it, it lost events the relay had delivered (a purge, the stream deleted and created again,
 * a server that lost its last writes; a message older than the stream's max age is not counted), and publishing
 * would leave a hole. The delivery fails with JetStreamGapError instead, as the Postgres sink's does with
 * ProjectionGapError: the relay reads the cursor again, rewinds its follower and resends from there (or stops when
 * the journal no longer holds those events). A purge leaves the lost events' ids in the server's duplicate window,
 * where a resend would be acknowledged and dropped, so the sink holds the lost events back (JetStreamGapError with
 * `resendAtMs`) until the stream's duplicate window has passed since it saw the gap.
 */
import {
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
  type StreamConfig,
} from "@nats-io/jetstream";
import { connect, headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/transport-node";
import { assert } from "../../core/assert.ts";
import { assertConsecutive, type OutputEvent, type OutputSink } from "../../core/outputs.ts";
import { encodeOutputEvent, encodeOutputEventBatch } from "../../core/wire.ts";

/** Default stream name. */
export const STREAM_DEFAULT = "HOTLEDGER_EVENTS";
/** Default subject prefix: shard 3's events are on `hotledger.events.3`. */
export const SUBJECT_PREFIX_DEFAULT = "hotledger.events";
/** Default duplicate window: resends within 2 minutes are dropped. The server keeps every message id of the window in memory (~100 B each). */
export const DUPLICATE_WINDOW_MS_DEFAULT = 120_000;
/** Default wait for one publish's acknowledgement. */
export const ACK_TIMEOUT_MS_DEFAULT = 5_000;
/**
 * Most publishes awaiting an acknowledgement at once (per-event mode). Each holds a pending request (a promise, a
 * timer, ~0.5 KB with its payload) until acknowledged: 8192 of them are ~4 MiB.
 */
export const PUBLISHES_IN_FLIGHT_MAX = 8192;
/**
 * Added to the duplicate window before lost events are resent (see JetStreamGapError): the server forgets expired
 * message ids on a timer, which can fire a little late.
 */
const LOST_RESEND_MARGIN_MS = 1_000;
/** Bytes left under the server's max_payload for an envelope's headers (which count towards it; ours are ~150 B). */
const ENVELOPE_HEADER_BYTES_RESERVED = 1024;
/** An envelope is sized for this share of the largest message, so events a little larger than the last still fit. */
const ENVELOPE_FILL = 0.9;

/** The last sequence a message holds: how the cursor is read back. */
export const HEADER_LAST_SEQ = "Hotledger-Last-Seq";
/** The first sequence an envelope holds (per-event messages carry only the last, which is the same). */
export const HEADER_FIRST_SEQ = "Hotledger-First-Seq";
/** What the payload is: one of CONTENT_TYPES. */
export const HEADER_CONTENT_TYPE = "Content-Type";
/** Content types per format and mode. A JSON envelope is an array of events. */
export const CONTENT_TYPES = {
  protobuf: { event: "application/protobuf; proto=hotledger.v1.OutputEvent", envelope: "application/protobuf; proto=hotledger.v1.OutputEventBatch" },
  json: { event: "application/json", envelope: "application/json" },
} as const;

/** How events are written: protobuf (core/proto, the default) or JSON (the core's OutputEvent as is). */
export type OutputFormat = keyof typeof CONTENT_TYPES;

/** Options of `openJetStreamSink`, besides where to connect. */
export interface JetStreamSinkSettings {
  /** Stream name (default STREAM_DEFAULT); created when missing, validated when present. */
  stream?: string;
  /** Subjects are `<subjectPrefix>.<shard>`; the stream must cover `<subjectPrefix>.*` (default SUBJECT_PREFIX_DEFAULT). */
  subjectPrefix?: string;
  format?: OutputFormat;
  /** One message per run of events (`OutputEventBatch` or a JSON array) instead of one per event. Default false. */
  envelope?: boolean;
  /** The duplicate window to create the stream with, and the least an existing stream must have. */
  duplicateWindowMs?: number;
  /**
   * Age limit of a stream this sink creates (default none); an existing stream's is left as it is. Keep it far
   * above any outage: once a shard's last message has aged out, its cursor reads 0, and a relay that starts then
   * resends from the first event (or stops when the journal no longer holds it). A running relay goes on: a message
   * gone after the stream's max age is not taken for a gap.
   */
  maxAgeMs?: number;
  /** Replicas of a stream this sink creates (default 1). */
  replicas?: number;
  /** Wait for one publish's acknowledgement (default ACK_TIMEOUT_MS_DEFAULT). */
  ackTimeoutMs?: number;
  /** Where the stream's creation is reported. Default: nowhere. */
  log?: (line: string) => void;
}

/**
 * Where to publish: `servers` (the sink opens a connection that reconnects forever, and closes it on close()) or an
 * open `connection` (left open on close()).
 */
export type JetStreamSinkOptions = JetStreamSinkSettings &
  ({ servers: string | string[]; connection?: undefined } | { connection: NatsConnection; servers?: undefined });

/** An existing stream that cannot hold this sink's events; nothing was changed. */
export class JetStreamStreamConfigError extends Error {
  override name = "JetStreamStreamConfigError";
  readonly problems: readonly string[];

  constructor(stream: string, problems: readonly string[]) {
    super(`stream ${stream} exists with a configuration the JetStream sink cannot use: ${problems.join("; ")}`);
    this.problems = problems;
  }
}

/** Some messages of a delivery were not acknowledged; `cause` is the first failure. */
export class JetStreamPublishError extends Error {
  override name = "JetStreamPublishError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The last message on a shard's subject does not say which sequence it holds: someone else published there. */
export class JetStreamCursorError extends Error {
  override name = "JetStreamCursorError";
}

/**
 * The stream no longer holds events delivered before: the last message on the shard's subject holds `cursor`, but the
 * delivery starts at `firstSeq`, after `cursor + 1`. Nothing was published (it would leave a hole); the relay resends
 * from the cursor. With `resendAtMs`, the gap was seen less than the stream's duplicate window ago and the delivery
 * includes lost events: their resends would be dropped as duplicates of the lost messages until then.
 */
export class JetStreamGapError extends Error {
  override name = "JetStreamGapError";

  constructor(
    readonly shard: number,
    readonly cursor: number,
    readonly firstSeq: number,
    message: string,
    readonly resendAtMs?: number,
  ) {
    super(message);
  }
}

/** One event, or an envelope, is larger than the server (or stream) accepts in one message. */
export class JetStreamMessageTooLargeError extends Error {
  override name = "JetStreamMessageTooLargeError";
}

/** Connects (when given `servers`), creates or validates the stream, and returns the sink. */
export async function openJetStreamSink(options: JetStreamSinkOptions): Promise<JetStreamSink> {
  const settings = resolveSettings(options);
  const connection = options.connection ?? (await connect({ servers: options.servers, maxReconnectAttempts: -1, name: "hotledger-jetstream-sink" }));
  try {
    const manager = await jetstreamManager(connection);
    const config = await ensureStream(manager, settings);
    return new JetStreamSink(connection, options.connection === undefined, manager, jetstream(connection), settings, config);
  } catch (error) {
    if (options.connection === undefined) await connection.close();
    throw error;
  }
}

/** The settings with their defaults, checked. */
type ResolvedSettings = Required<Omit<JetStreamSinkSettings, "maxAgeMs">> & { maxAgeMs: number | undefined };

function resolveSettings(options: JetStreamSinkOptions): ResolvedSettings {
  assert((options.servers === undefined) !== (options.connection === undefined), "give servers or a connection, not both");
  const settings: ResolvedSettings = {
    stream: options.stream ?? STREAM_DEFAULT,
    subjectPrefix: options.subjectPrefix ?? SUBJECT_PREFIX_DEFAULT,
    format: options.format ?? "protobuf",
    envelope: options.envelope ?? false,
    duplicateWindowMs: options.duplicateWindowMs ?? DUPLICATE_WINDOW_MS_DEFAULT,
    maxAgeMs: options.maxAgeMs,
    replicas: options.replicas ?? 1,
    ackTimeoutMs: options.ackTimeoutMs ?? ACK_TIMEOUT_MS_DEFAULT,
    log: options.log ?? (() => {}),
  };
  assert(/^[^\s.*>/\\]+$/.test(settings.stream), `stream name ${settings.stream} is not a valid JetStream name`);
  assert(/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(settings.subjectPrefix), `subject prefix ${settings.subjectPrefix} must be literal tokens`);
  assert(settings.format in CONTENT_TYPES, `unknown format ${settings.format}`);
  assert(Number.isSafeInteger(settings.duplicateWindowMs) && settings.duplicateWindowMs > 0, "duplicateWindowMs must be > 0");
  assert(settings.maxAgeMs === undefined || (Number.isSafeInteger(settings.maxAgeMs) && settings.maxAgeMs >= settings.duplicateWindowMs),
    "maxAgeMs must be at least the duplicate window");
  assert(Number.isSafeInteger(settings.replicas) && settings.replicas >= 1 && settings.replicas <= 5, "replicas must be 1..5");
  assert(Number.isSafeInteger(settings.ackTimeoutMs) && settings.ackTimeoutMs > 0, "ackTimeoutMs must be > 0");
  return settings;
}

/** The stream's configuration: created when missing, else checked (JetStreamStreamConfigError). */
async function ensureStream(manager: JetStreamManager, settings: ResolvedSettings): Promise<StreamConfig> {
  const existing = await streamConfigOrNull(manager, settings.stream);
  if (existing !== null) {
    const problems = streamConfigProblems(existing, settings);
    if (problems.length > 0) throw new JetStreamStreamConfigError(settings.stream, problems);
    return existing;
  }
  const info = await manager.streams.add({
    name: settings.stream,
    subjects: [`${settings.subjectPrefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(settings.duplicateWindowMs),
    max_age: nanos(settings.maxAgeMs ?? 0),
    num_replicas: settings.replicas,
  });
  settings.log(`jetstream sink: created stream ${settings.stream} on ${settings.subjectPrefix}.>`);
  return info.config;
}

async function streamConfigOrNull(manager: JetStreamManager, stream: string): Promise<StreamConfig | null> {
  try {
    return (await manager.streams.info(stream)).config;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
    throw error;
  }
}

/**
 * Why an existing stream cannot serve as this sink's store and cursor: it must take our subjects, keep messages
 * until they age out (a work-queue or interest stream deletes them once consumed, taking the cursor along),
 * acknowledge publishes, and remember message ids at least as long as we rely on.
 */
function streamConfigProblems(config: StreamConfig, settings: { subjectPrefix: string; duplicateWindowMs: number }): string[] {
  const problems: string[] = [];
  const subjects = config.subjects ?? [];
  if (!subjects.some((filter) => subjectFilterCovers(filter, `${settings.subjectPrefix}.*`))) {
    problems.push(`its subjects [${subjects.join(", ")}] do not cover ${settings.subjectPrefix}.*`);
  }
  if (config.retention !== RetentionPolicy.Limits) problems.push(`retention is ${config.retention}, not limits`);
  if (config.no_ack === true) problems.push("it does not acknowledge publishes (no_ack)");
  // A stream-wide count or size limit that discards old messages can drop a quiet shard's last one (other shards'
  // traffic pushes it out): its cursor would read low and the gap check would take it for lost events. A limit per
  // subject keeps each shard's last message, and discarding new messages refuses publishes (retried, visible).
  const discardsOld = (config.discard ?? DiscardPolicy.Old) === DiscardPolicy.Old;
  if (discardsOld && ((config.max_msgs ?? -1) > 0 || (config.max_bytes ?? -1) > 0)) {
    problems.push(`it discards old messages past max_msgs ${config.max_msgs ?? -1} / max_bytes ${config.max_bytes ?? -1}, which can drop a shard's last message (use max_age or max_msgs_per_subject)`);
  }
  const windowMs = Math.floor((config.duplicate_window ?? 0) / 1e6);
  if (windowMs < settings.duplicateWindowMs) {
    problems.push(`its duplicate window is ${windowMs} ms, at least ${settings.duplicateWindowMs} ms is needed`);
  }
  return problems;
}

/** Whether every subject matching `pattern` (tokens, `*` allowed) also matches the stream subject filter `filter`. */
export function subjectFilterCovers(filter: string, pattern: string): boolean {
  const filterTokens = filter.split(".");
  const patternTokens = pattern.split(".");
  for (let i = 0; i < filterTokens.length; i++) {
    if (filterTokens[i] === ">") return i < patternTokens.length;
    if (i >= patternTokens.length) return false;
    if (filterTokens[i] !== "*" && filterTokens[i] !== patternTokens[i]) return false;
  }
  return filterTokens.length === patternTokens.length;
}

/** Events in a JetStream stream. Create with `openJetStreamSink`. */
export class JetStreamSink implements OutputSink {
  readonly name = "jetstream";
  private readonly encodeEvent: (event: OutputEvent) => Uint8Array;
  private readonly encodeEnvelope: (events: readonly OutputEvent[]) => Uint8Array;
  private readonly contentType: { event: string; envelope: string };
  /**
   * Per-event mode, per shard, after a failed delivery: the sequence up to which every publish was acknowledged.
   * `cursor` reports no more than it, because a later message may be stored above a hole (see the module comment).
   */
  private readonly acknowledgedThrough = new Map<number, number>();
  /**
   * Per shard, after a JetStreamGapError: the last sequence the stream lost, and when their resends stop being
   * dropped as duplicates (the gap seen plus the stream's duplicate window). Removed once it has passed.
   */
  private readonly lost = new Map<number, { through: number; resendAtMs: number }>();
  /**
   * Per shard, the last event of the last delivery that succeeded whole, and the stream sequence its ack gave (the
   * original's, for a duplicate): the next delivery checks that message is still there.
   */
  private readonly lastAcknowledged = new Map<number, { sequence: number; streamSequence: number; acknowledgedAtMs: number }>();
  /** The stream's duplicate window, from its configuration at open. */
  private readonly duplicateWindowMs: number;
  /** The stream's age limit, from its configuration at open (0: none). */
  private readonly maxAgeMs: number;
  /** Bytes per event of the last envelope (0 before the first): how many events the next one can take. */
  private envelopeBytesPerEvent = 0;

  /** @internal Use `openJetStreamSink`. */
  constructor(
    private readonly connection: NatsConnection,
    private readonly ownsConnection: boolean,
    private readonly manager: JetStreamManager,
    private readonly client: JetStreamClient,
    private readonly settings: ResolvedSettings,
    private readonly streamConfig: StreamConfig,
  ) {
    const encoder = new TextEncoder();
    this.encodeEvent = settings.format === "json" ? (event) => encoder.encode(JSON.stringify(event)) : encodeOutputEvent;
    this.encodeEnvelope = settings.format === "json" ? (events) => encoder.encode(JSON.stringify(events)) : encodeOutputEventBatch;
    this.contentType = CONTENT_TYPES[settings.format];
    this.duplicateWindowMs = Math.max(settings.duplicateWindowMs, Math.ceil((streamConfig.duplicate_window ?? 0) / 1e6));
    this.maxAgeMs = Math.floor((streamConfig.max_age ?? 0) / 1e6);
  }

  /** The stream's name. */
  get stream(): string {
    return this.settings.stream;
  }

  /** The subject of `shard`'s events. */
  subject(shard: number): string {
    return `${this.settings.subjectPrefix}.${shard}`;
  }

  /**
   * The last message on the shard's subject, read from the stream leader: its `Hotledger-Last-Seq`; 0 for none. After
   * a failed per-event delivery, no more than the sequence up to which every publish was acknowledged.
   */
  async cursor(shard: number): Promise<number> {
    const stored = await this.storedSequence(shard);
    const acknowledged = this.acknowledgedThrough.get(shard);
    return acknowledged === undefined ? stored : Math.min(stored, acknowledged);
  }

  async deliver(shard: number, events: readonly OutputEvent[]): Promise<void> {
    assertConsecutive(shard, events);
    // Read while the first message is encoded; awaited before the first publish.
    const continues = this.checkContinues(shard, events[0].seq);
    continues.catch(() => undefined);
    const last = this.settings.envelope ? await this.deliverEnvelopes(shard, events, continues) : await this.deliverEach(shard, events, continues);
    this.lastAcknowledged.set(shard, { sequence: events[events.length - 1].seq, streamSequence: last.seq, acknowledgedAtMs: Date.now() });
  }

  /** `Hotledger-Last-Seq` of the last message on the shard's subject, read from the stream leader; 0 for none. */
  private async storedSequence(shard: number): Promise<number> {
    const message = await this.manager.streams.getMessage(this.settings.stream, { last_by_subj: this.subject(shard) });
    return message === null ? 0 : lastSequenceOf(message.header.get(HEADER_LAST_SEQ), this.subject(shard), message.seq);
  }

  /**
   * Resolves when a delivery starting at `firstSeq` continues what the stream holds, and is not a resend the server
   * would still drop as a duplicate of a lost message; else rejects with JetStreamGapError (see the module comment).
   */
  private async checkContinues(shard: number, firstSeq: number): Promise<void> {
    const previous = this.lastAcknowledged.get(shard);
    let holds = false;
    if (previous !== undefined && previous.sequence === firstSeq - 1) {
      // A message older than the stream's max age may be gone by the stream's limits, not lost.
      const agedOut = this.maxAgeMs > 0 && Date.now() - previous.acknowledgedAtMs >= this.maxAgeMs;
      holds = agedOut || (await this.holdsMessage(shard, previous.streamSequence, previous.sequence));
    }
    const stored = holds ? firstSeq - 1 : await this.storedSequence(shard);
    const stream = this.settings.stream;
    if (stored < firstSeq - 1) {
      this.lastAcknowledged.delete(shard);
      const through = Math.max(firstSeq - 1, this.lost.get(shard)?.through ?? 0);
      this.lost.set(shard, { through, resendAtMs: Date.now() + this.duplicateWindowMs + LOST_RESEND_MARGIN_MS });
      throw new JetStreamGapError(shard, stored, firstSeq,
        `shard ${shard}: the last message on ${this.subject(shard)} holds sequence ${stored} but the events start at ${firstSeq}: `
        + `stream ${stream} no longer holds ${stored + 1}..${firstSeq - 1} (purged, recreated, aged out, or lost by the server); nothing was published`);
    }
    const lost = this.lost.get(shard);
    if (lost === undefined) return;
    if (Date.now() >= lost.resendAtMs) {
      this.lost.delete(shard);
      return;
    }
    if (firstSeq <= lost.through) {
      throw new JetStreamGapError(shard, firstSeq - 1, firstSeq,
        `shard ${shard}: stream ${stream} lost events up to ${lost.through} within its duplicate window: their resends would be dropped `
        + `as duplicates until ${new Date(lost.resendAtMs).toISOString()}; nothing was published`, lost.resendAtMs);
    }
  }

  /** Whether the stream still holds, at `streamSequence`, the message of the shard whose last event is `sequence`. */
  private async holdsMessage(shard: number, streamSequence: number, sequence: number): Promise<boolean> {
    const message = await this.manager.streams.getMessage(this.settings.stream, { seq: streamSequence });
    return message !== null && message.subject === this.subject(shard) && message.header.get(HEADER_LAST_SEQ) === String(sequence);
  }

  /** Closes the connection when the sink opened it. Nothing is left to flush: `deliver` awaits every ack. */
  async close(): Promise<void> {
    if (this.ownsConnection) await this.connection.close();
  }

  /**
   * One message per event, up to PUBLISHES_IN_FLIGHT_MAX in flight; stops after the first window with a failure.
   * A window is encoded (and its sizes checked) before its first publish, so an error never leaves acks unawaited.
   */
  private async deliverEach(shard: number, events: readonly OutputEvent[], continues: Promise<void>): Promise<PubAck> {
    const subject = this.subject(shard);
    const bytesMax = this.messageBytesMax();
    let last: PubAck | undefined;
    for (let start = 0; start < events.length; start += PUBLISHES_IN_FLIGHT_MAX) {
      const end = Math.min(events.length, start + PUBLISHES_IN_FLIGHT_MAX);
      const payloads: Uint8Array[] = new Array(end - start);
      for (let i = start; i < end; i++) {
        const data = (payloads[i - start] = this.encodeEvent(events[i]));
        if (data.length > bytesMax) throw new JetStreamMessageTooLargeError(`event ${events[i].eventId} is ${data.length} bytes, over ${bytesMax}`);
      }
      await continues;
      const acks: Promise<PubAck>[] = new Array(end - start);
      for (let i = start; i < end; i++) {
        const event = events[i];
        acks[i - start] = this.publish(subject, payloads[i - start], event.eventId, event.seq, event.seq, this.contentType.event);
      }
      const outcomes = await Promise.allSettled(acks);
      const failed = outcomes.findIndex((outcome) => outcome.status === "rejected" || outcome.value.stream !== this.settings.stream);
      if (failed >= 0) {
        this.acknowledgedThrough.set(shard, events[start + failed].seq - 1);
        throw this.publishError(outcomes, start, events);
      }
      last = (outcomes[outcomes.length - 1] as PromiseFulfilledResult<PubAck>).value;
    }
    this.acknowledgedThrough.delete(shard);
    assert(last !== undefined, "a delivery publishes at least one event");
    return last;
  }

  /**
   * Envelopes of as many events as fit in one message, one at a time, so a failure leaves a stored prefix. How many
   * fit is guessed from the bytes per event of the last envelope, so an oversized first try is rare. The next
   * envelope is encoded while the previous one waits for its ack (published only after it), so the relay's CPU and
   * the server's store overlap.
   */
  private async deliverEnvelopes(shard: number, events: readonly OutputEvent[], continues: Promise<void>): Promise<PubAck> {
    const subject = this.subject(shard);
    const bytesMax = this.messageBytesMax() - ENVELOPE_HEADER_BYTES_RESERVED;
    // Bounded: every envelope holds at least one event.
    let start = 0;
    let envelope = this.nextEnvelope(events, start, bytesMax);
    await continues;
    let lastAck: PubAck | undefined;
    while (envelope !== undefined) {
      const first = events[start].seq;
      const last = events[start + envelope.count - 1].seq;
      const acked = this.publish(subject, envelope.bytes, `${shard}:${first}-${last}`, first, last, this.contentType.envelope);
      start += envelope.count;
      // An event too large for any envelope is reported once the envelope before it is settled.
      let next: { bytes: Uint8Array; count: number } | undefined;
      let nextError: unknown;
      try {
        next = this.nextEnvelope(events, start, bytesMax);
      } catch (error) {
        nextError = error;
      }
      let ack: PubAck;
      try {
        ack = await acked;
      } catch (error) {
        throw new JetStreamPublishError(`envelope ${shard}:${first}-${last} was not acknowledged: ${(error as Error).message}`, { cause: error });
      }
      if (ack.stream !== this.settings.stream) {
        throw new JetStreamPublishError(`envelope ${shard}:${first}-${last} was stored in stream ${ack.stream}, not ${this.settings.stream}`);
      }
      if (nextError !== undefined) throw nextError;
      lastAck = ack;
      envelope = next;
    }
    assert(lastAck !== undefined, "a delivery publishes at least one envelope");
    return lastAck;
  }

  /** The envelope starting at `events[start]`, as many events as are guessed to fit; undefined past the end. */
  private nextEnvelope(events: readonly OutputEvent[], start: number, bytesMax: number): { bytes: Uint8Array; count: number } | undefined {
    const remaining = events.length - start;
    if (remaining === 0) return undefined;
    const guess = this.envelopeBytesPerEvent === 0 ? remaining : Math.floor((bytesMax * ENVELOPE_FILL) / this.envelopeBytesPerEvent);
    const envelope = this.encodeEnvelopeFitting(events, start, Math.max(1, Math.min(remaining, guess)), bytesMax);
    this.envelopeBytesPerEvent = envelope.bytes.length / envelope.count;
    return envelope;
  }

  /**
   * The envelope of `events[start ..]` with at most `count` events and at most `bytesMax` bytes: encodes, and
   * when too large, tries again with proportionally fewer events (bounded: the count shrinks every turn).
   */
  private encodeEnvelopeFitting(events: readonly OutputEvent[], start: number, count: number, bytesMax: number): { bytes: Uint8Array; count: number } {
    for (;;) {
      const bytes = this.encodeEnvelope(events.slice(start, start + count));
      if (bytes.length <= bytesMax) return { bytes, count };
      if (count === 1) throw new JetStreamMessageTooLargeError(`event ${events[start].eventId} is ${bytes.length} bytes in an envelope, over ${bytesMax}`);
      count = Math.max(1, Math.min(count - 1, Math.floor((count * bytesMax * ENVELOPE_FILL) / bytes.length)));
    }
  }

  private publish(subject: string, data: Uint8Array, msgID: string, first: number, last: number, contentType: string): Promise<PubAck> {
    const headers = natsHeaders();
    if (first !== last) headers.set(HEADER_FIRST_SEQ, String(first));
    headers.set(HEADER_LAST_SEQ, String(last));
    headers.set(HEADER_CONTENT_TYPE, contentType);
    return this.client.publish(subject, data, { msgID, headers, timeout: this.settings.ackTimeoutMs });
  }

  /** Largest message the server and the stream take now (the server's limit can change on reconnect). */
  private messageBytesMax(): number {
    const server = this.connection.info?.max_payload ?? 1 << 20;
    const stream = this.streamConfig.max_msg_size ?? -1;
    return stream > 0 ? Math.min(server, stream) : server;
  }

  private publishError(outcomes: PromiseSettledResult<PubAck>[], offset: number, events: readonly OutputEvent[]): JetStreamPublishError {
    let failures = 0;
    let first: { index: number; reason: unknown } | undefined;
    for (let i = 0; i < outcomes.length; i++) {
      const outcome = outcomes[i];
      const reason = outcome.status === "rejected" ? outcome.reason
        : outcome.value.stream !== this.settings.stream ? new Error(`stored in stream ${outcome.value.stream}`) : undefined;
      if (reason === undefined) continue;
      failures++;
      first ??= { index: i, reason };
    }
    assert(first !== undefined, "a publish error without a failure");
    const eventId = events[offset + first.index].eventId;
    return new JetStreamPublishError(
      `${failures} of ${outcomes.length} events were not acknowledged, the first ${eventId}: ${(first.reason as Error).message}`,
      { cause: first.reason },
    );
  }
}

/** `Hotledger-Last-Seq` of the message at stream sequence `streamSequence` on `subject`, checked. */
function lastSequenceOf(header: string, subject: string, streamSequence: number): number {
  const sequence = /^[0-9]{1,16}$/.test(header) ? Number(header) : NaN;
  if (!Number.isSafeInteger(sequence) || sequence < 1) {
    throw new JetStreamCursorError(`the last message on ${subject} (stream sequence ${streamSequence}) has no valid ${HEADER_LAST_SEQ} header ("${header}")`);
  }
  return sequence;
}
