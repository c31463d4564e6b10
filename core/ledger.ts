/**
 * The ledger: one shard's accounts, holds and idempotency window in preallocated typed arrays, and the
 * EventHandler that applies ring slots to them. Single-threaded and deterministic: the only time it sees is the
 * stamped time in the slot; it never reads a clock or a random source, never allocates per command, and never
 * throws for a business outcome (those are result codes).
 */
import { assert } from "./assert.ts";
import { Code, Status, Type } from "./codes.ts";
import { finalize } from "./hash.ts";
import { KEY_WORDS, KeyStore, KeyTable, OWNER_LIMIT } from "./key-table.ts";
import {
  ACCOUNTS_DEFAULT,
  ACCOUNTS_MAX,
  AMOUNT_MAX,
  CURRENCIES_MAX,
  GROUP_COMMANDS_MAX,
  HOLD_EXPIRY_MS_MAX,
  HOLDS_DEFAULT,
  IDEMPOTENCY_COMMANDS_DEFAULT,
  IDEMPOTENCY_RETENTION_MS_DEFAULT,
  KEY_BYTES_MAX,
  PARTNERS_DEFAULT,
  UNDO_ENTRIES_MAX,
} from "./limits.ts";
import { Field, FIELD_COUNT, FIELD_OFFSET, Flag, type RingBuffer, SLOT_TEXT_WORDS } from "./ring-buffer.ts";
import type { LedgerOptions } from "./types.ts";
import { WindowTable } from "./window-table.ts";

/** Hold states as stored. */
export const HoldState = { open: 0, captured: 1, released: 2, expired: 3, free: 4 } as const;

const Undo = { accountState: 1, accountOpened: 2, holdPlaced: 3, holdClosed: 4, currencyAdded: 5 } as const;
const UNDO_COLUMNS = 7;
/** Bits of the filter of window hashes inserted since a prefetch: 4096 bits = 512 B, reset per prefetched chunk. */
const INSERTED_FILTER_BITS = 4096;
/**
 * Slots per prefetch chunk. What a chunk brings into cache (~340 B of ring slot, a window bucket line and an
 * account index line per slot: ~120 KiB for 256) must still be in L2 when its events are applied.
 */
const PREFETCH_SLOTS = 256;
/** "No account" in account-index slots (`unitAccount`). */
export const NO_ACCOUNT = -1;
/** Odd multipliers of the fingerprint's two lanes (golden ratio and MurmurHash3's c1). */
const LANE_A = 0x9e3779b1 | 0;
const LANE_B = 0xcc9e2d51 | 0;

/**
 * Told before the ledger changes a row that an incremental snapshot may still need (see SnapshotJob): an existing
 * account's mutable columns, or a window entry about to be forgotten. Only set while a snapshot is being taken.
 */
export interface LedgerObserver {
  beforeAccountChange(account: number): void;
  beforeWindowEvict(entry: number): void;
}

/** Table sizes with defaults applied and checked. */
export interface LedgerSizes {
  accountsMax: number;
  partnersMax: number;
  holdsMax: number;
  idempotencyCommandsMax: number;
  idempotencyRetentionMs: number;
}

/** Apply defaults and check every size; throws RangeError for a size out of range (a configuration error). */
export function ledgerSizes(options: LedgerOptions = {}): LedgerSizes {
  const sizes = {
    accountsMax: options.accountsMax ?? ACCOUNTS_DEFAULT,
    partnersMax: options.partnersMax ?? PARTNERS_DEFAULT,
    holdsMax: options.holdsMax ?? HOLDS_DEFAULT,
    idempotencyCommandsMax: options.idempotencyCommandsMax ?? IDEMPOTENCY_COMMANDS_DEFAULT,
    idempotencyRetentionMs: options.idempotencyRetentionMs ?? IDEMPOTENCY_RETENTION_MS_DEFAULT,
  };
  for (const [name, value] of Object.entries(sizes)) {
    const max = name === "idempotencyRetentionMs" ? AMOUNT_MAX : name === "partnersMax" ? OWNER_LIMIT : ACCOUNTS_MAX;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new RangeError(`${name} must be an integer in 1..${max}, got ${value}`);
    }
  }
  if (sizes.idempotencyCommandsMax < GROUP_COMMANDS_MAX) {
    throw new RangeError(`idempotencyCommandsMax must be >= ${GROUP_COMMANDS_MAX} (one atomic group)`);
  }
  return sizes;
}

/** One shard's state and the handler that changes it. */
export class Ledger {
  readonly sizes: LedgerSizes;
  /** Stamped time of the batch being (or last) processed. */
  timeMs = 0;
  /** Sequence of the last command processed. */
  lastSequence = 0;
  /**
   * Sequence of the command being applied while an observer is told of a change; minus the unit's first sequence
   * while the holds due before the unit expire. Lets core/outputs.ts attribute each account change to its command.
   */
  applying = 0;

  readonly partners: KeyTable;
  /** The partner the last lookup found (-1: none yet): `partnerFor` tries it first. Partners are never removed. */
  private lastPartner = -1;
  readonly currencies: KeyTable;
  currencyCount = 0;

  readonly accounts: KeyTable;
  accountCount = 0;
  readonly balance: Float64Array;
  readonly held: Float64Array;
  readonly overdraftLimit: Float64Array;
  readonly accountSeq: Float64Array;
  readonly status: Uint8Array;
  readonly currency: Uint16Array;

  readonly holds: KeyTable;
  readonly holdAccount: Int32Array;
  readonly holdAmount: Float64Array;
  readonly holdExpiresAt: Float64Array;
  readonly holdSeq: Float64Array;
  readonly holdState: Uint8Array;
  /** Free hold slots, a stack. */
  readonly holdFree: Int32Array;
  holdFreeCount: number;
  /** Closed holds, oldest first: a FIFO ring of hold slots. */
  readonly holdClosed: Int32Array;
  holdClosedHead = 0;
  holdClosedCount = 0;
  /** Open holds with an expiry, a binary min-heap on (expiresAt, seq); heapPosition[hold] = its place or -1. */
  readonly heap: Int32Array;
  readonly heapPosition: Int32Array;
  heapSize = 0;

