/**
 * Caller authentication for every transport: API keys, stored only as SHA-256 hashes and looked up by the hash.
 * A partner key may act only on its own partner; an internal key (service to service) may act on any partner and
 * call admin routes. A partner may have two keys at once, so a key can be rotated without downtime.
 */
import { hash } from "node:crypto";

/** Who a key belongs to. */
export type Principal = { kind: "partner"; partnerId: string } | { kind: "internal"; name: string };

/** One configured key: its SHA-256 hash (hex), never the key itself. */
export interface KeyConfig {
  sha256: string;
  partnerId?: string;
  internal?: string;
}

/** Most keys per partner (the current one and the next, during a rotation). */
export const KEYS_PER_PARTNER_MAX = 2;

/** The hex SHA-256 of a key, as stored in configuration. */
export function hashKey(key: string): string {
  return hash("sha256", key, "hex");
}

/**
 * The configured keys; `authenticate` turns a bearer key into a principal with one SHA-256 and one Map lookup,
 * whatever the number of partners. The lookup's timing depends only on the key's hash, never on the key, and
 * what it could leak about a hash does not help anyone find a key (that takes a SHA-256 preimage), so no
 * constant-time comparison against every entry is needed (that was O(keys) per request: thousands of partners).
 */
export class KeyRing {
  private readonly principals = new Map<string, Principal>();

  constructor(keys: readonly KeyConfig[]) {
    const perPartner = new Map<string, number>();
    for (const [i, key] of keys.entries()) {
      if (!/^[0-9a-f]{64}$/.test(key.sha256)) throw new RangeError(`keys[${i}].sha256 must be 64 lowercase hex digits`);
      if ((key.partnerId === undefined) === (key.internal === undefined)) {
        throw new RangeError(`keys[${i}] must have exactly one of partnerId and internal`);
      }
      if (this.principals.has(key.sha256)) throw new RangeError(`keys[${i}].sha256 repeats an earlier key's hash`);
      if (key.partnerId !== undefined) {
        const count = (perPartner.get(key.partnerId) ?? 0) + 1;
        if (count > KEYS_PER_PARTNER_MAX) throw new RangeError(`partner ${key.partnerId} has more than ${KEYS_PER_PARTNER_MAX} keys`);
        perPartner.set(key.partnerId, count);
      }
      const principal: Principal =
        key.partnerId !== undefined ? { kind: "partner", partnerId: key.partnerId } : { kind: "internal", name: key.internal as string };
      this.principals.set(key.sha256, principal);
    }
  }

  /** The principal of `key`, or undefined. */
  authenticate(key: string): Principal | undefined {
    return this.principals.get(hashKey(key));
  }
}

const WHITESPACE = /\s/;

/**
 * The key of an `Authorization: Bearer <key>` header value (the key has no whitespace), or undefined. The scheme is
 * case-insensitive (RFC 7235 2.1: `bearer <key>` is the same); one space, then the key. String checks: the
 * equivalent regex showed in the gateway's profiles.
 */
export function bearerKey(header: string): string | undefined {
  if (!header.startsWith("Bearer ") && header.slice(0, 7).toLowerCase() !== "bearer ") return undefined;
  const key = header.slice(7);
  return key === "" || WHITESPACE.test(key) ? undefined : key;
}

/** Whether `principal` may act on `partnerId`. */
export function mayActOn(principal: Principal, partnerId: string): boolean {
  return principal.kind === "internal" || principal.partnerId === partnerId;
}
