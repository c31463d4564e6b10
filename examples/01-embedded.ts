/**
 * The core engine embedded in a program: open two accounts, move money, place and capture a hold, retry a command,
 * and print every result. Run: `npm run example` (or `bun examples/01-embedded.ts`).
 */
import { Engine } from "../core/index.ts";

const engine = new Engine({ accountsMax: 1024, partnersMax: 16, holdsMax: 1024, idempotencyCommandsMax: 4096 });

// Time enters only as the stamp on a batch; a fixed stamp makes this output (and the state hash) reproducible.
const timeMs = Date.UTC(2026, 0, 1);
const results = engine.execute([
  { type: "openAccount", id: "open-1", partnerId: "shop", accountId: "wallet:alice", currency: "USD" },
  { type: "openAccount", id: "open-2", partnerId: "shop", accountId: "wallet:bob", currency: "USD" },
  { type: "credit", id: "topup-1", partnerId: "shop", accountId: "wallet:alice", amount: 10_000 },
  { type: "transfer", id: "pay-1", partnerId: "shop", fromAccountId: "wallet:alice", toAccountId: "wallet:bob", amount: 2_500 },
  { type: "hold", id: "card-auth-1", partnerId: "shop", accountId: "wallet:alice", amount: 4_000 },
  { type: "capture", id: "card-capture-1", partnerId: "shop", holdId: "card-auth-1", amount: 3_000 },
  { type: "debit", id: "payout-1", partnerId: "shop", accountId: "wallet:alice", amount: 1_000_000 },
  { type: "check", partnerId: "shop", accountId: "wallet:alice", amount: 4_500 },
  { type: "credit", id: "topup-1", partnerId: "shop", accountId: "wallet:alice", amount: 10_000 },
], { timeMs });

for (const result of results) {
  const balances = result.balance === undefined ? "" : ` balance=${result.balance} held=${result.held} available=${result.available}`;
  console.log(`#${result.seq} ${result.id || "(check)"}: ${result.code}${result.duplicate ? " (duplicate)" : ""}${balances}`);
}
console.log("alice:", JSON.stringify(engine.account("shop", "wallet:alice")));
console.log("state hash:", engine.stateHash());