  /** The idempotency window: a FIFO ring of entries, oldest at `windowHead`, indexed by (partner, id). */
  readonly window: WindowTable;
  readonly windowFingerprint: Int32Array;
  readonly windowTime: Float64Array;
  readonly windowCode: Uint8Array;
  readonly windowSeq: Float64Array;
  readonly windowBalance: Float64Array;
  readonly windowHeld: Float64Array;
  readonly windowAvailable: Float64Array;

  /** The oldest entry of the window. */
  get windowHead(): number {
    return this.window.head;
  }

  /** Entries in the window. */
  get windowCount(): number {
    return this.window.count;
  }

  private readonly undo: Float64Array;
  private undoCount = 0;
  /** The snapshot in progress, if any: told before rows it may still need change. */
  observer: LedgerObserver | undefined = undefined;
  /** Whether the unit being applied is an atomic group: only groups can roll back, so only they write undo. */
  private inGroup = false;
  /** Per command of the unit being applied: its fingerprint (2 words), id hash, and result account. */
  private readonly unitFingerprint = new Int32Array(GROUP_COMMANDS_MAX * 2);
  private readonly unitIdHash = new Int32Array(GROUP_COMMANDS_MAX);
  private readonly unitAccount = new Int32Array(GROUP_COMMANDS_MAX);

  constructor(options: LedgerOptions = {}) {
    const sizes = ledgerSizes(options);
    this.sizes = sizes;
    this.partners = new KeyTable(sizes.partnersMax);
    this.currencies = new KeyTable(CURRENCIES_MAX);
    this.accounts = new KeyTable(sizes.accountsMax);
    this.balance = new Float64Array(sizes.accountsMax);
    this.held = new Float64Array(sizes.accountsMax);
    this.overdraftLimit = new Float64Array(sizes.accountsMax);
    this.accountSeq = new Float64Array(sizes.accountsMax);
    this.status = new Uint8Array(sizes.accountsMax);
    this.currency = new Uint16Array(sizes.accountsMax);
    const holds = sizes.holdsMax;
    this.holds = new KeyTable(holds);
    this.holdAccount = new Int32Array(holds);
    this.holdAmount = new Float64Array(holds);
    this.holdExpiresAt = new Float64Array(holds);
    this.holdSeq = new Float64Array(holds);
    this.holdState = new Uint8Array(holds).fill(HoldState.free);
    this.holdFree = new Int32Array(holds);
    for (let i = 0; i < holds; i++) this.holdFree[i] = holds - 1 - i;
    this.holdFreeCount = holds;
    this.holdClosed = new Int32Array(holds);
    this.heap = new Int32Array(holds);
    this.heapPosition = new Int32Array(holds).fill(-1);
    const window = sizes.idempotencyCommandsMax;
    this.window = new WindowTable(window);
    this.windowFingerprint = new Int32Array(window * 2);
    this.windowTime = new Float64Array(window);
    this.windowCode = new Uint8Array(window);
    this.windowSeq = new Float64Array(window);
    this.windowBalance = new Float64Array(window);
    this.windowHeld = new Float64Array(window);
    this.windowAvailable = new Float64Array(window);
    this.undo = new Float64Array(UNDO_ENTRIES_MAX * UNDO_COLUMNS);
  }

  /** Per ring slot, from the prefetch pass: the partner (-1 unknown) and the id and account hashes under it. */
  private slotPartner = new Int32Array(0);
  private slotIdHash = new Int32Array(0);
  private slotAccountHash = new Int32Array(0);
  /**
   * The account the prefetch pass found for the slot's account field (-1: none). An account that existed at batch
   * start cannot disappear during the batch (a rollback only removes accounts its own group opened), so a found
   * entry is final; a miss is looked up again, since an earlier command may have opened the account.
   */
  private slotAccount = new Int32Array(0);
  /** The window entry the prefetch pass found for the slot's id (-1: none). */
  private slotWindowEntry = new Int32Array(0);
  /**
   * Bits (by id hash) of the window entries inserted since the prefetch pass. A prefetched miss stays a miss unless
   * an entry with a matching bit was inserted since (entries are only removed otherwise), so most new ids are
   * looked up once per batch, not twice.
   */
  private readonly insertedFilter = new Int32Array(INSERTED_FILTER_BITS / 32);
  /** Sum of prefetch lookups, kept so the engine cannot drop them as dead code. */
  prefetchTouched = 0;

  /** The last sequence of the batch being processed. */
  private batchLast = 0;
  /** Slots up to this sequence have been through the prefetch passes. */
  private prefetchedThrough = 0;

  /**
   * EventHandler, before a batch: remember its end; the slots are prefetched in chunks of PREFETCH_SLOTS as the
   * events reach them (see prefetchFor), so what a chunk's passes bring into cache (ring slots, index lines) is
   * still there when its events are applied, however big the batch (a durable shard drains thousands at once).
   */
  onBatchStart(ring: RingBuffer, first: number, last: number): void {
    if (this.slotPartner.length !== ring.size) {
      this.slotPartner = new Int32Array(ring.size);
      this.slotIdHash = new Int32Array(ring.size);
      this.slotAccountHash = new Int32Array(ring.size);
      this.slotWindowEntry = new Int32Array(ring.size);
      this.slotAccount = new Int32Array(ring.size);
    }
    this.batchLast = last;
    this.prefetchedThrough = first - 1;
  }

  /**
   * Before the unit of `count` slots from `first` is applied: make sure all its slots went through the prefetch
   * passes, taking the next chunk of the batch with them. The inserted-ids filter is reset only when every slot
   * prefetched before has been applied (it must cover every insert since the prefetch of any slot still waiting).
   */
  private prefetchFor(ring: RingBuffer, first: number, count: number): void {
    const last = first + count - 1;
    if (last <= this.prefetchedThrough) return;
    const from = this.prefetchedThrough + 1;
    if (from === first) this.insertedFilter.fill(0);
    const to = Math.max(last, Math.min(this.batchLast, from + PREFETCH_SLOTS - 1));
    this.prefetch(ring, from, to);
    this.prefetchedThrough = to;
  }

