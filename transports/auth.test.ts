// Proves key authentication: keys are matched by their SHA-256 only (one lookup, however many keys), a partner key maps to its partner and an
// internal key to any partner, two keys per partner work at once (rotation), and bad key configuration is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bearerKey, hashKey, KeyRing, mayActOn } from "./auth.ts";

test("partner keys, internal keys, rotation, unknown keys", () => {
  const ring = new KeyRing([
    { sha256: hashKey("old-key-of-shop"), partnerId: "shop" },
    { sha256: hashKey("new-key-of-shop"), partnerId: "shop" },
    { sha256: hashKey("key-of-bank"), partnerId: "bank" },
    { sha256: hashKey("payments-service"), internal: "payments" },
  ]);
  assert.deepEqual(ring.authenticate("old-key-of-shop"), { kind: "partner", partnerId: "shop" });
  assert.deepEqual(ring.authenticate("new-key-of-shop"), { kind: "partner", partnerId: "shop" });
  const bank = ring.authenticate("key-of-bank");
  assert.ok(bank !== undefined && mayActOn(bank, "bank") && !mayActOn(bank, "shop"));
  const internal = ring.authenticate("payments-service");
  assert.ok(internal !== undefined && mayActOn(internal, "shop") && mayActOn(internal, "bank"));
  assert.equal(ring.authenticate("guess"), undefined);
  assert.equal(ring.authenticate(""), undefined);
  assert.equal(hashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

test("bad key configuration is refused", () => {
  assert.throws(() => new KeyRing([{ sha256: "xyz", partnerId: "p" }]), /64 lowercase hex/);
  assert.throws(() => new KeyRing([{ sha256: hashKey("k") }]), /exactly one of/);
  const three = ["a", "b", "c"].map((k) => ({ sha256: hashKey(k), partnerId: "p" }));
  assert.throws(() => new KeyRing(three), /more than 2 keys/);
  const repeated = [{ sha256: hashKey("k"), partnerId: "p" }, { sha256: hashKey("k"), internal: "ops" }];
  assert.throws(() => new KeyRing(repeated), /repeats an earlier key's hash/);
});

test("thousands of partners: each key still finds its own partner", () => {
  const keys = Array.from({ length: 5000 }, (_, i) => ({ sha256: hashKey(`key-${i}`), partnerId: `partner-${i}` }));
  const ring = new KeyRing(keys);
  for (const i of [0, 1, 2500, 4999]) assert.deepEqual(ring.authenticate(`key-${i}`), { kind: "partner", partnerId: `partner-${i}` });
  assert.equal(ring.authenticate("key-5000"), undefined);
});

test("bearerKey: the key of 'Bearer <key>' (the scheme in any case), nothing else", () => {
  assert.equal(bearerKey("Bearer abc-123"), "abc-123");
  assert.equal(bearerKey("bearer abc-123"), "abc-123");
  assert.equal(bearerKey("BEARER abc-123"), "abc-123");
  for (const header of ["", "Bearer", "Bearer ", "bearer ", "Basic abc", "Bearer  abc", "Bearer abc def", "Bearer abc\t", "Token abc", "Bearerabc"]) {
    assert.equal(bearerKey(header), undefined, JSON.stringify(header));
  }
});
