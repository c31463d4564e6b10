/**
 * What the load generators (bench/load-http.ts, bench/load-nats.ts) share: the counters, the bounded latency
 * samples, the untimed warm-up and the timed phase of `loops` concurrent request loops, and the one JSON line
 * each prints for bench/http.ts and bench/nats.ts to read (`LoadResult`).
 */
import { percentile } from "./children.ts";

/** Latency samples kept (bounded); beyond it, later requests are counted but not sampled. */
const SAMPLES_MAX = 4_000_000;

/** What a load generator measured in its timed phase. */
export interface LoadResult {
  requests: number;
  commands: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  reqPerSec: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One request loop: sends until `deadline` or `requestsMax` requests, reporting to the recorder. */
export type RequestLoop = (index: number, deadline: number, requestsMax: number) => Promise<void>;

/** Counts and times requests; only those of the timed phase (`timing`) count. */
export class LoadRecorder {
  timing = false;
  private requests = 0;
  private commands = 0;
  private errors = 0;
  private firstError: string | undefined;
  private readonly latencies = new Float64Array(SAMPLES_MAX);
  private samples = 0;

  /** A failed request of the timed phase (`countRequest`: it was not counted by `done`). */
  fail(message: string, countRequest = false): void {
    if (!this.timing) return;
    if (countRequest) this.requests++;
    this.errors++;
    this.firstError ??= message;
  }

  /** A request of the timed phase came back: counted, and its latency sampled. Returns whether it counts. */
  done(): boolean {
    if (this.timing) this.requests++;
    return this.timing;
  }

  /** The request (counted by `done`) was correct: its commands count and its latency is kept. */
  succeeded(commands: number, latencyMs: number): void {
    this.commands += commands;
    if (this.samples < SAMPLES_MAX) this.latencies[this.samples++] = latencyMs;
  }

  /** Warm up for `warmupMs` (untimed), then time `durationMs`; `loops` loops share `requestsMax` requests per phase. */
  async run(loops: number, config: { warmupMs: number; durationMs: number; requestsMax: number }, loop: RequestLoop): Promise<LoadResult> {
    const perLoop = Math.ceil(config.requestsMax / loops);
    const phase = async (ms: number) => {
      const started = performance.now();
      await Promise.all(Array.from({ length: loops }, (_, index) => loop(index, started + ms, perLoop)));
      return performance.now() - started;
    };
    await phase(config.warmupMs);
    this.timing = true;
    const elapsedMs = await phase(config.durationMs);
    this.timing = false;
    return {
      requests: this.requests,
      commands: this.commands,
      errors: this.errors,
      firstError: this.firstError,
      elapsedMs,
      reqPerSec: (this.requests / elapsedMs) * 1000,
      opsPerSec: (this.commands / elapsedMs) * 1000,
      p50Ms: percentile(this.latencies, this.samples, 50),
      p99Ms: percentile(this.latencies, this.samples, 99),
      maxMs: percentile(this.latencies, this.samples, 100),
    };
  }
}
