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

import { LoadRecorder } from "./load-runner.ts";

const config = JSON.parse(process.argv[2]) as Config;
const recorder = new LoadRecorder();
/** Next id number per connection, kept across the warm-up and timed phases so every id is new. */
const nextId = new Array<number>(config.connections).fill(0);

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
      recorder.fail(`fetch: ${(error as Error).message}`);
      continue;
    }
    const ended = performance.now();
    if (!recorder.done()) continue;
    if (status !== 200) {
      recorder.fail(`status ${status}: ${text.slice(0, 200)}`);
      continue;
    }
    if (config.mode === "batch") {
      const { results } = JSON.parse(text) as { results: { code: string }[] };
      if (results.length !== count) recorder.fail(`${results.length} results for ${count} commands`);
      for (const result of results) if (result.code !== "ok") recorder.fail(`code ${result.code}`);
    }
    recorder.succeeded(count, ended - started);
  }
}

console.log(JSON.stringify(await recorder.run(config.connections, config, connection)));
