// The spec changes the tasks service makes, and the exit time conversion, on their own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { clampRlimits, hostHardLimits, parseJsonObject } from "./spec.ts";
import { timestampOfRfc3339 } from "./process-entry.ts";

test("rlimits above the host's hard limit are clamped, others kept", () => {
  const spec = {
    process: {
      rlimits: [
        { type: "RLIMIT_NOFILE", hard: 1 << 30, soft: 1 << 30 },
        { type: "RLIMIT_CORE", hard: 10, soft: 5 },
      ],
    },
  };
  clampRlimits(spec, new Map([["RLIMIT_NOFILE", 4096], ["RLIMIT_CORE", 100]]));
  assert.deepEqual(spec.process.rlimits, [
    { type: "RLIMIT_NOFILE", hard: 4096, soft: 4096 },
    { type: "RLIMIT_CORE", hard: 10, soft: 5 },
  ]);
});

test("the host's hard limits are read from /proc/self/limits", () => {
  const limits = hostHardLimits();
  const nofile = limits.get("RLIMIT_NOFILE");
  assert.ok(nofile !== undefined && nofile > 0, `RLIMIT_NOFILE: ${nofile}`);
});

test("a spec that is not a JSON object is refused by name", () => {
  assert.throws(() => parseJsonObject(Buffer.from("[1]"), "the spec"), /the spec must be a JSON object/);
  assert.throws(() => parseJsonObject(Buffer.from("{"), "the spec"), /the spec is not valid JSON/);
  assert.throws(() => parseJsonObject(undefined, "the spec"), /the spec is empty/);
});

test("the shim's exit time keeps its nanoseconds", () => {
  assert.deepEqual(timestampOfRfc3339("2026-11-30T05:26:13.164770693Z"), { seconds: BigInt(Date.parse("2026-11-30T05:26:13Z") / 1000), nanos: 164770693 });
  assert.deepEqual(timestampOfRfc3339("2026-11-30T05:26:13Z"), { seconds: BigInt(Date.parse("2026-11-30T05:26:13Z") / 1000), nanos: 0 });
});