  /**
   * Hash every slot's keys in [first, last] and probe the window and account indexes once. Probes of different
   * slots are independent, so the CPU overlaps their cache misses; the apply pass then finds the lines in cache
   * and reuses the hashes. Reads only: no state changes here.
   */
  private prefetch(ring: RingBuffer, first: number, last: number): void {
    // Pass 1, compute only: partner (a small, hot table) and the id and account hashes of every slot.
    for (let sequence = first; sequence <= last; sequence++) {
      const index = sequence & ring.mask;
      const partner = this.partnerFor(ring, index, false);
      this.slotPartner[index] = partner;
      if (partner < 0) continue;
      this.slotIdHash[index] = this.fieldLength(ring, index, Field.id) === 0 ? 0 : this.computeHash(ring, index, Field.id, partner);
      this.slotAccountHash[index] =
        this.fieldLength(ring, index, Field.account) === 0 ? 0 : this.computeHash(ring, index, Field.account, partner);
    }
    // Pass 2, memory only: one independent load per index line the batch will need (ids, accounts, evictions).
    // A tight loop of independent loads lets the CPU keep many cache misses in flight at once.
    let touched = 0;
    for (let sequence = first; sequence <= last; sequence++) {
      const index = sequence & ring.mask;
      touched += this.window.probe(this.slotIdHash[index]) + this.accounts.probe(this.slotAccountHash[index]);
    }
    // Pass 3, now mostly from cache: the lookups themselves, kept for the apply pass.
    for (let sequence = first; sequence <= last; sequence++) {
      const index = sequence & ring.mask;
      const partner = this.slotPartner[index];
      this.slotWindowEntry[index] = -1;
      this.slotAccount[index] = -1;
      if (partner < 0) continue;
      const idLength = this.fieldLength(ring, index, Field.id);
      if (idLength !== 0) {
        this.slotWindowEntry[index] = this.window.find(partner, ring.textWords, this.fieldWord(index, Field.id), idLength, this.slotIdHash[index]);
      }
      const accountLength = this.fieldLength(ring, index, Field.account);
      if (accountLength !== 0) {
        this.slotAccount[index] = this.accounts.find(partner, ring.textWords, this.fieldWord(index, Field.account), accountLength, this.slotAccountHash[index]);
      }
    }
    this.prefetchTouched += touched;
  }

  /**
   * EventHandler: apply the slot at `sequence`. A group is applied when its first slot arrives (the producer
   * publishes a group in one claim, so all its slots are available); the group's other slots are skipped.
   */
  onEvent(ring: RingBuffer, sequence: number, _endOfBatch: boolean): void {
    const index = sequence & ring.mask;
    const count = ring.groupSize[index];
    if (count !== 0) {
      const time = ring.timeMs[index];
      if (time > this.timeMs) this.timeMs = time;
      this.prefetchFor(ring, sequence, count);
      this.applyUnit(ring, sequence, count);
    }
    this.lastSequence = sequence;
  }

  /** Apply `count` commands starting at `first` as one unit: a single command, or an atomic group. */
  private applyUnit(ring: RingBuffer, first: number, count: number): void {
    const firstIndex = first & ring.mask;
    this.applying = -first;
    // Nothing before the unit's own commands is undone with them: expiries must not record undo (after a group,
    // thousands of due holds would overflow the group's undo budget).
    this.inGroup = false;
    this.expireDue();
    if (count === 1 && ring.type[firstIndex] === Type.check) {
      this.applyCheck(ring, firstIndex, first);
      return;
    }
    const prefetched = this.slotPartner.length === ring.size ? this.slotPartner[firstIndex] : -1;
    const partner = prefetched >= 0 ? prefetched : this.partnerFor(ring, firstIndex, true);
    if (partner < 0) {
      for (let k = 0; k < count; k++) this.reject(ring, (first + k) & ring.mask, first + k, Code.capacity_exceeded, NO_ACCOUNT);
      return;
    }
    if (this.answerFromWindow(ring, first, count, partner)) return;
    this.makeRoom(ring, first, count);
    this.undoCount = 0;
    this.inGroup = count > 1;
    let failed = -1;
    for (let k = 0; k < count && failed < 0; k++) {
      const index = (first + k) & ring.mask;
      this.applying = first + k;
      const code = this.applyCommand(ring, index, first + k, partner, k);
      ring.code[index] = code;
      if (code !== Code.ok) failed = k;
    }
    if (failed >= 0 && count > 1) this.failGroup(ring, first, count, failed);
    for (let k = 0; k < count; k++) this.remember(ring, (first + k) & ring.mask, partner, k);
  }

  /** Before every unit: expire holds that are due and forget window entries that are too old, at stamped time. */
  private expireDue(): void {
    const now = this.timeMs;
    while (this.heapSize > 0 && this.holdExpiresAt[this.heap[0]] <= now) this.expireHold(this.heap[0]);
    const retention = this.sizes.idempotencyRetentionMs;
    while (this.windowCount > 0 && now - this.windowTime[this.windowHead] >= retention) this.forgetOldestWindowEntry();
  }

  /**
   * Before a unit that will be applied (after its ids were looked up, so a retry of the oldest entry is still
   * answered): room in the window for its `count` results, and a free hold slot for each of its holds, forgetting
   * the oldest entries and the oldest closed holds only as needed.
   */
  private makeRoom(ring: RingBuffer, first: number, count: number): void {
    while (this.windowCount + count > this.sizes.idempotencyCommandsMax) this.forgetOldestWindowEntry();
    let holds = 0;
    for (let k = 0; k < count; k++) if (ring.type[(first + k) & ring.mask] === Type.hold) holds++;
    while (this.holdFreeCount < holds && this.holdClosedCount > 0) this.forgetOldestClosedHold();
  }

  private forgetOldestWindowEntry(): void {
    if (this.observer !== undefined) this.observer.beforeWindowEvict(this.windowHead);
    this.window.shift();
  }

