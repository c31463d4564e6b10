// Proves that output events are a faithful, replayable account of the journal: one event per sequence with the
// shard's own result, account changes that chain and add up to the final balances (double entry for transfers,
// nothing for rejections and duplicates, nothing from a rolled-back group), the same events from a snapshot, and a
// relay that delivers every event to every sink in order across outages, lost acknowledgements and restarts.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AssertionError } from "./assert.ts";
import { Engine, EventDeriver, JournalCorruptError, Relay, Shard } from "./index.ts";
import { KeepingJournal, MemoryJournal, MemorySnapshotStore } from "./testing/memory-ports.ts";
import { MemoryJournalTail, MemorySink } from "./testing/memory-outputs.ts";
import { deriveEvents, openWorkloadShard, randomWorkload, submitWorkload, workloadClock, workloadOpenings } from "./testing/workload.ts";

/** Table sizes of this suite's shards, followers and relays: smaller than WORKLOAD_SIZES, enough for a few hundred batches. */
const SIZES = { accountsMax: 256, partnersMax: 16, holdsMax: 512, idempotencyCommandsMax: 4096, ringSlots: 64 };

const key = (partnerId: string, accountId: string) => `${partnerId}/${accountId}`;

describe("output events", () => {
  test("a relay's own string decoder (a runtime's faster one) gives the same events", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(5, 120)]);
    let calls = 0;
    const ascii = (bytes: Uint8Array, start: number, end: number) => {
      calls++;
      let text = "";
      for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]);
      return text;
    };
    const events = deriveEvents(journal.records, 3, SIZES, undefined, ascii);
    assert.ok(calls >= 2 * events.length, `the decoder made the commands' strings (${calls} calls for ${events.length} events)`);
    assert.deepEqual(events, deriveEvents(journal.records, 3, SIZES));
    await shard.close();
  });

  test("one per sequence with the shard's result; changes chain, add up to the final state, and are double entry", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    const results = await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(7, 400)]);
    const events = deriveEvents(journal.records, 3, SIZES);
    assert.equal(events.length, shard.lastSequence);
    assert.ok(events.length > 1500, `a large enough workload (${events.length})`);
    const codes = new Set<string>();
    let transfers = 0;
    let expiries = 0;
    const firstAccount = new Map<string, string>();
    const state = new Map<string, { balance: number; held: number; sumBalance: number; sumHeld: number }>();
    events.forEach((event, i) => {
      assert.equal(event.seq, i + 1);
      assert.equal(event.eventId, `3:${i + 1}`);
      assert.deepEqual(event.result, results[i], `event ${event.eventId} carries the shard's result`);
      codes.add(event.result.code);
      const command = event.command;
      if (command.type === "capture" || command.type === "release") {
        const original = firstAccount.get(`${command.partnerId}/${command.id}`);
        if (event.result.duplicate === true && original !== undefined) assert.equal(event.accountId, original, `${event.eventId}: the original's account`);
        if (event.result.duplicate !== true) firstAccount.set(`${command.partnerId}/${command.id}`, event.accountId);
        if (event.result.code === "ok" && event.result.duplicate !== true) {
          const own = event.accounts.find((change) => change.partnerId === command.partnerId && change.accountId === event.accountId);
          assert.ok(own !== undefined && own.balance === event.result.balance && own.held === event.result.held, `${event.eventId}: the hold's account`);
        }
      } else {
        assert.equal(event.accountId, command.type === "transfer" ? command.fromAccountId : command.accountId, `${event.eventId}: the command's account`);
      }
      const moved = event.accounts.filter((change) => change.balanceDelta !== 0);
      if (event.result.code !== "ok" || event.result.duplicate === true || event.command.type === "check") {
        assert.equal(moved.length, 0, `${event.eventId} (${event.result.code}) moves no balance`);
      }
      if (event.command.type === "transfer" && event.result.code === "ok" && event.result.duplicate !== true) {
        transfers++;
        assert.deepEqual(moved.map((change) => change.balanceDelta).sort((a, b) => a - b), [-event.command.amount, event.command.amount]);
      }
      for (const change of event.accounts) {
        const k = key(change.partnerId, change.accountId);
        const before = state.get(k) ?? { balance: 0, held: 0, sumBalance: 0, sumHeld: 0 };
        assert.equal(change.balance, before.balance + change.balanceDelta, `${event.eventId} ${k} balance chains`);
        assert.equal(change.held, before.held + change.heldDelta, `${event.eventId} ${k} held chains`);
        assert.equal(change.available, change.balance - change.held + change.overdraftLimit);
        if (change.heldDelta < 0 && event.command.type !== "capture" && event.command.type !== "release") expiries++;
        state.set(k, { balance: change.balance, held: change.held, sumBalance: before.sumBalance + change.balanceDelta, sumHeld: before.sumHeld + change.heldDelta });
      }
    });
    for (const [k, s] of state) {
      const [partnerId, accountId] = k.split("/");
      const account = (await shard.account(partnerId, accountId))!;
      assert.equal(s.sumBalance, account.balance, `${k}: entries add up to the balance`);
      assert.equal(s.sumHeld, account.held, `${k}: held changes add up to held`);
    }
    assert.ok(transfers > 20 && expiries > 0, `transfers ${transfers}, expiries ${expiries}`);
    for (const code of ["ok", "insufficient_funds", "linked_failed", "id_reused", "hold_not_found", "account_frozen"]) {
      assert.ok(codes.has(code), `the workload produces ${code}`);
    }
    await shard.close();
  });

  test("each event's account states equal an engine's that applied the commands one unit at a time", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    const batches = [...workloadOpenings(), ...randomWorkload(9, 300)];
    await submitWorkload(shard, batches);
    const events = deriveEvents(journal.records, 3, SIZES);
    const oracle = new Engine(SIZES);
    let next = 0;
    let compared = 0;
    for (const batch of batches) {
      const units = batch.atomic ? [batch.commands] : batch.commands.map((command) => [command]);
      for (const unit of units) {
        const unitEvents = events.slice(next, next + unit.length);
        next += unit.length;
        oracle.execute(unit, { atomic: batch.atomic, timeMs: unitEvents[0].timeMs });
        const last = new Map(unitEvents.flatMap((event) => event.accounts).map((change) => [key(change.partnerId, change.accountId), change]));
        for (const change of last.values()) {
          const account = oracle.account(change.partnerId, change.accountId)!;
          const { balance, held, available, overdraftLimit, status, currency } = account;
          assert.deepEqual(
            { balance: change.balance, held: change.held, available: change.available, overdraftLimit: change.overdraftLimit, status: change.status, currency: change.currency },
            { balance, held, available, overdraftLimit, status, currency },
            `${unitEvents[0].eventId} ${key(change.partnerId, change.accountId)}`,
          );
          compared++;
        }
      }
    }
    assert.equal(next, events.length);
    assert.ok(compared > 500, `${compared} account states compared`);
    await shard.close();
  });

  test("a follower restored from a snapshot derives the same events after it", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(11, 150)]);
    await shard.takeSnapshot();
    const at = shard.lastSequence;
    await submitWorkload(shard, randomWorkload(12, 150, "x"));
    const all = deriveEvents(journal.records, 3, SIZES);
    const [sequence] = await snapshots.list();
    assert.equal(sequence, at);
    const fromSnapshot = deriveEvents(journal.records, 3, SIZES, Engine.restore(await snapshots.load(sequence), SIZES));
    assert.deepEqual(fromSnapshot, all.slice(at));
    await shard.close();
  });

  test("records every sink already has are replayed without events, and the events after them are the same", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(13, 200)]);
    const all = deriveEvents(journal.records, 3, SIZES);
    const half = Math.floor(journal.records.length / 2);
    const deriver = new EventDeriver(new Engine(SIZES), 3);
    for (const record of journal.records.slice(0, half)) deriver.replay(record);
    const replayed = deriver.engine.lastSequence;
    assert.ok(replayed > 100, `a large enough prefix (${replayed})`);
    const events: typeof all = [];
    for (const record of journal.records.slice(half)) deriver.apply(record, events);
    assert.deepEqual(events, all.slice(replayed));
    assert.equal(deriver.engine.stateHash(), await shard.stateHash());
    await shard.close();
  });
});

