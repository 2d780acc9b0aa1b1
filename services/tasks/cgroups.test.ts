// Cgroup layout detection from mount tables, and metrics read from real cgroups: the v1
// hierarchies of this host and, for v2, a cgroup made in the host's cgroup2 mount (on a
// hybrid host it has no controllers, but cpu.stat is kept for every v2 cgroup).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import * as v1 from "../../core/gen/containerd/cgroups/v1/metrics.ts";
import * as v2 from "../../core/gen/containerd/cgroups/v2/metrics.ts";
import { cgroupDirsOf, detectCgroupLayout, parseCgroupMounts, type CgroupLayout } from "./cgroups.ts";
import { cgroupMetricsOf, v1MetricsTypeUrl, v2MetricsTypeUrl } from "./metrics.ts";

const hybrid = `
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /nested /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const unified = `
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 25 0:25 / /sys/fs/cgroup/my\\040dir rw - tmpfs tmpfs rw
`;

const children: ChildProcess[] = [];
const cgroupsMade: string[] = [];

after(async () => {
  // A killed process leaves its cgroups once reaped, which its exit event follows.
  await Promise.all(
    children.map((child) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once("exit", resolve).kill("SIGKILL")))),
  );
  for (const dir of cgroupsMade.reverse()) rmdirSync(dir);
});

test("a hybrid host is v1, with each controller's mount and the mounted sub-tree", () => {
  const layout = parseCgroupMounts(hybrid);
  assert.equal(layout.mode, "v1");
  assert.deepEqual(layout.mounts.get("cpuacct"), { root: "/", mountPoint: "/sys/fs/cgroup/cpu,cpuacct" });
  assert.deepEqual(layout.mounts.get("memory"), { root: "/nested", mountPoint: "/sys/fs/cgroup/memory" });
  assert.ok(layout.mounts.has("name=systemd"));
  assert.ok(!layout.mounts.has("rw"), "mount flags are not controllers");
});

test("cgroup2 at /sys/fs/cgroup is v2", () => {
  const layout = parseCgroupMounts(unified);
  assert.equal(layout.mode, "v2");
  assert.deepEqual([...layout.mounts], [["", { root: "/", mountPoint: "/sys/fs/cgroup" }]]);
});

test("this host's layout is detected, and this process's v1 dirs exist", () => {
  const layout = detectCgroupLayout();
  const dirs = cgroupDirsOf(layout, process.pid);
  assert.ok(dirs.size > 0, "some cgroup dirs");
  for (const dir of dirs.values()) assert.ok(existsSync(dir), dir);
});

test("a process that is gone has no cgroup dirs: ENOENT reaches the caller", () => {
  assert.throws(() => cgroupDirsOf(detectCgroupLayout(), 0x3fffffff), { code: "ENOENT" });
});

test("v1 metrics of a process in its own cgroups decode with pids, cpu and memory", async (t) => {
  const layout = detectCgroupLayout();
  if (layout.mode !== "v1") return t.skip("this host is cgroup v2");
  const name = `berth-metrics-${randomBytes(4).toString("hex")}`;
  const child = spawn("sh", ["-c", "read go; i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; exec sleep 300"], { stdio: ["pipe", "ignore", "ignore"] });
  children.push(child);
  for (const controller of ["pids", "memory", "cpuacct"]) {
    const mount = layout.mounts.get(controller);
    if (!mount) return t.skip(`no ${controller} hierarchy`);
    const dir = join(mount.mountPoint, name);
    if (!existsSync(dir)) {
      mkdirSync(dir);
      cgroupsMade.push(dir);
    }
    writeFileSync(join(dir, "cgroup.procs"), String(child.pid));
  }
  writeFileSync(join(layout.mounts.get("pids")!.mountPoint, name, "pids.max"), "50");
  child.stdin!.end("go\n");
  const usage = () => {
    const metric = cgroupMetricsOf(layout, child.pid!);
    assert.equal(metric.typeUrl, v1MetricsTypeUrl);
    return v1.Metrics.decode(metric.value);
  };
  while ((usage().cpu?.usage?.total ?? 0n) === 0n) await new Promise((resolve) => setImmediate(resolve));
  const decoded = usage();
  assert.deepEqual(decoded.pids, { current: 1n, limit: 50n });
  assert.ok(decoded.memory?.usage && decoded.memory.usage.usage > 0n, "memory usage");
  assert.ok(decoded.memory.usage.limit > 0n, "memory limit");
  assert.ok(decoded.cpu!.usage!.perCpu.reduce((a, b) => a + b, 0n) > 0n, "per-cpu usage");
});

test("v2 metrics come from a cgroup of the host's cgroup2 mount", async (t) => {
  const unifiedMount = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.includes(" - cgroup2 "));
  if (!unifiedMount) return t.skip("no cgroup2 mount");
  const [, , , root, mountPoint] = unifiedMount.split(" ") as [string, string, string, string, string];
  const dir = join(mountPoint, `berth-metrics-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir);
  cgroupsMade.push(dir);
  // It waits for a line before burning CPU, so the burning happens inside the new cgroup.
  const child = spawn("sh", ["-c", "read go; i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; exec sleep 300"], { stdio: ["pipe", "ignore", "ignore"] });
  children.push(child);
  writeFileSync(join(dir, "cgroup.procs"), String(child.pid));
  const layout: CgroupLayout = { mode: "v2", mounts: new Map([["", { root, mountPoint }]]) };
  assert.equal(cgroupDirsOf(layout, child.pid!).get(""), dir);
  child.stdin!.end("go\n");
  const usage = () => {
    const metric = cgroupMetricsOf(layout, child.pid!);
    assert.equal(metric.typeUrl, v2MetricsTypeUrl);
    return v2.Metrics.decode(metric.value);
  };
  while (usage().cpu!.usageUsec === 0n) await new Promise((resolve) => setImmediate(resolve));
  const decoded = usage();
  assert.ok(decoded.cpu!.userUsec + decoded.cpu!.systemUsec > 0n, "user and system time add up to something");
  assert.equal(decoded.memory, undefined, "no memory controller on this cgroup2: no memory stats");
});