  private forgetOldestClosedHold(): void {
    const hold = this.holdClosed[this.holdClosedHead];
    this.holdClosedHead = this.holdClosedHead + 1 === this.sizes.holdsMax ? 0 : this.holdClosedHead + 1;
    this.holdClosedCount--;
    this.holds.remove(hold);
    this.holdState[hold] = HoldState.free;
    this.holdFree[this.holdFreeCount++] = hold;
  }

  /**
   * Look the unit's ids up in the window. Returns true when the unit is answered from it: every id present with the
   * same command (the stored results, duplicate), or some id present with another command or in another group
   * (`id_reused` on the first such command, `linked_failed` on the others; nothing is stored).
   */
  private answerFromWindow(ring: RingBuffer, first: number, count: number, partner: number): boolean {
    let found = 0;
    let reused = -1;
    for (let k = 0; k < count; k++) {
      const index = (first + k) & ring.mask;
      this.fingerprint(ring, index, k);
      const hash = this.fieldHash(ring, index, Field.id, partner);
      this.unitIdHash[k] = hash;
      const entry = this.windowLookup(ring, index, partner, hash);
      ring.resultSeq[index] = first + k;
      // Set here for every command of the unit (the slot may hold the flag of a command long gone): read below.
      ring.duplicate[index] = 0;
      if (entry < 0) continue;
      found++;
      const same =
        this.windowFingerprint[entry * 2] === this.unitFingerprint[k * 2] &&
        this.windowFingerprint[entry * 2 + 1] === this.unitFingerprint[k * 2 + 1];
      if (same) this.copyStoredResult(ring, index, entry);
      else if (reused < 0) reused = k;
    }
    if (found === 0) return false;
    if (found === count && reused < 0) return true;
    if (reused < 0) {
      for (let k = 0; k < count && reused < 0; k++) if (ring.duplicate[(first + k) & ring.mask] === 1) reused = k;
    }
    for (let k = 0; k < count; k++) {
      const index = (first + k) & ring.mask;
      this.reject(ring, index, first + k, k === reused ? Code.id_reused : Code.linked_failed, NO_ACCOUNT);
    }
    return true;
  }

  /** The window entry of the slot's id under `partner`, or -1; skips the probe when the prefetch proved a miss. */
  private windowLookup(ring: RingBuffer, index: number, partner: number, hash: number): number {
    const bit = hash & (INSERTED_FILTER_BITS - 1);
    const insertedSince = (this.insertedFilter[bit >>> 5] & (1 << (bit & 31))) !== 0;
    if (this.slotPartner.length === ring.size && this.slotPartner[index] === partner && this.slotWindowEntry[index] < 0 && !insertedSince) {
      return -1;
    }
    return this.window.find(partner, ring.textWords, this.fieldWord(index, Field.id), this.fieldLength(ring, index, Field.id), hash);
  }

  private copyStoredResult(ring: RingBuffer, index: number, entry: number): void {
    ring.account[index] = NO_ACCOUNT;
    ring.code[index] = this.windowCode[entry];
    ring.duplicate[index] = 1;
    ring.resultSeq[index] = this.windowSeq[entry];
    ring.balance[index] = this.windowBalance[entry];
    ring.held[index] = this.windowHeld[entry];
    ring.available[index] = this.windowAvailable[entry];
  }

  /** Store the result of unit command `k` in the window (space was made by housekeep). */
  private remember(ring: RingBuffer, index: number, partner: number, k: number): void {
    const hash = this.unitIdHash[k];
    const entry = this.window.push(partner, ring.textWords, this.fieldWord(index, Field.id), this.fieldLength(ring, index, Field.id), hash);
    const bit = hash & (INSERTED_FILTER_BITS - 1);
    this.insertedFilter[bit >>> 5] |= 1 << (bit & 31);
    this.windowFingerprint[entry * 2] = this.unitFingerprint[k * 2];
    this.windowFingerprint[entry * 2 + 1] = this.unitFingerprint[k * 2 + 1];
    this.windowTime[entry] = this.timeMs;
    this.windowCode[entry] = ring.code[index];
    this.windowSeq[entry] = ring.resultSeq[index];
    this.windowBalance[entry] = ring.balance[index];
    this.windowHeld[entry] = ring.held[index];
    this.windowAvailable[entry] = ring.available[index];
  }

  /** Undo a failed group and rewrite its results: the failing command keeps its code, the others linked_failed. */
  private failGroup(ring: RingBuffer, first: number, count: number, failed: number): void {
    this.rollback();
    for (let k = 0; k < count; k++) {
      const index = (first + k) & ring.mask;
      if (k !== failed) {
        this.reject(ring, index, first + k, Code.linked_failed, NO_ACCOUNT);
        continue;
      }
      const account = this.unitAccount[k];
      this.reject(ring, index, first + k, ring.code[index], account < this.accountCount ? account : NO_ACCOUNT);
    }
  }

  /** Apply one command; returns its code and writes its balances. Records undo entries for groups. */
  private applyCommand(ring: RingBuffer, index: number, sequence: number, partner: number, k: number): number {
    // (answerFromWindow, before it, cleared the slot's duplicate flag and set its result sequence.)
    this.unitAccount[k] = NO_ACCOUNT;
    let code: number;
    switch (ring.type[index]) {
      case Type.openAccount:
        code = this.openAccount(ring, index, partner, sequence);
        break;
      case Type.credit:
      case Type.debit:
        code = this.creditOrDebit(ring, index, partner, sequence);
        break;
      case Type.transfer:
        code = this.transfer(ring, index, partner, sequence);
        break;
      case Type.hold:
        code = this.hold(ring, index, partner, sequence);
        break;
      case Type.capture:
      case Type.release:
        code = this.captureOrRelease(ring, index, partner, sequence);
        break;
      case Type.check:
        code = this.check(ring, index, partner);
        break;
      case Type.setOverdraftLimit:
        code = this.setLimit(ring, index, partner, sequence);
        break;
      default:
        code = this.admin(ring, index, partner, sequence);
    }
    const account = this.found;
    this.unitAccount[k] = account;
    this.writeBalances(ring, index, account);
    return code;
  }

