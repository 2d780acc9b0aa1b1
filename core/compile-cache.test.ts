// The compile cache's directory: per user, and refused unless only that user can write it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileCacheDir, compileCacheEnv, isPrivateDir } from "./compile-cache.ts";

const dir = mkdtempSync(join(tmpdir(), "berth-compile-cache-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("root caches under /var/cache/berth; others under $XDG_CACHE_HOME, else ~/.cache", () => {
  assert.equal(compileCacheDir(0, { XDG_CACHE_HOME: "/x", HOME: "/root" }), "/var/cache/berth/compile");
  assert.equal(compileCacheDir(1000, { XDG_CACHE_HOME: "/home/u/.c", HOME: "/home/u" }), "/home/u/.c/berth/compile");
  assert.equal(compileCacheDir(1000, { XDG_CACHE_HOME: "relative", HOME: "/home/u" }), "/home/u/.cache/berth/compile");
  assert.equal(compileCacheDir(1000, { HOME: "relative" }), undefined);
  assert.equal(compileCacheDir(1000, {}), undefined);
});

test("a missing directory is created 0700 and used", () => {
  const fresh = join(dir, "a", "b", "compile");
  assert.equal(isPrivateDir(fresh), true);
  assert.equal(statSync(fresh).mode & 0o777, 0o700);
});

test("a directory others can write to, or a symlink to one, is refused", () => {
  const open = join(dir, "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.equal(isPrivateDir(open), false);
  const groupWritable = join(dir, "group");
  mkdirSync(groupWritable);
  chmodSync(groupWritable, 0o770);
  assert.equal(isPrivateDir(groupWritable), false);
  const link = join(dir, "link");
  symlinkSync(join(dir, "a"), link);
  assert.equal(isPrivateDir(link), false);
});

test("child processes get the cache through NODE_COMPILE_CACHE only when the directory is private", () => {
  const own = join(dir, "for-children");
  assert.deepEqual(compileCacheEnv(own), { NODE_COMPILE_CACHE: own });
  const open = join(dir, "open-for-children");
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.deepEqual(compileCacheEnv(open), {});
  const link = join(dir, "link-for-children");
  symlinkSync(own, link);
  assert.deepEqual(compileCacheEnv(link), {});
});