describe("relay", () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

  test("every sink gets every event in order, across outages, a stuck delivery, lost acks and a relay restart", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    const steady = new MemorySink("steady");
    const flaky = new MemorySink("flaky");
    const relayOptions = {
      ...SIZES, shard: 3, sinks: [steady, flaky], snapshots, sleep, retryMs: 2, deliverEventsMax: 50, deliverTimeoutMs: 50,
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    };
    let relay = await Relay.start(relayOptions);
    await submitWorkload(shard, workloadOpenings());
    flaky.failNext = 3;
    flaky.hangNext = 1;
    const first = submitWorkload(shard, randomWorkload(21, 100));
    await sleep(5);
    flaky.loseAckNext = 2;
    await first;
    await relay.caughtUp(shard.lastSequence);
    const status = relay.status();
    assert.equal(status[1].failures, 6, "3 outages, 1 delivery that never settled, 2 lost acknowledgements");
    assert.equal(status[1].cursor, shard.lastSequence);
    assert.equal(status[0].lagEvents, 0);
    await relay.stop();
    // A snapshot, more commands, and a new relay: it starts from the snapshot and resumes at the cursors.
    await shard.takeSnapshot();
    await submitWorkload(shard, randomWorkload(22, 100, "y"));
    relay = await Relay.start(relayOptions);
    await relay.caughtUp(shard.lastSequence);
    await relay.stop();
    const expected = deriveEvents(journal.records, 3, SIZES).map((event) => event.eventId);
    assert.deepEqual(steady.received.map((event) => event.eventId), expected, "exactly once, in order");
    const seen = new Set<string>();
    let previous = 0;
    for (const event of flaky.received) {
      assert.ok(event.seq <= previous + 1, `no gap before ${event.eventId}`);
      previous = Math.max(previous, event.seq);
      seen.add(event.eventId);
    }
    assert.deepEqual([...seen], expected, "every event at least once, in order");
    await shard.close();
  });

  test("stop() while a rewind opens its new tail: it resolves, and every tail the relay opened is closed", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    const sink = new MemorySink();
    let releaseOpen!: () => void;
    const openHeld = new Promise<void>((resolve) => (releaseOpen = resolve));
    let rewinding!: () => void;
    const inRewind = new Promise<void>((resolve) => (rewinding = resolve));
    const tails: { tail: MemoryJournalTail; closed: boolean }[] = [];
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots, sleep, retryMs: 1,
      openTail: async (after: number) => {
        if (tails.length === 1) {
          rewinding();
          await openHeld;
        }
        const tail = new MemoryJournalTail(journal, after);
        const entry = { tail, closed: false };
        const close = tail.close.bind(tail);
        tail.close = async () => {
          entry.closed = true;
          await close();
        };
        tails.push(entry);
        return tail;
      },
    });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(51, 50)]);
    await relay.caughtUp(shard.lastSequence);
    sink.cursors.set(3, shard.lastSequence - 10); // the sink lost its last 10 events: the next delivery rewinds
    await submitWorkload(shard, randomWorkload(52, 3, "v"));
    await inRewind;
    const stopped = relay.stop();
    releaseOpen();
    const outcome = await Promise.race([stopped.then(() => "stopped"), sleep(5000).then(() => "hung")]);
    await shard.close();
    assert.equal(outcome, "stopped");
    assert.equal(tails.length, 2);
    assert.deepEqual(tails.map((entry) => entry.closed), [true, true]);
  });

  test("a sink that loses acknowledged events (its cursor goes back) gets them again: the follower rewinds", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    const sink = new MemorySink();
    const lines: string[] = [];
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots, sleep, retryMs: 1, log: (line) => lines.push(line),
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(51, 100)]);
    await relay.caughtUp(shard.lastSequence);
    const lost = shard.lastSequence - 40;
    sink.cursors.set(3, lost); // a crash of the sink's store dropped its last 40 events
    await submitWorkload(shard, randomWorkload(52, 20, "v"));
    await relay.caughtUp(shard.lastSequence);
    await relay.stop();
    assert.ok(lines.some((line) => line.includes(`sink memory is at ${lost}`) && line.includes("follower back at 0")), lines.join("\n"));
    const after = sink.received.slice(sink.received.findIndex((event, i) => i > 0 && event.seq <= sink.received[i - 1].seq));
    assert.deepEqual(after.map((event) => event.seq), Array.from({ length: shard.lastSequence - lost }, (_, i) => lost + 1 + i));
    assert.deepEqual(after, deriveEvents(journal.records, 3, SIZES).slice(lost), "the same events again, then the new ones");
    await shard.close();
  });

  test("a sink's AssertionError (a broken invariant) stops the relay for good instead of being retried forever", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    const broken = new MemorySink("broken");
    let deliveries = 0;
    broken.deliver = async () => {
      deliveries++;
      throw new AssertionError("a delivery of more events than the sink can take in one call");
    };
    const relay = await Relay.start({ ...SIZES, shard: 3, sinks: [broken], snapshots: new MemorySnapshotStore(), sleep, retryMs: 1, openTail: async (after: number) => new MemoryJournalTail(journal, after) });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(55, 5)]);
    const outcome = await Promise.race([relay.ended, sleep(5000).then(() => "still running")]);
    assert.ok(outcome instanceof AssertionError, `stopped for good with the sink's assertion (${String(outcome)})`);
    assert.equal(deliveries, 1, "not retried");
    assert.match(relay.status()[0].lastError ?? "", /more events than the sink can take/);
    await relay.stop();
  });

  test("ended: the error that stopped the relay for good (a rewind the journal no longer reaches), null after stop()", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    const sink = new MemorySink();
    let opens = 0;
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots, sleep, retryMs: 1,
      openTail: async (after: number) => {
        // The journal was compacted after the first open: a rewind to the start finds nothing to read.
        if (opens++ > 0) throw new JournalCorruptError("journal", 0, `the journal starts after ${after + 1}`);
        return new MemoryJournalTail(journal, after);
      },
    });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(53, 30)]);
    await relay.caughtUp(shard.lastSequence);
    sink.cursors.set(3, 0); // the sink lost everything; no snapshot to rewind to
    await submitWorkload(shard, randomWorkload(54, 3, "w"));
    const outcome = await Promise.race([relay.ended, sleep(5000).then(() => "still running")]);
    assert.ok(outcome instanceof JournalCorruptError, `stopped for good with the tail's error (${String(outcome)})`);
    assert.match(outcome.message, /the journal starts after 1/);
    await assert.rejects(relay.caughtUp(shard.lastSequence), /relay stopped/);
    await relay.stop();
    assert.equal(await relay.ended, outcome, "stop() after it changes nothing");

    const stopped = await Relay.start({
      ...SIZES, shard: 3, sinks: [new MemorySink()], snapshots, sleep,
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    });
    await stopped.caughtUp(shard.lastSequence);
    await stopped.stop();
    assert.equal(await stopped.ended, null, "a relay ended by stop() did not fail");
    await shard.close();
  });

  test("waits for its pace between journal records", async () => {
    const journal = new KeepingJournal();
    const shard = await openWorkloadShard(journal, { sizes: SIZES });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(41, 30)]);
    const sink = new MemorySink();
    let paces = 0;
    let open = (): void => {};
    let gate: Promise<void> | undefined = new Promise<void>((resolve) => (open = resolve));
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots: new MemorySnapshotStore(), sleep,
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
      pace: () => {
        paces++;
        return gate;
      },
    });
    await sleep(20);
    assert.equal(paces, 1, "held at the first record");
    assert.equal(sink.received.length, 0);
    gate = undefined;
    open();
    await relay.caughtUp(shard.lastSequence);
    await relay.stop();
    assert.equal(paces, journal.records.length, "once per record");
    assert.deepEqual(sink.received, deriveEvents(journal.records, 3, SIZES));
    await shard.close();
  });

  test("starts at the newest snapshot not after the slowest sink", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(31, 50)]);
    await shard.takeSnapshot();
    const snapshotAt = shard.lastSequence;
    await submitWorkload(shard, randomWorkload(32, 50, "z"));
    const sink = new MemorySink();
    sink.cursors.set(3, snapshotAt + 120);
    const lines: string[] = [];
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots, sleep, log: (line) => lines.push(line),
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    });
    await relay.caughtUp(shard.lastSequence);
    await relay.stop();
    assert.match(lines[0], new RegExp(`follower at ${snapshotAt}, sinks at ${snapshotAt + 120}`));
    assert.equal(lines.length, 1, `records up to the sink's cursor replayed without events, no rewind:\n${lines.join("\n")}`);
    assert.equal(sink.received[0].seq, snapshotAt + 121);
    assert.deepEqual(sink.received, deriveEvents(journal.records, 3, SIZES).slice(snapshotAt + 120));
    await shard.close();
  });

  /** A shard, a sink, the shard's and the relay's own snapshot stores, and relay options that record the floors. */
  async function withOwnSnapshots(snapshotEveryEvents?: number) {
    const journal = new KeepingJournal();
    const shardSnapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots: shardSnapshots });
    const sink = new MemorySink();
    const ownSnapshots = new MemorySnapshotStore();
    const floors: number[] = [];
    const lines: string[] = [];
    const options = {
      ...SIZES, shard: 3, sinks: [sink], snapshots: shardSnapshots, ownSnapshots, snapshotEveryEvents, sleep,
      saveJournalFloor: async (sequence: number) => void floors.push(sequence), log: (line: string) => lines.push(line),
      openTail: async (after: number) => new MemoryJournalTail(journal, after),
    };
    return { journal, shardSnapshots, shard, sink, ownSnapshots, floors, lines, options };
  }

  test("own snapshots: taken when the sinks have caught up, restarted from, and the journal floor follows them", async () => {
    const { journal, shard, sink, ownSnapshots, floors, lines, options } = await withOwnSnapshots(200);
    let relay = await Relay.start(options);
    await submitWorkload(shard, workloadOpenings());
    for (let round = 0; round < 4; round++) {
      await submitWorkload(shard, randomWorkload(41 + round, 80, `r${round}`));
      await relay.caughtUp(shard.lastSequence);
    }
    await relay.stop();
    const own = await ownSnapshots.list();
    assert.ok(own.length >= 2, `own snapshots taken (${own})`);
    assert.equal(floors[0], 0, "at start the floor is where the follower started");
    assert.equal(floors[floors.length - 1], Math.min(...own), "then the oldest own snapshot");
    for (const sequence of own) {
      assert.equal(Engine.restore(await ownSnapshots.load(sequence), SIZES).stateHash(), followerHashAt(journal, sequence));
    }
    relay = await Relay.start(options);
    await relay.stop();
    assert.match(lines[lines.length - 1], new RegExp(`follower at ${own[0]}, sinks at ${sink.cursors.get(3)}`));
    assert.deepEqual(sink.received.map((event) => event.seq), Array.from({ length: shard.lastSequence }, (_, i) => i + 1));
    await shard.close();
  });

  test("a restart from a shard snapshot keeps a copy of it among the own snapshots, so the floor never outlives it", async () => {
    const { journal, shardSnapshots, shard, ownSnapshots, floors, options } = await withOwnSnapshots();
    let relay = await Relay.start(options);
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(61, 60)]);
    await relay.caughtUp(shard.lastSequence);
    await relay.stop();
    await shard.takeSnapshot();
    const [shardSnapshot] = await shardSnapshots.list();
    assert.deepEqual(await ownSnapshots.list(), [], "no own snapshot yet (they come every 10M events)");
    relay = await Relay.start(options);
    await relay.stop();
    assert.equal(floors.at(-1), shardSnapshot, "the floor moved to the shard's snapshot");
    // The shard may now prune that snapshot: the relay's own copy is what a later start restores from.
    shardSnapshots.snapshots.clear();
    assert.deepEqual(await ownSnapshots.list(), [shardSnapshot]);
    relay = await Relay.start(options);
    await relay.stop();
    assert.equal(floors.at(-1), shardSnapshot);
    assert.equal(Engine.restore(await ownSnapshots.load(shardSnapshot), SIZES).stateHash(), followerHashAt(journal, shardSnapshot));
    await shard.close();
  });

  test("after a rewind, lag still counts from the journal's last sequence the relay knew, not from where the new tail starts", async () => {
    const journal = new KeepingJournal();
    const snapshots = new MemorySnapshotStore();
    const shard = await openWorkloadShard(journal, { sizes: SIZES, snapshots });
    const sink = new MemorySink();
    // A tail knows the journal up to what it has handed out (a file tail inside the newest segment), and the
    // rewind's tail is held before its first read: the catch-up of a long journal.
    const { openTail, inRewind, release } = heldRewindTails((after) => new HandedOutTail(journal, after));
    const relay = await Relay.start({ ...SIZES, shard: 3, sinks: [sink], snapshots, sleep, retryMs: 1, openTail });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(55, 100)]);
    await relay.caughtUp(shard.lastSequence);
    const lost = shard.lastSequence - 200;
    sink.cursors.set(3, lost); // the sink lost its last 200 events: the next delivery rewinds
    await submitWorkload(shard, randomWorkload(56, 3, "v"));
    await inRewind;
    const [status] = relay.status();
    assert.equal(status.cursor, lost);
    assert.equal(status.lagEvents, shard.lastSequence - lost, "the sink is this far behind the journal");
    release();
    await relay.caughtUp(shard.lastSequence);
    assert.equal(relay.status()[0].lagEvents, 0);
    await relay.stop();
    await shard.close();
  });

  test("a rewind moves the journal floor back to the snapshot it restarts from, so compaction keeps what it reads", async () => {
    // The shard compacts its journal to min(its oldest snapshot, the relay's floor), as the gateway's does.
    const journal = new MemoryJournal();
    const shardSnapshots = new MemorySnapshotStore();
    const floors: number[] = [];
    const shard = await Shard.open({
      ...SIZES, journal, snapshots: shardSnapshots, clock: workloadClock(), snapshotEveryCommands: 1e9, snapshotEveryMs: 1e12,
      journalFloor: async () => floors.at(-1) ?? 0,
    });
    const sink = new MemorySink();
    const { openTail, inRewind, release } = heldRewindTails((after) => new MemoryJournalTail(journal, after));
    const relay = await Relay.start({
      ...SIZES, shard: 3, sinks: [sink], snapshots: shardSnapshots, ownSnapshots: new NewestSnapshotStore(), snapshotEveryEvents: 200, sleep,
      retryMs: 1, saveJournalFloor: async (sequence: number) => void floors.push(sequence), openTail,
    });
    await submitWorkload(shard, [...workloadOpenings(), ...randomWorkload(57, 60)]);
    await relay.caughtUp(shard.lastSequence);
    await shard.takeSnapshot();
    const shardSnapshot = shard.lastSequence;
    // Own snapshots are taken as records arrive (every 200 events): the floor moves past the shard's snapshot.
    for (let round = 0; round < 20 && floors.at(-1)! <= shardSnapshot + 10; round++) {
      await submitWorkload(shard, randomWorkload(58 + 100 * round, 30, `v${round}`));
      await relay.caughtUp(shard.lastSequence);
    }
    assert.ok(floors.at(-1)! > shardSnapshot + 10, `own snapshots moved the floor past the shard's snapshot (${floors})`);
    sink.cursors.set(3, shardSnapshot + 10); // the sink lost what it had after this: the relay rewinds to the shard's snapshot
    await submitWorkload(shard, randomWorkload(59, 3, "w"));
    await inRewind;
    assert.equal(relay.appliedSequence, shardSnapshot, "the follower went back to the shard's snapshot");
    // Meanwhile the shard snapshots again, prunes its older snapshot and compacts to the relay's floor.
    shardSnapshots.snapshots.delete(shardSnapshot);
    await shard.takeSnapshot();
    release();
    const outcome = await Promise.race([relay.caughtUp(shard.lastSequence).then(() => "caught up"), relay.ended]);
    assert.equal(outcome, "caught up", `the catch-up found the journal after the snapshot (${String(outcome)})`);
    await relay.stop();
    const after = sink.received.slice(sink.received.findIndex((event, i) => i > 0 && event.seq <= sink.received[i - 1].seq));
    assert.deepEqual(after.map((event) => event.seq), Array.from({ length: shard.lastSequence - shardSnapshot - 10 }, (_, i) => shardSnapshot + 11 + i));
    await shard.close();
  });
});

