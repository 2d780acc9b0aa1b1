// HEALTHCHECK's options and forms, Go durations, and the ONBUILD/HEALTHCHECK parse-time
// refusals, without a daemon.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatGoDuration, healthcheckHistory, parseHealthcheck } from "./healthcheck.ts";
import { parseGoDuration } from "../../../core/go-duration.ts";
import { parseDockerfile } from "./dockerfile.ts";

const flags = (entries: Record<string, string>) => new Map(Object.entries(entries));

test("Go durations: parsed to nanoseconds and printed as Go prints them", () => {
  assert.equal(parseGoDuration("30s"), 30e9);
  assert.equal(parseGoDuration("1m30s"), 90e9);
  assert.equal(parseGoDuration("1.5h"), 5400e9);
  assert.equal(parseGoDuration("250ms"), 250e6);
  assert.equal(parseGoDuration("0"), 0);
  assert.equal(parseGoDuration("10"), undefined);
  assert.equal(parseGoDuration("abc"), undefined);
  assert.equal(parseGoDuration(""), undefined);
  assert.equal(formatGoDuration(0), "0s");
  assert.equal(formatGoDuration(300e9), "5m0s");
  assert.equal(formatGoDuration(3600e9), "1h0m0s");
  assert.equal(formatGoDuration(1.5e9), "1.5s");
  assert.equal(formatGoDuration(250e6), "250ms");
  assert.equal(formatGoDuration(1500), "1.5µs");
  assert.equal(formatGoDuration(3723e9 + 5e8), "1h2m3.5s");
});

test("HEALTHCHECK: CMD exec and shell forms, options in nanoseconds, NONE", () => {
  assert.deepEqual(parseHealthcheck('CMD ["curl", "-f", "http://x/"]', flags({})), { Test: ["CMD", "curl", "-f", "http://x/"] });
  assert.deepEqual(parseHealthcheck("cmd curl -f http://x/ || exit 1", flags({ interval: "5m", timeout: "3s", "start-period": "1m30s", retries: "4" })), {
    Test: ["CMD-SHELL", "curl -f http://x/ || exit 1"],
    Interval: 300e9,
    Timeout: 3e9,
    StartPeriod: 90e9,
    Retries: 4,
  });
  assert.deepEqual(parseHealthcheck("NONE", flags({})), { Test: ["NONE"] });
  // Zero options are left out, as Go's omitempty does.
  assert.deepEqual(parseHealthcheck("CMD true", flags({ interval: "0s" })), { Test: ["CMD-SHELL", "true"] });
});

test("HEALTHCHECK's history text is Go's %q of the struct", () => {
  assert.equal(healthcheckHistory({ Test: ["CMD-SHELL", "curl -f x"], Interval: 300e9, Timeout: 3e9, Retries: 3 }), 'HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "5m0s" "3s" "0s" \'\\x03\'}');
  assert.equal(healthcheckHistory({ Test: ["NONE"] }), 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}');
});

test("bad HEALTHCHECKs are parse errors naming the line", () => {
  const bad: [string, RegExp][] = [
    ["HEALTHCHECK --interval=abc CMD true", /line 2: HEALTHCHECK --interval: time: invalid duration "abc"/],
    ["HEALTHCHECK --timeout=10 CMD true", /line 2: HEALTHCHECK --timeout: time: invalid duration "10"/],
    ["HEALTHCHECK --interval=10us CMD true", /line 2: HEALTHCHECK --interval: "10us" cannot be less than 1ms/],
    ["HEALTHCHECK --retries=0 CMD true", /line 2: --retries must be at least 1 \(not 0\)/],
    ["HEALTHCHECK --retries=x CMD true", /line 2: HEALTHCHECK --retries: invalid number "x"/],
    ["HEALTHCHECK --bogus=1 CMD true", /line 2: Unknown flag: bogus/],
    ["HEALTHCHECK NONE extra", /line 2: HEALTHCHECK NONE takes no arguments/],
    ["HEALTHCHECK --interval=5s NONE", /line 2: HEALTHCHECK NONE takes no arguments/],
    ["HEALTHCHECK RUN true", /line 2: Unknown type "RUN" in HEALTHCHECK \(try CMD\)/],
    ["HEALTHCHECK CMD", /line 2: Missing command after HEALTHCHECK CMD/],
  ];
  for (const [line, expected] of bad) assert.throws(() => parseDockerfile(`FROM x\n${line}\n`), expected, line);
});

test("ONBUILD: the trigger is kept as written; chaining, FROM, MAINTAINER and unknown triggers refused", () => {
  const file = parseDockerfile("FROM x\nONBUILD RUN echo $HOME > /f\nonbuild copy a /b\n");
  assert.equal(file.instructions[1]!.args, "RUN echo $HOME > /f");
  assert.equal(file.instructions[2]!.args, "copy a /b");
  assert.throws(() => parseDockerfile("FROM x\nONBUILD ONBUILD RUN true\n"), /line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed/);
  assert.throws(() => parseDockerfile("FROM x\nONBUILD from y\n"), /line 2: FROM isn't allowed as an ONBUILD trigger/);
  assert.throws(() => parseDockerfile("FROM x\n\nONBUILD MAINTAINER me\n"), /line 3: MAINTAINER isn't allowed as an ONBUILD trigger/);
  assert.throws(() => parseDockerfile("FROM x\nONBUILD FROBNICATE y\n"), /line 2: unknown instruction: FROBNICATE/);
});
