// Proves that core/codes.ts and the .proto contract agree: for every wire number, the string core shows users is
// the proto enum value's name without its prefix (RESULT_CODE_INSUFFICIENT_FUNDS <-> "insufficient_funds",
// COMMAND_TYPE_SET_OVERDRAFT_LIMIT <-> "setOverdraftLimit"), and the numeric tables match the string tables.
// It reads the enums from the generated descriptors, so an edit to either side without the other fails here.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { DescEnum } from "@bufbuild/protobuf";
import {
  ACCOUNT_STATUSES,
  COMMAND_TYPES,
  Code,
  RESULT_CODES,
  Status,
  Type,
} from "./codes.ts";
import {
  AccountStatusSchema,
  CommandTypeSchema,
  ResultCodeSchema,
} from "./gen/hotledger/v1/ledger_pb.ts";

/** "SET_OVERDRAFT_LIMIT" -> "setOverdraftLimit". */
function snakeToCamel(name: string): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}

/**
 * The names core should use for `schema`, indexed by wire number: each value's name with `prefix` removed,
 * passed through `convert`. Asserts the numbers are dense from 0, as core's index-equals-number tables need.
 */
function namesByNumber(schema: DescEnum, prefix: string, convert: (name: string) => string): string[] {
  const names: string[] = [];
  for (const value of schema.values) {
    assert.ok(value.name.startsWith(prefix), `${value.name} starts with ${prefix}`);
    assert.equal(names[value.number], undefined, `${schema.typeName} number ${value.number} is used once`);
    names[value.number] = convert(value.name.slice(prefix.length));
  }
  assert.equal(names.length, schema.values.length, `${schema.typeName} numbers are 0..n-1 without gaps`);
  return names;
}

describe("core/codes.ts agrees with ledger.proto", () => {
  test("RESULT_CODES[i] is ResultCode i without RESULT_CODE_, lowercased", () => {
    const expected = namesByNumber(ResultCodeSchema, "RESULT_CODE_", (name) => name.toLowerCase());
    assert.deepEqual([...RESULT_CODES], expected);
  });

  test("COMMAND_TYPES[i] is CommandType i without COMMAND_TYPE_, in camelCase", () => {
    const expected = namesByNumber(CommandTypeSchema, "COMMAND_TYPE_", snakeToCamel);
    assert.deepEqual([...COMMAND_TYPES], expected);
  });

  test("ACCOUNT_STATUSES[i] is AccountStatus i without ACCOUNT_STATUS_, lowercased", () => {
    const expected = namesByNumber(AccountStatusSchema, "ACCOUNT_STATUS_", (name) => name.toLowerCase());
    assert.deepEqual([...ACCOUNT_STATUSES], expected);
  });

  test("the numeric tables Code, Type and Status match the string tables", () => {
    assert.deepEqual(
      Object.entries(Code),
      RESULT_CODES.map((name, index) => [name, index]),
    );
    assert.deepEqual(
      Object.entries(Type),
      COMMAND_TYPES.slice(1).map((name, index) => [name, index + 1]),
    );
    assert.deepEqual(
      Object.entries(Status),
      ACCOUNT_STATUSES.map((name, index) => [name, index]),
    );
  });
});
