/**
 * Core types in their .proto form (core/gen), for transports and output sinks. Amounts are numbers inside and
 * int64 (bigint) on the wire; every number here is already a safe integer, so the conversion is exact. Output
 * events, encoded for every event a sink delivers, and result batches, encoded for every NATS reply, are written by
 * hand (output-event-writer.ts) into the same bytes protobuf-es would write.
 */
import { create } from "@bufbuild/protobuf";
import { ACCOUNT_STATUSES, Code, Type } from "./codes.ts";
import {
  CommandSchema,
  OutputEventSchema,
  ResultSchema,
  type AccountStatus as ProtoAccountStatus,
  type Command as ProtoCommand,
  type OutputEvent as ProtoOutputEvent,
  type Result as ProtoResult,
} from "./gen/hotledger/v1/ledger_pb.ts";
import type { OutputEvent } from "./outputs.ts";
import type { Command, Result } from "./types.ts";

const optional = (value: number | undefined): bigint | undefined => (value === undefined ? undefined : BigInt(value));

/** A core result as a protobuf result. */
export function resultToProto(result: Result): ProtoResult {
  return create(ResultSchema, {
    id: result.id,
    code: Code[result.code],
    seq: BigInt(result.seq),
    balance: optional(result.balance),
    held: optional(result.held),
    available: optional(result.available),
    duplicate: result.duplicate === true,
  });
}

/** A core command as a protobuf command (flat: a transfer's source is `account_id`). */
export function commandToProto(command: Command): ProtoCommand {
  const c = command as unknown as Partial<Record<string, string | number>>;
  const text = (value: string | number | undefined) => (value === undefined ? "" : String(value));
  const number = (value: string | number | undefined) => (value === undefined ? undefined : BigInt(value));
  return create(CommandSchema, {
    type: Type[command.type],
    id: text(c.id),
    partnerId: command.partnerId,
    accountId: text(command.type === "transfer" ? c.fromAccountId : c.accountId),
    toAccountId: text(c.toAccountId),
    holdId: text(c.holdId),
    amount: number(c.amount),
    currency: text(c.currency),
    overdraftLimit: number(c.overdraftLimit),
    expiresInMs: number(c.expiresInMs),
  });
}

/** An output event as its protobuf message. */
export function outputEventToProto(event: OutputEvent): ProtoOutputEvent {
  return create(OutputEventSchema, {
    eventId: event.eventId,
    shard: event.shard,
    seq: BigInt(event.seq),
    timeMs: BigInt(event.timeMs),
    command: commandToProto(event.command),
    result: resultToProto(event.result),
    accountId: event.accountId,
    accounts: event.accounts.map((change) => ({
      partnerId: change.partnerId,
      accountId: change.accountId,
      currency: change.currency,
      balance: BigInt(change.balance),
      held: BigInt(change.held),
      available: BigInt(change.available),
      overdraftLimit: BigInt(change.overdraftLimit),
      status: ACCOUNT_STATUSES.indexOf(change.status) as ProtoAccountStatus,
      balanceDelta: BigInt(change.balanceDelta),
      heldDelta: BigInt(change.heldDelta),
    })),
  });
}

/**
 * Events and result batches as protobuf bytes, written by hand (output-event-writer.ts): one event
 * (`OutputEvent`), consecutive events as one batch envelope (`OutputEventBatch`), results as a NATS reply
 * (`ResultBatch`).
 */
export {
  writeOutputEvent as encodeOutputEvent,
  writeOutputEventBatch as encodeOutputEventBatch,
  writeResultBatch as encodeResultBatch,
} from "./output-event-writer.ts";
