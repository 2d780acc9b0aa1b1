// The build cache's usage counts: kept across an engine restart in one crash-safely
// written file, forgotten for entries that are gone, an unreadable file starting afresh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CacheUsage } from "./cache-usage.ts";
import type { Backend } from "../backend.ts";

/** The parts of a Backend the usage record reads: its root, its close hooks, its log. */
function engine(root: string) {
  const closers: (() => void)[] = [];
  const warnings: string[] = [];
  const backend = { options: { root }, onClose: (fn: () => void) => closers.push(fn), log: { warn: (_o: unknown, msg: string) => warnings.push(msg) } } as unknown as Backend;
  return { backend, close: () => closers.forEach((fn) => fn()), warnings };
}

test("counts survive a restart; entries that are gone are forgotten; a bad file starts afresh", () => {
  const root = mkdtempSync(join(tmpdir(), "berth-cache-usage-"));
  try {
    const first = engine(root);
    const usage = new CacheUsage(first.backend);
    usage.record("sha256:a", 1000);
    usage.record("sha256:a", 2000);
    usage.record("sha256:b", 1500);
    first.close();
    const file = join(root, "build-cache-usage.json");
    assert.equal(existsSync(`${file}.tmp`), false);

    const second = engine(root);
    const again = new CacheUsage(second.backend);
    assert.deepEqual(again.get("sha256:a"), { lastUsed: 2000, count: 2 });
    again.retain(new Set(["sha256:a"]));
    again.flush();
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(file, "utf8"))), ["sha256:a"]);

    writeFileSync(file, "{not json");
    const third = engine(root);
    assert.equal(new CacheUsage(third.backend).get("sha256:a"), undefined);
    assert.match(third.warnings[0]!, /unreadable; starting afresh/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