/** The state hash of an engine that applied the journal up to `sequence`. */
/**
 * A relay's openTail over `open` whose every tail after the first (a rewind's) waits before its first read until
 * `release()`; `inRewind` resolves when such a tail is first read.
 */
function heldRewindTails(open: (after: number) => MemoryJournalTail) {
  let opens = 0;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let rewound!: () => void;
  const inRewind = new Promise<void>((resolve) => (rewound = resolve));
  const openTail = async (after: number) => {
    const tail = open(after);
    if (opens++ > 0) {
      const next = tail.next.bind(tail);
      tail.next = async () => {
        rewound();
        await held;
        return next();
      };
    }
    return tail;
  };
  return { openTail, inRewind, release };
}

function followerHashAt(journal: MemoryJournal, sequence: number): string {
  const engine = new Engine(SIZES);
  const deriver = new EventDeriver(engine, 3);
  for (const record of journal.records) {
    if (record.firstSequence + record.commandCount - 1 > sequence) break;
    deriver.apply(record, []);
  }
  assert.equal(engine.lastSequence, sequence, "own snapshots are taken at record boundaries");
  engine.ledger.observer = undefined;
  return engine.stateHash();
}

/** A MemoryJournalTail that knows the journal only up to what it has handed out, as a file tail inside the newest segment. */
class HandedOutTail extends MemoryJournalTail {
  private handedOut: number;

  constructor(journal: MemoryJournal, afterSequence: number) {
    super(journal, afterSequence);
    this.handedOut = afterSequence;
  }

  override async next() {
    const records = await super.next();
    const last = records?.at(-1);
    if (last !== undefined) this.handedOut = last.firstSequence + last.commandCount - 1;
    return records;
  }

  override lastSequence(): number {
    return this.handedOut;
  }
}

/** A MemorySnapshotStore that keeps only its newest snapshot, as a file store prunes its older ones. */
class NewestSnapshotStore extends MemorySnapshotStore {
  override async save(sequence: number, bytes: Uint8Array): Promise<void> {
    await super.save(sequence, bytes);
    const [newest] = await this.list();
    for (const kept of [...this.snapshots.keys()]) if (kept !== newest) this.snapshots.delete(kept);
  }
}
