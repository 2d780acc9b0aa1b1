// A finished build's directory is moved to the trash in one rename, and removed from there
// with its context (one in memory is a link to a directory elsewhere); a trash entry left
// by a kill makes the next start look for leftovers (hasBuildDirs) and is listed for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildsDir, hasBuildDirs, listTrash, moveToTrash, newBuildDir } from "./work-dir.ts";
import { removeBuildDir } from "./in-flight.ts";

test("a finished build's directory goes to the trash whole, and from there with its in-memory context", (t) => {
  const root = mkdtempSync(join(tmpdir(), "berth-work-dir-"));
  const memory = mkdtempSync(join(tmpdir(), "berth-work-dir-memory-"));
  t.after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(memory, { recursive: true, force: true });
  });
  const { dir } = newBuildDir(root);
  const context = join(memory, "berth-build-context-x");
  mkdirSync(context);
  writeFileSync(join(context, "big.bin"), "data");
  symlinkSync(context, join(dir, "context"));
  mkdirSync(join(dir, "runc"));

  const moved = moveToTrash(root, dir);
  assert.ok(!existsSync(dir), "the builds' directory no longer has it");
  assert.deepEqual(listTrash(root), [moved]);
  assert.ok(hasBuildDirs(root), "a trash entry is a leftover the next start looks for");
  assert.ok(existsSync(join(moved, "context", "big.bin")), "the context is still reached through its link");

  removeBuildDir(moved);
  assert.deepEqual(listTrash(root), []);
  assert.ok(!existsSync(context), "the in-memory context went with it");
  assert.ok(!hasBuildDirs(root), "nothing left to recover");
  assert.ok(existsSync(buildsDir(root)));
});
