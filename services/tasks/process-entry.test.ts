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

test("the shim's oom record is announced once per new count, before the exit; a restore adopts the count without announcing it", async () => {
  const oomDir = mkdtempSync(join(tmpdir(), "berth-process-entry-oom-"));
  const shim = spawn("/bin/sh", ["-c", "sleep 1000; :", "--state-dir", oomDir], { argv0: "berth-shim", stdio: "ignore" });
  try {
    writeFileSync(join(oomDir, "shim.pid"), String(shim.pid));
    await poll("the stand-in runs as a shim of the dir", () => inspectShimState(oomDir).state === "running");
    const writeRecord = (name: string, record: object) => {
      writeFileSync(join(oomDir, `${name}.tmp`), JSON.stringify(record));
      renameSync(join(oomDir, `${name}.tmp`), join(oomDir, name));
    };
    const entry = new ProcessEntry("init", oomDir, { stdin: "", stdout: "", stderr: "", terminal: false });
    entry.phase = "running";
    const announced: string[] = [];
    entry.watchExit(() => announced.push("exit"), () => announced.push("oom"));
    writeRecord("oom", { oomKills: 1, lastOomAt: "2026-11-30T05:26:13.164770693Z" });
    await poll("the first oom", () => announced.length === 1);
    // A rewrite with the same count (nothing new) is no second OOM; a higher count is.
    writeRecord("oom", { oomKills: 1, lastOomAt: "2026-11-30T05:26:13.164770693Z" });
    writeRecord("oom", { oomKills: 2, lastOomAt: "2026-11-30T05:26:14.000000000Z" });
    writeRecord("exit", { pid: 4242, exitStatus: 137, signal: 9, exitedAt: "2026-11-30T05:26:14.100000000Z" });
    await poll("the exit", () => announced.includes("exit"));
    assert.deepEqual(announced, ["oom", "oom", "exit"]);

    // A tasks service that restarts finds the record: its OOMs were announced before.
    const restored = new ProcessEntry("init", oomDir, { stdin: "", stdout: "", stderr: "", terminal: false });
    restored.adoptOomKills();
    const again: string[] = [];
    restored.watchExit(() => again.push("exit"), () => again.push("oom"));
    await poll("the restored exit", () => again.length > 0);
    assert.deepEqual(again, ["exit"]);
  } finally {
    shim.kill("SIGKILL");
    rmSync(oomDir, { recursive: true, force: true });
  }
});
