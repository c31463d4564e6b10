/**
 * Errors thrown at the core's edges. Business outcomes are result codes, never these; these mean the input could
 * not be represented (InvalidCommandError) or stored bytes are not a valid snapshot (SnapshotError).
 */

/** A command that cannot be sequenced: unknown type, bad identifier, wrong field type, bad group. Nothing applied. */
export class InvalidCommandError extends Error {
  override name = "InvalidCommandError";
  /** Where the problem is, e.g. `commands[3].accountId`. */
  readonly path: string;

  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.path = path;
  }
}

/** Bytes that are not a snapshot this version can restore: bad magic, version, checksum, length or contents. */
export class SnapshotError extends Error {
  override name = "SnapshotError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
