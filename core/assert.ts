/**
 * Assertions for programmer errors: they stay on in production and crash loudly. Never catch them; a business
 * outcome is a result code and bad input is an InvalidCommandError, never an assertion.
 */

/** Thrown when an invariant does not hold. Its presence means a bug in hotledger, not in the caller's input. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Crash with `message` unless `condition` holds. */
export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
