// npm test: runs every *.test.ts under core/, services/, cmd/, native/, shim/ and test/ with Node's
// test runner against the built bundles (npm test builds first).
import { spawnSync } from "node:child_process";
import { globSync } from "node:fs";
import { hostInventory, leftoversSince } from "./host-leftovers.ts";

const root = new URL("..", import.meta.url).pathname;
const files = globSync(["core/**/*.test.ts", "services/**/*.test.ts", "cmd/**/*.test.ts", "native/**/*.test.ts", "shim/**/*.test.ts", "test/**/*.test.ts"], { cwd: root }).sort();
const filter = process.argv.slice(2);
const selected = filter.length ? files.filter((f) => filter.some((x) => f.includes(x))) : files;
if (selected.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
// The whole suite (CI's run) also fails when it left anything on the host
// (scripts/host-leftovers.ts); BERTH_TEST_LEFTOVERS=1 checks a filtered run too, =0 never.
const checkLeftovers = process.env.BERTH_TEST_LEFTOVERS ? process.env.BERTH_TEST_LEFTOVERS === "1" : filter.length === 0;
const before = checkLeftovers ? hostInventory() : undefined;
const result = spawnSync(process.execPath, ["--test", "--test-concurrency=2", "--test-timeout=300000", ...selected], { cwd: root, stdio: "inherit" });
if (before && result.status === 0) {
  const leftovers = await leftoversSince(before);
  if (leftovers.length > 0) {
    console.error(`\nthe tests passed but left this on the host (each test must remove what it made):\n${leftovers.map((l) => `  ${l}`).join("\n")}`);
    process.exit(1);
  }
}
process.exit(result.status ?? 1);