  /** The account (or -1) the last command resolved; set by every leaf before it returns. */
  private found = NO_ACCOUNT;

  private applyCheck(ring: RingBuffer, index: number, sequence: number): void {
    ring.duplicate[index] = 0;
    ring.resultSeq[index] = sequence;
    const partner = this.partnerFor(ring, index, false);
    const code = partner < 0 ? this.checkUnknown(ring, index) : this.check(ring, index, partner);
    ring.code[index] = code;
    this.writeBalances(ring, index, partner < 0 ? NO_ACCOUNT : this.found);
  }

  private checkUnknown(ring: RingBuffer, index: number): number {
    this.found = NO_ACCOUNT;
    return validAmount(ring.amount[index]) ? Code.account_not_found : Code.amount_invalid;
  }

  private check(ring: RingBuffer, index: number, partner: number): number {
    const amount = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (!validAmount(amount)) return Code.amount_invalid;
    const account = this.findAccount(ring, index, Field.account, partner);
    this.found = account;
    if (account < 0) return Code.account_not_found;
    const blocked = this.blocked(account);
    if (blocked !== Code.ok) return blocked;
    return amount > this.availableOf(account) ? Code.insufficient_funds : Code.ok;
  }

  private openAccount(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const limit = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (!validLimit(limit)) return Code.amount_invalid;
    const hash = this.fieldHash(ring, index, Field.account, partner);
    const length = this.fieldLength(ring, index, Field.account);
    const existing = this.accounts.find(partner, ring.textWords, this.fieldWord(index, Field.account), length, hash);
    if (existing >= 0) {
      this.found = existing;
      return Code.account_exists;
    }
    if (this.accountCount === this.sizes.accountsMax) return Code.capacity_exceeded;
    const currency = this.currencyFor(ring, index, true);
    if (currency < 0) return Code.capacity_exceeded;
    const account = this.accountCount++;
    this.accounts.insert(account, partner, ring.textWords, this.fieldWord(index, Field.account), length, hash);
    this.pushUndo(Undo.accountOpened, account, 0, 0, 0, 0, 0);
    this.balance[account] = 0;
    this.held[account] = 0;
    this.overdraftLimit[account] = limit;
    this.status[account] = Status.active;
    this.currency[account] = currency;
    this.accountSeq[account] = sequence;
    this.found = account;
    return Code.ok;
  }

  private creditOrDebit(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const amount = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (!validAmount(amount)) return Code.amount_invalid;
    const account = this.findAccount(ring, index, Field.account, partner);
    this.found = account;
    if (account < 0) return Code.account_not_found;
    const blocked = this.blocked(account);
    if (blocked !== Code.ok) return blocked;
    if ((ring.flags[index] & Flag.currency) !== 0 && this.currencyFor(ring, index, false) !== this.currency[account]) {
      return Code.currency_mismatch;
    }
    this.saveAccount(account);
    if (ring.type[index] === Type.credit) {
      if (amount > AMOUNT_MAX - (this.balance[account] + this.overdraftLimit[account])) return Code.amount_overflow;
      this.balance[account] += amount;
    } else {
      if (amount > this.availableOf(account)) return Code.insufficient_funds;
      this.balance[account] -= amount;
    }
    this.accountSeq[account] = sequence;
    return Code.ok;
  }

  private transfer(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const amount = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (!validAmount(amount)) return Code.amount_invalid;
    const source = this.findAccount(ring, index, Field.account, partner);
    this.found = source;
    if (this.sameText(ring, index, Field.account, Field.target)) return Code.same_account;
    const target = this.findAccount(ring, index, Field.target, partner);
    if (source < 0 || target < 0) return Code.account_not_found;
    let blocked = this.blocked(source);
    if (blocked === Code.ok) blocked = this.blocked(target);
    if (blocked !== Code.ok) return blocked;
    if (this.currency[source] !== this.currency[target]) return Code.currency_mismatch;
    if (amount > this.availableOf(source)) return Code.insufficient_funds;
    if (amount > AMOUNT_MAX - (this.balance[target] + this.overdraftLimit[target])) return Code.amount_overflow;
    this.saveAccount(source);
    this.saveAccount(target);
    this.balance[source] -= amount;
    this.balance[target] += amount;
    this.accountSeq[source] = sequence;
    this.accountSeq[target] = sequence;
    return Code.ok;
  }

  private hold(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const amount = ring.amount[index];
    const hasExpiry = (ring.flags[index] & Flag.expiry) !== 0;
    const expiresInMs = ring.expiresInMs[index];
    this.found = NO_ACCOUNT;
    if (!validAmount(amount) || (hasExpiry && !validExpiry(expiresInMs))) return Code.amount_invalid;
    const account = this.findAccount(ring, index, Field.account, partner);
    this.found = account;
    if (account < 0) return Code.account_not_found;
    const blocked = this.blocked(account);
    if (blocked !== Code.ok) return blocked;
    if (amount > this.availableOf(account)) return Code.insufficient_funds;
    const length = this.fieldLength(ring, index, Field.id);
    const hash = this.fieldHash(ring, index, Field.id, partner);
    if (this.holds.find(partner, ring.textWords, this.fieldWord(index, Field.id), length, hash) >= 0) return Code.id_reused;
    if (this.holdFreeCount === 0) return Code.capacity_exceeded;
    const hold = this.holdFree[--this.holdFreeCount];
    this.holds.insert(hold, partner, ring.textWords, this.fieldWord(index, Field.id), length, hash);
    this.holdAccount[hold] = account;
    this.holdAmount[hold] = amount;
    this.holdSeq[hold] = sequence;
    this.holdState[hold] = HoldState.open;
    this.holdExpiresAt[hold] = hasExpiry ? this.timeMs + expiresInMs : 0;
    if (hasExpiry) this.heapPush(hold);
    this.pushUndo(Undo.holdPlaced, hold, 0, 0, 0, 0, 0);
    this.saveAccount(account);
    this.held[account] += amount;
    this.accountSeq[account] = sequence;
    return Code.ok;
  }

