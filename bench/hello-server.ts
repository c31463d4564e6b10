/**
 * The yardstick of bench/http.ts: a bare Bun.serve that parses a JSON POST body and echoes it, nothing else (no
 * auth, no validation, no ledger). Run in its own process; prints "listening on <url>"; exits on SIGTERM.
 */
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(request) {
    const body = await request.json();
    return Response.json(body);
  },
});
console.log(`hello server listening on http://127.0.0.1:${server.port}`);
process.on("SIGTERM", () => {
  void server.stop(true).then(() => process.exit(0));
});
