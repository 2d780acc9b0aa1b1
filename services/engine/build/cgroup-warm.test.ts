// cgroup-warm.ts: which cgroup.procs file a process writes its own pid into (from
// /proc/self/cgroup texts of v1, hybrid and v2 hosts), and, on this host, that warming
// writes there while it runs and moves the process nowhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { ownCgroupProcs, warmCgroupLock } from "./cgroup-warm.ts";

const hybrid = "9:name=systemd:/\n8:pids:/x/y\n4:memory:/\n0::/\n";

test("the first hierarchy whose cgroup.procs exists, with the process's own path in it", () => {
  const present = (paths: string[]) => (path: string) => paths.includes(path);
  assert.equal(ownCgroupProcs(hybrid, present(["/sys/fs/cgroup/pids/x/y/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs"])), "/sys/fs/cgroup/pids/x/y/cgroup.procs");
  assert.equal(ownCgroupProcs(hybrid, present(["/sys/fs/cgroup/systemd/cgroup.procs"])), "/sys/fs/cgroup/systemd/cgroup.procs");
  // v2 only, mounted at /sys/fs/cgroup or (hybrid) at /sys/fs/cgroup/unified.
  assert.equal(ownCgroupProcs("0::/user.slice/a\n", present(["/sys/fs/cgroup/user.slice/a/cgroup.procs"])), "/sys/fs/cgroup/user.slice/a/cgroup.procs");
  assert.equal(ownCgroupProcs(hybrid, present(["/sys/fs/cgroup/unified/cgroup.procs"])), "/sys/fs/cgroup/unified/cgroup.procs");
  // Combined controllers are one mount.
  assert.equal(ownCgroupProcs("3:cpu,cpuacct:/k\n", present(["/sys/fs/cgroup/cpu,cpuacct/k/cgroup.procs"])), "/sys/fs/cgroup/cpu,cpuacct/k/cgroup.procs");
});

test("no cgroup file to write (none mounted, or an unreadable line): none is named", () => {
  assert.equal(ownCgroupProcs(hybrid, () => false), undefined);
  assert.equal(ownCgroupProcs("", () => true), undefined);
  assert.equal(ownCgroupProcs("not a cgroup line\n", () => true), undefined);
});

/** write(2) calls this process has made (/proc/self/io). */
const writes = () => Number(/^syscw: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"))![1]);

test("warming writes this process's pid into its own cgroup again and again, and moves it nowhere", async () => {
  const before = readFileSync("/proc/self/cgroup", "utf8");
  const start = writes();
  const stop = warmCgroupLock();
  try {
    for (let polls = 0; polls < 5000 && writes() - start < 3; polls++) await sleep(2);
  } finally {
    stop();
  }
  assert.ok(writes() - start >= 3, "warming wrote");
  assert.equal(readFileSync("/proc/self/cgroup", "utf8"), before);
});
