// ProcessEntry.noticeExit: berthd answers Wait from the shim's exit file, so the tasks
// process can be asked to Delete before its watch has delivered that file. noticeExit
// must take the recorded exit at once and announce it exactly once (the watch's later
// delivery adds nothing). A stand-in for the shim: a live process whose command line
// names berth-shim and the state dir, as the starter checks (shim/client.ts isShimOf).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessEntry } from "./process-entry.ts";
import { inspectShimState } from "../../shim/client.ts";

const dir = mkdtempSync(join(tmpdir(), "berth-process-entry-"));
let standIn: ChildProcess | undefined;

after(() => {
  standIn?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const poll = async (what: string, check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  assert.ok(check(), `timed out waiting for ${what}`);
};

test("noticeExit takes an exit file the watch has not delivered yet, and the exit is announced once", async () => {
  // dash keeps running `sleep; :` itself, so its command line stays the one given here.
  standIn = spawn("/bin/sh", ["-c", "sleep 1000; :", "--state-dir", dir], { argv0: "berth-shim", stdio: "ignore" });
  writeFileSync(join(dir, "shim.pid"), String(standIn.pid));
  await poll("the stand-in runs as a shim of the dir", () => inspectShimState(dir).state === "running");

  const entry = new ProcessEntry("init", dir, { stdin: "", stdout: "", stderr: "", terminal: false });
  entry.phase = "running";
  const announced: number[] = [];
  entry.watchExit((exit) => announced.push(exit.exitStatus));
  assert.equal(entry.noticeExit(), false, "no exit recorded yet");

  const record = { pid: 4242, exitStatus: 137, signal: 9, exitedAt: "2026-11-30T05:26:13.164770693Z" };
  writeFileSync(join(dir, "exit.tmp"), JSON.stringify(record));
  renameSync(join(dir, "exit.tmp"), join(dir, "exit"));
  // Synchronously after the rename: the watch's event cannot have been delivered.
  assert.equal(entry.noticeExit(), true);
  assert.deepEqual(entry.exit, record);
  assert.deepEqual(announced, [137], "announced as the watch would");
  assert.deepEqual(await entry.exited, record);

  // The watch's events and the stand-in's end come later and change nothing.
  standIn.kill("SIGKILL");
  await poll("the stand-in is gone", () => inspectShimState(dir).state !== "running");
  assert.deepEqual(announced, [137]);
  assert.equal(JSON.parse(readFileSync(join(dir, "exit"), "utf8")).exitStatus, 137);
});
