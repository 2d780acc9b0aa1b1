// since/until as the events endpoint reads them: what the CLI sends (seconds, seconds.nanos)
// and what other clients send (RFC 3339, durations); anything else is a 400.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EngineError } from "../http.ts";
import { eventTime } from "./events.ts";

test("Unix seconds and seconds.nanoseconds", () => {
  assert.equal(eventTime("1795840800", "since"), 1795840800_000_000_000n);
  assert.equal(eventTime("1795840800.500000000", "since"), 1795840800_500_000_000n);
  assert.equal(eventTime("1795840800.5", "since"), 1795840800_500_000_000n);
  assert.equal(eventTime(null, "since"), undefined);
  assert.equal(eventTime("", "since"), undefined);
});

test("RFC 3339 times and durations back from now", () => {
  assert.equal(eventTime("2026-01-01T00:00:00Z", "until"), BigInt(Date.parse("2026-01-01T00:00:00Z")) * 1_000_000n);
  const now = Date.parse("2026-06-01T12:00:00Z");
  assert.equal(eventTime("1h30m", "since", now), BigInt(now - 90 * 60_000) * 1_000_000n);
});

test("anything else is a 400 naming the parameter", () => {
  assert.throws(
    () => eventTime("yesterday", "since"),
    (err: unknown) => err instanceof EngineError && err.status === 400 && err.message.startsWith("invalid value for since"),
  );
});
