/**
 * HTTP load generator of bench/http.ts, run as its own process: `bun bench/load-http.ts '<json config>'`.
 * `connections` loops, each with one request in flight (Bun's fetch keeps connections alive and pools them), run
 * for `warmupMs` untimed, then for `durationMs` (or `requestsMax` requests) timed. Every response must be 200 and,
 * for a batch, every result code `ok`; anything else is counted in `errors`. Prints one JSON line.
 */
interface Config {
  url: string;
  mode: "batch" | "single" | "hello";
  /** Commands per request in batch mode. */
  batch: number;
  connections: number;
  warmupMs: number;
  durationMs: number;
  requestsMax: number;
  accounts: number;
  partners: { partnerId: string; key: string }[];
  /** Makes ids unique across runs against the same gateway. */
  tag: string;
}

export {};

const config = JSON.parse(process.argv[2]) as Config;
/** Latency samples kept (bounded); beyond it, later requests are counted but not sampled. */
const SAMPLES_MAX = 4_000_000;
const latencies = new Float64Array(SAMPLES_MAX);
let samples = 0;
let requests = 0;
let commands = 0;
let errors = 0;
let firstError: string | undefined;
let timing = false;
/** Next id number per connection, kept across the warm-up and timed phases so every id is new. */
const nextId = new Array<number>(config.connections).fill(0);

function fail(message: string): void {
  errors++;
  firstError ??= message;
}

async function connection(index: number, deadline: number, requestsMax: number): Promise<void> {
  const partner = config.partners[index % config.partners.length];
  const headers = { authorization: `Bearer ${partner.key}`, "content-type": "application/json" };
  const target = config.mode === "batch" ? `${config.url}/v1/commands` : config.mode === "single" ? `${config.url}/v1/credit` : `${config.url}/`;
  let n = nextId[index];
  let account = (index * 7919) % config.accounts;
  for (let sent = 0; sent < requestsMax && performance.now() < deadline; sent++) {
    let body: string;
    let count = 1;
    if (config.mode === "batch") {
      const list = [];
      for (let k = 0; k < config.batch; k++) {
        account = (account + 1) % config.accounts;
        list.push({ type: k % 2 === 0 ? "credit" : "debit", id: `${config.tag}-${index}-${n++}`, partnerId: partner.partnerId, accountId: `acct:${account}`, amount: 1 + (n % 1000) });
      }
      body = JSON.stringify({ commands: list });
      count = config.batch;
    } else {
      account = (account + 1) % config.accounts;
      body = JSON.stringify({ id: `${config.tag}-${index}-${n++}`, partnerId: partner.partnerId, accountId: `acct:${account}`, amount: 1 + (n % 1000) });
    }
    nextId[index] = n;
    const started = performance.now();
    let text: string;
    let status: number;
    try {
      const response = await fetch(target, { method: "POST", headers, body });
      status = response.status;
      text = await response.text();
    } catch (error) {
      if (timing) fail(`fetch: ${(error as Error).message}`);
      continue;
    }
    const ended = performance.now();
    if (!timing) continue;
    requests++;
    if (status !== 200) {
      fail(`status ${status}: ${text.slice(0, 200)}`);
      continue;
    }
    if (config.mode === "batch") {
      const { results } = JSON.parse(text) as { results: { code: string }[] };
      if (results.length !== count) fail(`${results.length} results for ${count} commands`);
      for (const result of results) if (result.code !== "ok") fail(`code ${result.code}`);
    }
    commands += count;
    if (samples < SAMPLES_MAX) latencies[samples++] = ended - started;
  }
}

async function phase(ms: number, requestsMax: number): Promise<number> {
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(Array.from({ length: config.connections }, (_, index) => connection(index, deadline, requestsMax)));
  return performance.now() - started;
}

await phase(config.warmupMs, Math.ceil(config.requestsMax / config.connections));
timing = true;
const elapsedMs = await phase(config.durationMs, Math.ceil(config.requestsMax / config.connections));
const sorted = latencies.subarray(0, samples).sort();
const at = (p: number) => (samples === 0 ? Number.NaN : sorted[Math.min(samples - 1, Math.floor(p * samples))]);
console.log(
  JSON.stringify({
    requests,
    commands,
    errors,
    firstError,
    elapsedMs,
    reqPerSec: (requests / elapsedMs) * 1000,
    opsPerSec: (commands / elapsedMs) * 1000,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: at(1),
  }),
);
