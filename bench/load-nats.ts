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
import { LoadRecorder } from "./load-runner.ts";

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
/** A request with no reply after this long is an error. */
const REQUEST_TIMEOUT_MS = 10_000;
const recorder = new LoadRecorder();
/** Next id number per loop, kept across the warm-up and timed phases so every id is new. */
const nextId = new Array<number>(config.inFlight).fill(0);

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
      recorder.fail(`request: ${(error as Error).message}`, true);
      continue;
    }
    const ended = performance.now();
    if (!recorder.done()) continue;
    if (config.mode === "echo") {
      if (reply.data.byteLength !== data.byteLength) recorder.fail(`echo returned ${reply.data.byteLength} bytes for ${data.byteLength}`);
    } else {
      const code = reply.headers?.get("Hotledger-Error");
      if (code) {
        recorder.fail(`Hotledger-Error ${code}: ${reply.headers?.get("Hotledger-Error-Message")}`);
        continue;
      }
      const { results } = fromBinary(ResultBatchSchema, reply.data);
      if (results.length !== count) recorder.fail(`${results.length} results for ${count} commands`);
      for (const result of results) if (result.code !== ResultCode.OK || result.duplicate) recorder.fail(`code ${ResultCode[result.code]}`);
    }
    recorder.succeeded(count, ended - started);
  }
}

const result = await recorder.run(config.inFlight, config, loop);
await nc.close();
console.log(JSON.stringify(result));
