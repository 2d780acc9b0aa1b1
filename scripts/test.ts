// npm test: runs every *.test.ts under core/, services/, cmd/, native/, shim/ and test/ with Node's
// test runner against the built bundles (npm test builds first).
import { spawnSync } from "node:child_process";
import { globSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const files = globSync(["core/**/*.test.ts", "services/**/*.test.ts", "cmd/**/*.test.ts", "native/**/*.test.ts", "shim/**/*.test.ts", "test/**/*.test.ts"], { cwd: root }).sort();
const filter = process.argv.slice(2);
const selected = filter.length ? files.filter((f) => filter.some((x) => f.includes(x))) : files;
if (selected.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", "--test-concurrency=2", "--test-timeout=300000", ...selected], { cwd: root, stdio: "inherit" });
process.exit(result.status ?? 1);
