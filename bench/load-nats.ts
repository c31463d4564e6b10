/**
 * NATS load generator of bench/nats.ts, run as its own process: `bun bench/load-nats.ts '<json config>'`.
 * `inFlight` loops on one connection, each with one request outstanding, run for `warmupMs` untimed, then for
 * `durationMs` (or `requestsMax` requests) timed. Gateway requests are protobuf CommandBatch messages of `batch`
 * credits/debits; every reply must carry no Hotledger-Error header and every result code must be OK, else it is
 * counted in `errors`. Echo mode sends a one-command CommandBatch to the echo subject and checks the bytes come
 * back. Prints one JSON line.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import { CommandBatchSchema, CommandType, ResultBatchSchema, ResultCode } from "../core/gen/hotledger/v1/ledger_pb.ts";

interface Config {
  servers: string;
  subject: string;
  mode: "gateway" | "echo";
  batch: number;
  inFlight: number;
  warmupMs: number;
  durationMs: number;
  requestsMax: number;
  accounts: number;
  partners: { partnerId: string; key: string }[];
  tag: string;
}

const config = JSON.parse(process.argv[2]) as Config;
const SAMPLES_MAX = 4_000_000;
/** A request with no reply after this long is an error. */
const REQUEST_TIMEOUT_MS = 10_000;
const latencies = new Float64Array(SAMPLES_MAX);
let samples = 0;
let requests = 0;
let commands = 0;
let errors = 0;
let firstError: string | undefined;
let timing = false;
const nextId = new Array<number>(config.inFlight).fill(0);

function fail(message: string): void {
  errors++;
  firstError ??= message;
}

const nc = await connect({ servers: config.servers });

async function loop(index: number, deadline: number, requestsMax: number): Promise<void> {
  const partner = config.partners[index % config.partners.length];
  const hdrs = natsHeaders();
  hdrs.set("Authorization", `Bearer ${partner.key}`);
  let n = nextId[index];
  let account = (index * 7919) % config.accounts;
  for (let sent = 0; sent < requestsMax && performance.now() < deadline; sent++) {
    const list = [];
    const count = config.mode === "echo" ? 1 : config.batch;
    for (let k = 0; k < count; k++) {
      account = (account + 1) % config.accounts;
      list.push({
        type: config.mode === "gateway" && k % 2 === 1 ? CommandType.DEBIT : CommandType.CREDIT,
        id: `${config.tag}-${index}-${n++}`,
        partnerId: partner.partnerId,
        accountId: `acct:${account}`,
        amount: BigInt(1 + (n % 1000)),
      });
    }
    nextId[index] = n;
    const data = toBinary(CommandBatchSchema, create(CommandBatchSchema, { commands: list }));
    const started = performance.now();
    let reply;
    try {
      reply = await nc.request(config.subject, data, { timeout: REQUEST_TIMEOUT_MS, headers: hdrs });
    } catch (error) {
      if (timing) {
        requests++;
        fail(`request: ${(error as Error).message}`);
      }
      continue;
    }
    const ended = performance.now();
    if (!timing) continue;
    requests++;
    if (config.mode === "echo") {
      if (reply.data.byteLength !== data.byteLength) fail(`echo returned ${reply.data.byteLength} bytes for ${data.byteLength}`);
    } else {
      const code = reply.headers?.get("Hotledger-Error");
      if (code) {
        fail(`Hotledger-Error ${code}: ${reply.headers?.get("Hotledger-Error-Message")}`);
        continue;
      }
      const { results } = fromBinary(ResultBatchSchema, reply.data);
      if (results.length !== count) fail(`${results.length} results for ${count} commands`);
      for (const result of results) if (result.code !== ResultCode.OK || result.duplicate) fail(`code ${ResultCode[result.code]}`);
    }
    commands += count;
    if (samples < SAMPLES_MAX) latencies[samples++] = ended - started;
  }
}

async function phase(ms: number): Promise<number> {
  const started = performance.now();
  const deadline = started + ms;
  const perLoop = Math.ceil(config.requestsMax / config.inFlight);
  await Promise.all(Array.from({ length: config.inFlight }, (_, index) => loop(index, deadline, perLoop)));
  return performance.now() - started;
}

await phase(config.warmupMs);
timing = true;
const elapsedMs = await phase(config.durationMs);
await nc.close();
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
