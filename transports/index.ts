/**
 * What every transport shares, for a gateway built by hand: the RoutingGateway (partner -> shard, one request
 * split across shards only when it spans partners) with its ShardPort seam (an in-process shard, a worker, later
 * a shard on another machine over NATS), and API keys (KeyRing). The transports themselves are their own entry
 * points: `hotledger/transports/http`, `hotledger/transports/nats`, `hotledger/transports/worker`.
 */
export {
  HISTORY_PAGE_DEFAULT,
  HISTORY_PAGE_MAX,
  RoutingGateway,
  type Gateway,
  type HistoryPage,
  type HistoryReader,
  type OutputsView,
  type ShardPort,
} from "./gateway.ts";
export { hashKey, KEYS_PER_PARTNER_MAX, KeyRing, mayActOn, type KeyConfig, type Principal } from "./auth.ts";
export { runtimeAscii } from "./ascii.ts";
