import { test, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeTree, smallTreeEntries } from "./remove-tree.ts";

const base = mkdtempSync(join(tmpdir(), "berth-remove-tree-"));
after(() => rmSync(base, { recursive: true, force: true }));

test("a small tree goes, as an overlay snapshot's (an unreadable work/work included), without following symlinks", async () => {
  const outside = join(base, "outside");
  writeFileSync(outside, "kept");
  const snapshot = join(base, "1");
  mkdirSync(join(snapshot, "fs", "etc"), { recursive: true });
  mkdirSync(join(snapshot, "work", "work"), { recursive: true });
  chmodSync(join(snapshot, "work", "work"), 0);
  writeFileSync(join(snapshot, "fs", "etc", "hostname"), "box");
  symlinkSync(outside, join(snapshot, "fs", "link"));
  symlinkSync(base, join(snapshot, "fs", "dirlink"));
  await removeTree(snapshot);
  assert.equal(existsSync(snapshot), false);
  assert.equal(readFileSync(outside, "utf8"), "kept", "the symlinks' targets stay");
});

test("a tree too large for the quick path goes too", async () => {
  const snapshot = join(base, "2");
  for (let d = 0; d < 4; d++) {
    mkdirSync(join(snapshot, "fs", `d${d}`), { recursive: true });
    for (let f = 0; f < smallTreeEntries; f++) writeFileSync(join(snapshot, "fs", `d${d}`, `f${f}`), "x");
  }
  await removeTree(snapshot);
  assert.equal(existsSync(snapshot), false);
});

test("a missing path is nothing to do; a file in its place goes", async () => {
  await removeTree(join(base, "never-made"));
  const file = join(base, "3");
  writeFileSync(file, "not a directory");
  await removeTree(file);
  assert.equal(existsSync(file), false);
});
