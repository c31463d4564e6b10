/**
 * Private servers for fault tests: a PostgreSQL cluster and a nats-server with JetStream, each on its own loopback
 * port and temporary directory, so a test can stop and start them without touching the machine's shared services.
 * Both are the real Debian binaries. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
 * Every wait is bounded.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { connect as natsConnect } from "@nats-io/transport-node";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const START_MS_MAX = 30_000;

/** The nats-server binary: Debian's, or NATS_SERVER_BIN. */
export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

/**
 * Whether a nats-server answers at `servers`; a connection failure is the answer "no", with the reason. Tests that
 * need the machine's server skip with that reason, except in CI (CI=true), where they fail.
 */
export async function natsReachable(servers: string): Promise<{ up: true } | { up: false; reason: string }> {
  try {
    const nc = await natsConnect({ servers, timeout: 2_000, reconnect: false });
    await nc.close();
    return { up: true };
  } catch (error) {
    return { up: false, reason: (error as Error).message };
  }
}

/**
 * The `skip` option for tests that need a service: false when it is there; when it is not, `reason`, with a
 * warning, except in CI (CI=true), where a failing test named `requirement (required in CI)` says why instead.
 */
export function skipUnlessAvailable(available: boolean, requirement: string, reason: string): string | false {
  if (available) return false;
  if (process.env.CI === "true") test(`${requirement} (required in CI)`, () => assert.fail(reason));
  else console.warn(`SKIP: ${reason}`);
  return reason;
}

/** A loopback TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Resolves once something accepts TCP connections on `port` (bounded). */
export async function waitForPort(port: number, timeoutMs = START_MS_MAX): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The newest PostgreSQL server binaries installed (Debian layout), or undefined. */
function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? undefined : join(root, versions[0], "bin");
}

/** Whether private servers can be started here: the binaries exist. */
export function privateServicesAvailable(): { ok: boolean; reason: string } {
  if (postgresBin() === undefined) return { ok: false, reason: "no PostgreSQL server binaries under /usr/lib/postgresql" };
  if (!existsSync(NATS_SERVER_BIN)) return { ok: false, reason: `no ${NATS_SERVER_BIN} (NATS_SERVER_BIN)` };
  return { ok: true, reason: "" };
}

/** A PostgreSQL cluster of its own (trust auth, user postgres, fsync off: a test fixture, not a store). */
export class PrivatePostgres {
  private constructor(
    private readonly bin: string,
    private readonly directory: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async create(): Promise<PrivatePostgres> {
    const bin = postgresBin();
    if (bin === undefined) throw new Error("no PostgreSQL server binaries");
    const directory = mkdtempSync(join(tmpdir(), "hotledger-pg-"));
    const server = new PrivatePostgres(bin, directory, await freePort());
    if (process.getuid?.() === 0) chownSync(directory, postgresUid(), postgresGid());
    server.run("initdb", ["-D", join(directory, "data"), "-A", "trust", "-U", "postgres"]);
    await server.start();
    return server;
  }

  async start(): Promise<void> {
    const options = `-p ${this.port} -k ${this.directory} -c listen_addresses=127.0.0.1 -c fsync=off`;
    this.run("pg_ctl", ["-D", join(this.directory, "data"), "-o", options, "-l", join(this.directory, "log"), "-w", "start"]);
    await waitForPort(this.port);
  }

  /** Fast shutdown: open connections are cut, as in an outage. */
  async stop(): Promise<void> {
    this.run("pg_ctl", ["-D", join(this.directory, "data"), "-m", "fast", "-w", "stop"]);
  }

  async destroy(): Promise<void> {
    spawnSync(...this.command("pg_ctl", ["-D", join(this.directory, "data"), "-m", "immediate", "-w", "stop"]), { stdio: "ignore" });
    rmSync(this.directory, { recursive: true, force: true });
  }

  private command(tool: string, args: string[]): [string, string[]] {
    const path = join(this.bin, tool);
    return process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", path, ...args]] : [path, args];
  }

  private run(tool: string, args: string[]): void {
    const result = spawnSync(...this.command(tool, args), { encoding: "utf8", timeout: START_MS_MAX });
    if (result.status !== 0) throw new Error(`${tool} failed (${result.status}): ${result.stderr}${result.stdout}`);
  }
}

function postgresUid(): number {
  return Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim());
}

function postgresGid(): number {
  return Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim());
}

/** A nats-server with JetStream of its own; its store survives stop/start. */
export class PrivateNats {
  private child: ChildProcess | undefined;

  private constructor(
    private readonly directory: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async create(): Promise<PrivateNats> {
    const server = new PrivateNats(mkdtempSync(join(tmpdir(), "hotledger-nats-")), await freePort());
    await server.start();
    return server;
  }

  async start(): Promise<void> {
    this.child = spawn(NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.directory], { stdio: "ignore" });
    await waitForPort(this.port);
  }

  /** SIGTERM (a shutdown) or SIGKILL (a crash), and wait for the exit (bounded: SIGKILL after 10 s). */
  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.directory, { recursive: true, force: true });
  }
}
