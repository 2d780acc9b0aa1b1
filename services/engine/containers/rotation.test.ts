// rotate() on its own: the files shift and the log path exists again at once, even when
// the shim never reads the reopen command (its container ended just then).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rotate } from "./rotation.ts";

test("rotation shifts the generations and leaves a fresh, empty log in place before the shim reopens it", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-rotation-"));
  // The control FIFO with a reader that never reads: a shim about to exit.
  execFileSync("mkfifo", [join(dir, "control")]);
  const reader = openSync(join(dir, "control"), constants.O_RDONLY | constants.O_NONBLOCK);
  t.after(() => {
    closeSync(reader);
    rmSync(dir, { recursive: true, force: true });
  });
  const log = join(dir, "c-json.log");
  writeFileSync(log, "newest\n");
  writeFileSync(`${log}.1`, "older\n");
  writeFileSync(`${log}.2`, "oldest\n");

  assert.equal(rotate(log, 3, dir), true);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith("c-json.log")).sort(), ["c-json.log", "c-json.log.1", "c-json.log.2"]);
  assert.equal(statSync(log).size, 0);
  assert.equal(statSync(log).mode & 0o777, 0o640);
  assert.equal(readFileSync(`${log}.1`, "utf8"), "newest\n");
  assert.equal(readFileSync(`${log}.2`, "utf8"), "older\n");
});

test("with no shim listening, nothing is rotated", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "berth-rotation-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, "c-json.log");
  writeFileSync(log, "kept\n");
  assert.equal(rotate(log, 3, dir), false);
  assert.deepEqual(readdirSync(dir), ["c-json.log"]);
});