  private captureOrRelease(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const capture = ring.type[index] === Type.capture;
    const hasAmount = (ring.flags[index] & Flag.amount) !== 0;
    const amount = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (capture && hasAmount && !validAmount(amount)) return Code.amount_invalid;
    const hold = this.holds.find(
      partner,
      ring.textWords,
      this.fieldWord(index, Field.target),
      this.fieldLength(ring, index, Field.target),
      this.fieldHash(ring, index, Field.target, partner),
    );
    if (hold < 0) return Code.hold_not_found;
    const account = this.holdAccount[hold];
    this.found = account;
    const state = this.holdState[hold];
    if (state === HoldState.expired) return Code.hold_expired;
    if (state !== HoldState.open) return Code.hold_closed;
    const holdAmount = this.holdAmount[hold];
    if (capture) {
      if (this.status[account] === Status.frozen) return Code.account_frozen;
      if (hasAmount && amount > holdAmount) return Code.capture_exceeds_hold;
    }
    this.saveAccount(account);
    this.closeHold(hold, capture ? HoldState.captured : HoldState.released);
    this.held[account] -= holdAmount;
    if (capture) this.balance[account] -= hasAmount ? amount : holdAmount;
    this.accountSeq[account] = sequence;
    return Code.ok;
  }

  private setLimit(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const limit = ring.amount[index];
    this.found = NO_ACCOUNT;
    if (!validLimit(limit)) return Code.amount_invalid;
    const account = this.findAccount(ring, index, Field.account, partner);
    this.found = account;
    if (account < 0) return Code.account_not_found;
    if (this.status[account] === Status.closed) return Code.account_closed;
    if (limit > AMOUNT_MAX - Math.max(this.balance[account], 0)) return Code.amount_overflow;
    this.saveAccount(account);
    this.overdraftLimit[account] = limit;
    this.accountSeq[account] = sequence;
    return Code.ok;
  }

  private admin(ring: RingBuffer, index: number, partner: number, sequence: number): number {
    const account = this.findAccount(ring, index, Field.account, partner);
    this.found = account;
    if (account < 0) return Code.account_not_found;
    if (this.status[account] === Status.closed) return Code.account_closed;
    const type = ring.type[index];
    if (type === Type.close && (this.balance[account] !== 0 || this.held[account] !== 0)) return Code.close_nonzero;
    this.saveAccount(account);
    this.status[account] = type === Type.freeze ? Status.frozen : type === Type.unfreeze ? Status.active : Status.closed;
    this.accountSeq[account] = sequence;
    return Code.ok;
  }

  /** account_closed or account_frozen when no money may move, else ok. */
  private blocked(account: number): number {
    const status = this.status[account];
    if (status === Status.closed) return Code.account_closed;
    if (status === Status.frozen) return Code.account_frozen;
    return Code.ok;
  }

  /** available = balance - held + overdraftLimit. */
  availableOf(account: number): number {
    return this.balance[account] - this.held[account] + this.overdraftLimit[account];
  }

  private writeBalances(ring: RingBuffer, index: number, account: number): void {
    ring.account[index] = account;
    if (account < 0) {
      ring.balance[index] = Number.NaN;
      ring.held[index] = Number.NaN;
      ring.available[index] = Number.NaN;
      return;
    }
    ring.balance[index] = this.balance[account];
    ring.held[index] = this.held[account];
    ring.available[index] = this.availableOf(account);
  }

  private reject(ring: RingBuffer, index: number, sequence: number, code: number, account: number): void {
    ring.code[index] = code;
    ring.duplicate[index] = 0;
    ring.resultSeq[index] = sequence;
    this.writeBalances(ring, index, account);
  }

  // Hold lifecycle.

  private closeHold(hold: number, state: number): void {
    this.pushUndo(Undo.holdClosed, hold, this.holdState[hold], 0, 0, 0, 0);
    this.holdState[hold] = state;
    if (this.heapPosition[hold] >= 0) this.heapRemove(hold);
    let tail = this.holdClosedHead + this.holdClosedCount;
    if (tail >= this.sizes.holdsMax) tail -= this.sizes.holdsMax;
    this.holdClosed[tail] = hold;
    this.holdClosedCount++;
  }

  private expireHold(hold: number): void {
    const account = this.holdAccount[hold];
    if (this.observer !== undefined) this.observer.beforeAccountChange(account);
    this.held[account] -= this.holdAmount[hold];
    this.closeHold(hold, HoldState.expired);
  }

  // Lookups by string: reads from outside (account views, stored results, snapshots), off the hot path.

  private readonly lookupWords = new Uint32Array(KEY_WORDS);
  private readonly lookupBytes = new Uint8Array(this.lookupWords.buffer);

  /** The entry of `text` under `owner` in `table`, or -1 (also for text that can never be a key). */
  findText(table: KeyStore, owner: number, text: string): number {
    const length = text.length;
    if (length < 1 || length > KEY_BYTES_MAX) return -1;
    this.lookupWords.fill(0);
    for (let i = 0; i < length; i++) {
      const char = text.charCodeAt(i);
      if (char >= 128) return -1;
      this.lookupBytes[i] = char;
    }
    return table.find(owner, this.lookupWords, 0, length, KeyTable.hash(owner, this.lookupWords, 0, length));
  }

  /** The account index of (partnerId, accountId), or -1. */
  accountIndex(partnerId: string, accountId: string): number {
    const partner = this.findText(this.partners, 0, partnerId);
    return partner < 0 ? -1 : this.findText(this.accounts, partner, accountId);
  }

  /** The account a hold (named by its command id) is on, while the ledger remembers the hold; else -1. */
  holdAccountOf(partnerId: string, holdId: string): number {
    const partner = this.findText(this.partners, 0, partnerId);
    const hold = partner < 0 ? -1 : this.findText(this.holds, partner, holdId);
    return hold < 0 ? -1 : this.holdAccount[hold];
  }

