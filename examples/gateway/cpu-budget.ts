/**
 * A CPU budget for the output relays' process (`RelayOptions.pace`): while the shards' journals grow fast (the
 * ledger is busy), the process is held to `percent` of one CPU, counted over windows of WINDOW_MS; while they grow
 * slowly or not at all, it runs freely and catches up.
 *
 * Why: on a machine where the relays share CPUs with the shards, a relay catching up takes a whole CPU, and even at
 * nice 19 that cost the shard 17-36% of its throughput on 2 vCPUs (bench/README.md, outputs.ts). The
 * ledger comes first: under a peak the outputs fall behind (their lag is in /metrics) and catch up after it. The
 * default threshold is about what the outputs deliver at full speed anyway (~250k commands a second), so the
 * budget costs them nothing a lagging relay had not already lost. CockroachDB makes the same trade for its
 * changefeeds (an "elastic" CPU limit on background work).
 *
 * The process's CPU time (all its threads) is what is counted, so this fits a process that runs relays only
 * (`examples/gateway/relay.ts`), not a gateway that runs its shards beside them.
 */

/** Length of a counting window: whether the shards are busy, and the CPU used, start again after each. */
export const WINDOW_MS = 1000;

export interface CpuBudgetOptions {
  /** The share of one CPU the process may use while the shards are busy, in percent (1-100; 100: no limit). */
  percent: number;
  /** The shards count as busy while their journals grow by at least this many bytes a second, together. */
  busyBytesPerSec: number;
  /** Bytes the shards have appended to their journals since a fixed start (e.g. JournalWriteMeter.written). */
  journalBytes: () => Promise<number>;
  sleep: (ms: number) => Promise<void>;
  /** Wall time in ms. Default performance.now. */
  now?: () => number;
  /** The process's CPU time in ms (user + system, all threads). Default from process.cpuUsage. */
  cpuMs?: () => number;
}

export class CpuBudget {
  private readonly now: () => number;
  private readonly cpuMs: () => number;
  private windowStart: number;
  private cpuAtStart: number;
  private bytesAtStart = 0;
  /** Whether the last window found the journals growing fast: the budget applies during the next. */
  private busy = false;
  /** The journals' size being read at the end of a window. */
  private looking: Promise<void> | undefined = undefined;

  constructor(private readonly options: CpuBudgetOptions) {
    if (!Number.isInteger(options.percent) || options.percent < 1 || options.percent > 100) {
      throw new RangeError(`percent must be an integer in 1..100, got ${options.percent}`);
    }
    if (!(options.busyBytesPerSec >= 0)) throw new RangeError(`busyBytesPerSec must be >= 0, got ${options.busyBytesPerSec}`);
    this.now = options.now ?? (() => performance.now());
    this.cpuMs = options.cpuMs ?? (() => {
      const usage = process.cpuUsage();
      return (usage.user + usage.system) / 1000;
    });
    this.windowStart = this.now();
    this.cpuAtStart = this.cpuMs();
    this.looking = this.startWindow().finally(() => {
      this.looking = undefined;
    });
  }

  /** Whether the budget holds the process back now. */
  get limiting(): boolean {
    return this.busy && this.options.percent < 100;
  }

  /**
   * The relays' `pace`: resolves at once while the process is within its budget (or the shards are not busy),
   * else after the sleep that brings it back within. Several relays may call it at once.
   */
  readonly pace = (): Promise<void> | undefined => {
    if (this.looking !== undefined) return this.looking;
    const elapsed = this.now() - this.windowStart;
    if (elapsed >= WINDOW_MS) {
      this.looking = this.endWindow(elapsed).finally(() => {
        this.looking = undefined;
      });
      return this.looking;
    }
    if (!this.limiting) return undefined;
    const used = this.cpuMs() - this.cpuAtStart;
    const allowed = (elapsed * this.options.percent) / 100;
    return used > allowed ? this.options.sleep(((used - allowed) * 100) / this.options.percent) : undefined;
  };

  private async endWindow(elapsed: number): Promise<void> {
    const bytesAtStart = this.bytesAtStart;
    await this.startWindow();
    this.busy = ((this.bytesAtStart - bytesAtStart) * 1000) / elapsed >= this.options.busyBytesPerSec;
  }

  /**
   * A journal that cannot be measured (its directory unreadable) counts as not growing: the relay then runs freely,
   * and its own tail reports the journal's trouble.
   */
  private async startWindow(): Promise<void> {
    this.bytesAtStart = await this.options.journalBytes().catch(() => this.bytesAtStart);
    this.windowStart = this.now();
    this.cpuAtStart = this.cpuMs();
  }
}
