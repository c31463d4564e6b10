/**
 * The yardstick of bench/nats.ts: a bare NATS responder that answers every request on `subject` with its own
 * payload (no decode, no auth, no ledger). Run in its own process: `bun bench/echo-responder.ts <servers> <subject>`;
 * prints "echo ready"; drains and exits on SIGTERM.
 */
import { connect } from "@nats-io/transport-node";

const [servers, subject] = process.argv.slice(2);
const nc = await connect({ servers });
nc.subscribe(subject, {
  callback: (error, msg) => {
    if (error === null) msg.respond(msg.data);
  },
});
await nc.flush();
console.log(`echo ready on ${subject}`);
process.on("SIGTERM", () => {
  void nc.drain().then(() => process.exit(0));
});
