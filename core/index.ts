/**
 * hotledger core: the deterministic, single-threaded balance engine. No I/O, no runtime globals; ECMAScript and
 * Web-standard APIs only, plus @bufbuild/protobuf for the contract.
 */
export { AssertionError, assert } from "./assert.ts";
export { ACCOUNT_STATUSES, COMMAND_TYPES, Code, RESULT_CODES, Status, Type } from "./codes.ts";
export type { AccountStatus, CommandType, ResultCode } from "./codes.ts";
export { BatchEventProcessor, type EventHandler } from "./batch-event-processor.ts";
export { crc32c } from "./crc32c.ts";
export { Engine, type EngineOptions, type ExecuteOptions } from "./engine.ts";
export { InvalidCommandError, SnapshotError } from "./errors.ts";
export { checkCommands, translateCommand } from "./event-translator.ts";
export { Ledger, ledgerSizes, type LedgerSizes } from "./ledger.ts";
export * as limits from "./limits.ts";
export { RingBuffer, Sequence, Sequencer, SLOT_BYTES } from "./ring-buffer.ts";
export { decodeSnapshot, encodeSnapshot, SNAPSHOT_VERSION, stateHash } from "./snapshot.ts";
export {
  decodeRecordInto,
  encodeRecord,
  JOURNAL_RECORD_VERSION,
  JournalRecordError,
  readRecordHeader,
  RecordDecoder,
  recordBytesMax,
} from "./journal-codec.ts";
export {
  assertConsecutive,
  EventDeriver,
  Relay,
  type AccountChange,
  type JournalTail,
  type OutputEvent,
  type OutputSink,
  type RelayOptions,
  type SinkStatus,
} from "./outputs.ts";
export {
  readCommandBatch,
  readScannedBatch,
  scanCommandBatch,
  WireFormatError,
  type AsciiDecoder,
  type ScannedBatch,
  type WireCommand,
  type WireCommandBatch,
} from "./command-batch-reader.ts";
export { commandToProto, encodeOutputEvent, encodeOutputEventBatch, encodeResultBatch, outputEventToProto, resultToProto } from "./wire.ts";
export { JournalCorruptError, JournalUnavailableError, type Journal, type SnapshotStore, type StoredRecord } from "./ports.ts";
export { ShardMap, type RoutingOptions } from "./routing.ts";
export { OverloadedError, Shard, ShardUnavailableError, SUBMIT_COMMANDS_MAX, type ShardMetrics, type ShardOptions } from "./shard.ts";
export type * from "./types.ts";