  /**
   * The window entry of (partnerId, id) as a unit stamped `timeMs` (at least the last stamped time) would find it,
   * or -1. Entries too old are forgotten only before the next unit (`expireDue`), so one past retention at `timeMs`
   * may still be in the window: it is -1 here, by expireDue's rule, as it will be for that unit. For reads only; the
   * apply path never calls this.
   */
  windowEntry(partnerId: string, id: string, timeMs: number = this.timeMs): number {
    const partner = this.findText(this.partners, 0, partnerId);
    const entry = partner < 0 ? -1 : this.findText(this.window, partner, id);
    if (entry < 0) return -1;
    const now = Math.max(timeMs, this.timeMs);
    return now - this.windowTime[entry] >= this.sizes.idempotencyRetentionMs ? -1 : entry;
  }

  // Lookups in the hot path.

  /** The partner of the slot (created when `create` and there is room), or -1. */
  private partnerFor(ring: RingBuffer, index: number, create: boolean): number {
    const length = this.fieldLength(ring, index, Field.partner);
    const word = this.fieldWord(index, Field.partner);
    // Consecutive commands are mostly of one partner (a request is): compare with the last one before hashing.
    const last = this.lastPartner;
    if (last >= 0 && this.partners.holds(last, ring.textWords, word, length)) return last;
    const hash = KeyTable.hash(0, ring.textWords, word, length);
    const partner = this.partners.find(0, ring.textWords, word, length, hash);
    if (partner >= 0) this.lastPartner = partner;
    if (partner >= 0 || !create) return partner;
    if (this.partners.count === this.sizes.partnersMax) return -1;
    const created = this.partners.count;
    this.partners.insert(created, 0, ring.textWords, word, length, hash);
    return created;
  }

  /** The currency of the slot (added when `create`, recorded for undo), or -1. */
  private currencyFor(ring: RingBuffer, index: number, create: boolean): number {
    const length = this.fieldLength(ring, index, Field.currency);
    const word = this.fieldWord(index, Field.currency);
    const hash = KeyTable.hash(0, ring.textWords, word, length);
    const currency = this.currencies.find(0, ring.textWords, word, length, hash);
    if (currency >= 0 || !create) return currency;
    if (this.currencyCount === CURRENCIES_MAX) return -1;
    const added = this.currencyCount++;
    this.currencies.insert(added, 0, ring.textWords, word, length, hash);
    this.pushUndo(Undo.currencyAdded, added, 0, 0, 0, 0, 0);
    return added;
  }

  private findAccount(ring: RingBuffer, index: number, field: number, partner: number): number {
    if (field === Field.account && this.slotPartner.length === ring.size && this.slotPartner[index] === partner) {
      const prefetched = this.slotAccount[index];
      if (prefetched >= 0) return prefetched;
    }
    const length = this.fieldLength(ring, index, field);
    const word = this.fieldWord(index, field);
    return this.accounts.find(partner, ring.textWords, word, length, this.fieldHash(ring, index, field, partner));
  }

  private sameText(ring: RingBuffer, index: number, left: number, right: number): boolean {
    const length = this.fieldLength(ring, index, left);
    if (length !== this.fieldLength(ring, index, right)) return false;
    const text = ring.textWords;
    const a = this.fieldWord(index, left);
    const b = this.fieldWord(index, right);
    for (let w = 0; w < (length + 3) >>> 2; w++) if (text[a + w] !== text[b + w]) return false;
    return true;
  }

  /** The hash of a slot's field under `partner`, reusing the prefetch pass's where it computed the same one. */
  private fieldHash(ring: RingBuffer, index: number, field: number, partner: number): number {
    if (this.slotPartner.length === ring.size && this.slotPartner[index] === partner) {
      if (field === Field.id) return this.slotIdHash[index];
      if (field === Field.account) return this.slotAccountHash[index];
    }
    return this.computeHash(ring, index, field, partner);
  }

  private computeHash(ring: RingBuffer, index: number, field: number, partner: number): number {
    return KeyTable.hash(partner, ring.textWords, this.fieldWord(index, field), this.fieldLength(ring, index, field));
  }

  private fieldWord(index: number, field: number): number {
    return index * SLOT_TEXT_WORDS + (FIELD_OFFSET[field] >>> 2);
  }

  private fieldLength(ring: RingBuffer, index: number, field: number): number {
    return ring.fieldLength[index * FIELD_COUNT + field];
  }

  /**
   * A 64-bit fingerprint of everything the command says besides its key (type, flags, numbers, the account,
   * target and currency fields with their lengths),
   * in two independently seeded and multiplied 32-bit lanes, each finished with fmix32. Two different commands
   * under one id are told apart except with probability ~2^-64.
   */
  private fingerprint(ring: RingBuffer, index: number, k: number): void {
    const head = (ring.type[index] << 8) | ring.flags[index];
    let a = Math.imul(0x3c6ef372 ^ head, LANE_A);
    let b = Math.imul(0xa54ff53a ^ head, LANE_B);
    // The numbers' bits, as the two 32-bit halves of each float64 (little-endian, asserted by the ring).
    const amountLow = ring.amountWords[index * 2];
    const amountHigh = ring.amountWords[index * 2 + 1];
    const expiryLow = ring.expiresInMsWords[index * 2];
    const expiryHigh = ring.expiresInMsWords[index * 2 + 1];
    a = Math.imul(((a << 5) | (a >>> 27)) ^ amountLow, LANE_A);
    b = Math.imul(((b << 11) | (b >>> 21)) ^ amountLow, LANE_B);
    a = Math.imul(((a << 5) | (a >>> 27)) ^ amountHigh, LANE_A);
    b = Math.imul(((b << 11) | (b >>> 21)) ^ amountHigh, LANE_B);
    a = Math.imul(((a << 5) | (a >>> 27)) ^ expiryLow, LANE_A);
    b = Math.imul(((b << 11) | (b >>> 21)) ^ expiryLow, LANE_B);
    a = Math.imul(((a << 5) | (a >>> 27)) ^ expiryHigh, LANE_A);
    b = Math.imul(((b << 11) | (b >>> 21)) ^ expiryHigh, LANE_B);
    const text = ring.textWords;
    const lengths = index * FIELD_COUNT;
    // The id and partner are the window key itself, equal whenever fingerprints are compared: start after them.
    for (let field = Field.account; field < FIELD_COUNT; field++) {
      const length = ring.fieldLength[lengths + field];
      a = Math.imul(((a << 5) | (a >>> 27)) ^ length, LANE_A);
      b = Math.imul(((b << 11) | (b >>> 21)) ^ length, LANE_B);
      const start = this.fieldWord(index, field);
      const end = start + ((length + 3) >>> 2);
      for (let w = start; w < end; w++) {
        const word = text[w];
        a = Math.imul(((a << 5) | (a >>> 27)) ^ word, LANE_A);
        b = Math.imul(((b << 11) | (b >>> 21)) ^ word, LANE_B);
      }
    }
    this.unitFingerprint[k * 2] = finalize(a);
    this.unitFingerprint[k * 2 + 1] = finalize(b);
  }

