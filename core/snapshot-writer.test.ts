// Proves the hand-written snapshot body is protobuf: for varied ledgers, its bytes equal protobuf-es toBinary of
// the same Snapshot message, and protobuf-es fromBinary reads it back to that message.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Engine, type Command } from "./index.ts";
import { SnapshotSchema } from "./gen/hotledger/v1/ledger_pb.ts";
import { snapshotMessage, snapshotParts } from "./snapshot.ts";

function engineWith(commands: Command[]): Engine {
  const engine = new Engine({ accountsMax: 256, partnersMax: 8, holdsMax: 64, idempotencyCommandsMax: 1000, ringSlots: 1024 });
  if (commands.length > 0) engine.execute(commands, { timeMs: 1_700_000_000_000 });
  return engine;
}

const scenarios: Record<string, Command[]> = {
  empty: [],
  accounts: [
    { type: "openAccount", id: "o1", partnerId: "p", accountId: "a", currency: "EUR", overdraftLimit: 300 },
    { type: "openAccount", id: "o2", partnerId: "q", accountId: "b-with-a-long-identifier-0123456789", currency: "USDC" },
    { type: "credit", id: "c1", partnerId: "p", accountId: "a", amount: 2 ** 40 },
    { type: "debit", id: "d1", partnerId: "p", accountId: "a", amount: 5 },
    { type: "hold", id: "h1", partnerId: "p", accountId: "a", amount: 7, expiresInMs: 1000 },
    { type: "hold", id: "h2", partnerId: "p", accountId: "a", amount: 9 },
    { type: "release", id: "r2", partnerId: "p", holdId: "h2" },
    { type: "freeze", id: "f", partnerId: "q", accountId: "b-with-a-long-identifier-0123456789" },
    { type: "debit", id: "d2", partnerId: "q", accountId: "nope", amount: 1 },
  ],
};

for (const [name, commands] of Object.entries(scenarios)) {
  test(`snapshot body equals protobuf-es toBinary (${name})`, () => {
    const engine = engineWith(commands);
    const bytes = engine.snapshot();
    const body = bytes.subarray(16);
    const message = snapshotMessage(snapshotParts(engine.ledger));
    assert.deepEqual(body, toBinary(SnapshotSchema, message));
    assert.deepEqual(fromBinary(SnapshotSchema, body), message);
  });
}
