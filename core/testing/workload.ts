/**
 * A seeded mixed workload for output and fault tests: every command type, atomic groups that succeed and fail,
 * holds that expire, duplicates and reused ids, over a few partners and accounts so that accounts are hot.
 */
import type { Command } from "../types.ts";
import { seededRandom } from "./random.ts";

/** One submit: commands and whether they are an atomic group. */
export interface WorkloadBatch {
  commands: Command[];
  atomic: boolean;
}

export const WORKLOAD_PARTNERS = ["p1", "p2", "p3"];
export const WORKLOAD_ACCOUNTS = ["a0", "a1", "a2", "a3", "a4", "a5"];

/** The openAccount commands every workload starts with (one per partner and account; a5 is in EUR). */
export function workloadOpenings(prefix = "w"): WorkloadBatch[] {
  return WORKLOAD_PARTNERS.map((partnerId) => ({
    atomic: false,
    commands: WORKLOAD_ACCOUNTS.map((accountId): Command => ({
      type: "openAccount", id: `${prefix}-open-${accountId}`, partnerId, accountId,
      currency: accountId === "a5" ? "EUR" : "USD", ...(accountId === "a4" ? { overdraftLimit: 500 } : {}),
    })),
  }));
}

/**
 * `count` batches after the openings. Ids are `${prefix}-${n}` so two workloads with different prefixes never
 * collide. Deterministic for a seed.
 */
export function randomWorkload(seed: number, count: number, prefix = "w"): WorkloadBatch[] {
  const random = seededRandom(seed);
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const amount = () => 1 + Math.floor(random() * (random() < 0.9 ? 200 : 5000));
  const holds: { partnerId: string; id: string }[] = [];
  const sent: Command[] = [];
  let n = 0;
  const one = (partnerId: string): Command => {
    const id = `${prefix}-${n++}`;
    const accountId = pick(WORKLOAD_ACCOUNTS);
    const roll = random();
    if (roll < 0.3) return { type: "credit", id, partnerId, accountId, amount: amount() };
    if (roll < 0.5) return { type: "debit", id, partnerId, accountId, amount: amount() };
    if (roll < 0.65) return { type: "transfer", id, partnerId, fromAccountId: accountId, toAccountId: pick(WORKLOAD_ACCOUNTS), amount: amount() };
    if (roll < 0.75) {
      holds.push({ partnerId, id });
      return { type: "hold", id, partnerId, accountId, amount: amount(), ...(random() < 0.3 ? { expiresInMs: 1 + Math.floor(random() * 20) } : {}) };
    }
    if (roll < 0.82 && holds.length > 0) {
      const hold = pick(holds.filter((h) => h.partnerId === partnerId).concat(holds.slice(-1)));
      return { type: "capture", id, partnerId, holdId: hold.id, ...(random() < 0.5 ? { amount: amount() } : {}) };
    }
    if (roll < 0.87 && holds.length > 0) return { type: "release", id, partnerId, holdId: pick(holds).id };
    if (roll < 0.9) return { type: "check", partnerId, accountId, amount: amount() };
    if (roll < 0.92) return { type: random() < 0.5 ? "freeze" : "unfreeze", id, partnerId, accountId };
    if (roll < 0.93) return { type: "setOverdraftLimit", id, partnerId, accountId, overdraftLimit: Math.floor(random() * 300) };
    if (roll < 0.96 && sent.length > 0) return sent[Math.floor(random() * sent.length)]; // a retry: duplicate
    if (roll < 0.97 && sent.length > 0) {
      const reused = sent[Math.floor(random() * sent.length)];
      if (reused.id !== undefined && reused.type !== "check") return { type: "credit", id: reused.id, partnerId: reused.partnerId, accountId: "a0", amount: 999_999 };
    }
    return { type: "credit", id, partnerId, accountId, amount: amount() };
  };
  const batches: WorkloadBatch[] = [];
  for (let b = 0; b < count; b++) {
    const partnerId = pick(WORKLOAD_PARTNERS);
    const atomic = random() < 0.1;
    const size = atomic ? 2 + Math.floor(random() * 3) : 1 + Math.floor(random() * 8);
    const commands: Command[] = [];
    const ids = new Set<string>();
    while (commands.length < size) {
      const command = one(partnerId);
      if (atomic && (command.type === "check" || command.partnerId !== partnerId || ids.has(command.id!))) continue;
      if (command.id !== undefined) ids.add(command.id);
      commands.push(command);
    }
    for (const command of commands) if (command.type !== "check") sent.push(command);
    batches.push({ commands, atomic });
  }
  return batches;
}
