// OCI bundles for the shim's tests and benchmark: a busybox rootfs made from the host's
// static busybox, and a minimal config.json for runc (namespaces pid/mount/ipc/uts/network,
// limits within the host's hard limits, a cgroup of its own that removeCgroup deletes).
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const BUSYBOX = "/bin/busybox";
const CGROUP_ROOT = "/sys/fs/cgroup";

/** A read-only-usable rootfs: busybox, a link per applet, and the mount points runc needs. */
export function makeBusyboxRootfs(rootfs: string): void {
  const bin = join(rootfs, "bin");
  mkdirSync(bin, { recursive: true });
  for (const dir of ["proc", "dev", "sys", "tmp"]) mkdirSync(join(rootfs, dir), { recursive: true });
  copyFileSync(BUSYBOX, join(bin, "busybox"));
  const applets = execFileSync(BUSYBOX, ["--list"], { encoding: "utf8" }).split("\n").filter((name) => name && name !== "busybox");
  for (const applet of applets) symlinkSync("busybox", join(bin, applet));
}

// This host lacks CAP_SYS_RESOURCE: a limit above its hard limit makes runc fail.
function hostHardLimit(name: string): number {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith(name));
  const hard = line?.trim().split(/\s{2,}/)[2];
  return hard === undefined || hard === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(hard);
}

export interface ProcessSpec {
  args: string[];
  terminal?: boolean;
}

/** The process part of config.json, also what `runc exec --process` takes. */
export function processSpec({ args, terminal = false }: ProcessSpec): object {
  const nofile = Math.min(1024, hostHardLimit("Max open files"));
  const capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
  return {
    terminal,
    user: { uid: 0, gid: 0 },
    args,
    env: ["PATH=/bin", "TERM=xterm", "HOME=/"],
    cwd: "/",
    capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities },
    rlimits: [{ type: "RLIMIT_NOFILE", hard: nofile, soft: nofile }],
    noNewPrivileges: true,
  };
}

export interface BundleSpec extends ProcessSpec {
  /** An absolute path: bundles may share one rootfs, mounted read-only. */
  rootfs: string;
  /** A cgroup name unique to this container, directly under each hierarchy's root. */
  cgroup: string;
  /** A memory limit in bytes (swap included: the host's OOM killer acts at it). */
  memoryLimit?: number;
}

export function writeBundle(bundle: string, spec: BundleSpec): void {
  mkdirSync(bundle, { recursive: true });
  const config = {
    ociVersion: "1.0.2",
    process: processSpec(spec),
    root: { path: spec.rootfs, readonly: true },
    hostname: "berth-shim-test",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "size=16m"] },
    ],
    linux: {
      namespaces: ["pid", "mount", "ipc", "uts", "network"].map((type) => ({ type })),
      cgroupsPath: `/${spec.cgroup}`,
      ...(spec.memoryLimit ? { resources: { memory: { limit: spec.memoryLimit, swap: spec.memoryLimit } } } : {}),
      maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
  writeFileSync(join(bundle, "config.json"), JSON.stringify(config, null, 2));
}

/** Removes the cgroup from every hierarchy (runc delete normally has; this catches failures). */
export function removeCgroup(name: string): void {
  if (!existsSync(CGROUP_ROOT)) return;
  for (const hierarchy of readdirSync(CGROUP_ROOT)) {
    const dir = join(CGROUP_ROOT, hierarchy, name);
    if (existsSync(dir)) rmdirSync(dir);
  }
}

/** The hierarchies that still hold the cgroup (for asserting cleanup). */
/** The kernel's own count of OOM kills in cgroup `name`: v1's memory.oom_control, else v2's memory.events. */
export function kernelOomKills(name: string): number {
  const v1 = join(CGROUP_ROOT, "memory", name, "memory.oom_control");
  const file = existsSync(v1) ? v1 : join(CGROUP_ROOT, name, "memory.events");
  const count = /^oom_kill (\d+)$/m.exec(readFileSync(file, "utf8"))?.[1];
  if (count === undefined) throw new Error(`${file} has no oom_kill line`);
  return Number(count);
}

export function cgroupLeftIn(name: string): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  return readdirSync(CGROUP_ROOT).filter((hierarchy) => existsSync(join(CGROUP_ROOT, hierarchy, name)));
}