  // Undo log: written only while an atomic group is applied, reset per unit.

  /** Before an account's mutable columns change: tell a running snapshot, and record undo inside a group. */
  private saveAccount(account: number): void {
    if (this.observer !== undefined) this.observer.beforeAccountChange(account);
    if (!this.inGroup) return;
    this.pushUndo(
      Undo.accountState,
      account,
      this.balance[account],
      this.held[account],
      this.overdraftLimit[account],
      this.status[account],
      this.accountSeq[account],
    );
  }

  private pushUndo(kind: number, target: number, a: number, b: number, c: number, d: number, e: number): void {
    if (!this.inGroup) return;
    assert(this.undoCount < UNDO_ENTRIES_MAX, "undo log full: a group command wrote more entries than budgeted");
    const row = this.undoCount++ * UNDO_COLUMNS;
    const undo = this.undo;
    undo[row] = kind;
    undo[row + 1] = target;
    undo[row + 2] = a;
    undo[row + 3] = b;
    undo[row + 4] = c;
    undo[row + 5] = d;
    undo[row + 6] = e;
  }

  private rollback(): void {
    const undo = this.undo;
    for (let entry = this.undoCount - 1; entry >= 0; entry--) {
      const row = entry * UNDO_COLUMNS;
      const target = undo[row + 1];
      switch (undo[row]) {
        case Undo.accountState:
          this.balance[target] = undo[row + 2];
          this.held[target] = undo[row + 3];
          this.overdraftLimit[target] = undo[row + 4];
          this.status[target] = undo[row + 5];
          this.accountSeq[target] = undo[row + 6];
          break;
        case Undo.accountOpened:
          assert(target === this.accountCount - 1, "undo must remove the newest account");
          this.accounts.remove(target);
          this.accountCount--;
          break;
        case Undo.currencyAdded:
          assert(target === this.currencyCount - 1, "undo must remove the newest currency");
          this.currencies.remove(target);
          this.currencyCount--;
          break;
        case Undo.holdPlaced:
          if (this.heapPosition[target] >= 0) this.heapRemove(target);
          this.holds.remove(target);
          this.holdState[target] = HoldState.free;
          this.holdFree[this.holdFreeCount++] = target;
          break;
        default:
          this.reopenHold(target, undo[row + 2]);
      }
    }
    this.undoCount = 0;
  }

  private reopenHold(hold: number, state: number): void {
    this.holdClosedCount--;
    let tail = this.holdClosedHead + this.holdClosedCount;
    if (tail >= this.sizes.holdsMax) tail -= this.sizes.holdsMax;
    assert(this.holdClosed[tail] === hold, "undo must reopen the newest closed hold");
    this.holdState[hold] = state;
    if (this.holdExpiresAt[hold] > 0) this.heapPush(hold);
  }

  // The expiry heap, ordered by (expiresAt, seq): a total order, so expiry order never depends on heap layout.

  private heapLess(left: number, right: number): boolean {
    const a = this.holdExpiresAt[left];
    const b = this.holdExpiresAt[right];
    return a < b || (a === b && this.holdSeq[left] < this.holdSeq[right]);
  }

  heapPush(hold: number): void {
    assert(this.heapSize < this.sizes.holdsMax, "expiry heap full");
    this.heap[this.heapSize] = hold;
    this.heapPosition[hold] = this.heapSize;
    this.heapSize++;
    this.siftUp(this.heapSize - 1);
  }

  private heapRemove(hold: number): void {
    const position = this.heapPosition[hold];
    const last = this.heap[--this.heapSize];
    this.heapPosition[hold] = -1;
    if (last === hold) return;
    this.heap[position] = last;
    this.heapPosition[last] = position;
    this.siftUp(position);
    this.siftDown(this.heapPosition[last]);
  }

  private siftUp(position: number): void {
    const heap = this.heap;
    for (let depth = 0; position > 0 && depth < 32; depth++) {
      const parent = (position - 1) >>> 1;
      if (!this.heapLess(heap[position], heap[parent])) return;
      this.heapSwap(position, parent);
      position = parent;
    }
  }

  private siftDown(position: number): void {
    const heap = this.heap;
    for (let depth = 0; depth < 32; depth++) {
      const left = position * 2 + 1;
      if (left >= this.heapSize) return;
      const right = left + 1;
      const child = right < this.heapSize && this.heapLess(heap[right], heap[left]) ? right : left;
      if (!this.heapLess(heap[child], heap[position])) return;
      this.heapSwap(position, child);
      position = child;
    }
  }

  private heapSwap(i: number, j: number): void {
    const heap = this.heap;
    const a = heap[i];
    const b = heap[j];
    heap[i] = b;
    heap[j] = a;
    this.heapPosition[b] = i;
    this.heapPosition[a] = j;
  }
}

function validAmount(amount: number): boolean {
  return Number.isInteger(amount) && amount >= 1 && amount <= AMOUNT_MAX;
}

function validLimit(limit: number): boolean {
  return Number.isInteger(limit) && limit >= 0 && limit <= AMOUNT_MAX;
}

function validExpiry(expiresInMs: number): boolean {
  return Number.isInteger(expiresInMs) && expiresInMs >= 1 && expiresInMs <= HOLD_EXPIRY_MS_MAX;
}
