// Where a process's cgroups are on this host. The layout is learned once at start from
// the mount table: "v2" when /sys/fs/cgroup itself is cgroup2 (unified), otherwise "v1"
// (legacy, or hybrid with an empty cgroup2 beside the v1 hierarchies, as containerd
// also reports v1 there). A process's own paths come from /proc/PID/cgroup, so whatever
// runc made of the spec's cgroupsPath (absolute, relative, systemd slice) needs no
// second-guessing here.
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";

export type CgroupMode = "v1" | "v2";

interface CgroupMount {
  /** The path inside the hierarchy that is mounted (mountinfo's root field). */
  root: string;
  mountPoint: string;
}

export interface CgroupLayout {
  mode: CgroupMode;
  /** v1: controller name (cpu, memory, name=systemd…) → its mount; v2: "" → the unified mount. */
  mounts: Map<string, CgroupMount>;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescapeMountField = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));

export function parseCgroupMounts(mountinfo: string): CgroupLayout {
  const v1 = new Map<string, CgroupMount>();
  let unified: CgroupMount | undefined;
  for (const line of mountinfo.split("\n")) {
    const separator = line.indexOf(" - ");
    if (separator < 0) continue;
    const fields = line.slice(0, separator).split(" ");
    const [fsType, , superOptions = ""] = line.slice(separator + 3).split(" ");
    const mount = { root: unescapeMountField(fields[3]!), mountPoint: unescapeMountField(fields[4]!) };
    if (fsType === "cgroup2") {
      if (mount.mountPoint === "/sys/fs/cgroup" || !unified) unified = mount;
    } else if (fsType === "cgroup") {
      for (const option of superOptions.split(",")) {
        // The first mount of a hierarchy wins: a bind mount of a sub-tree comes later.
        if (!v1.has(option) && option !== "rw" && option !== "ro") v1.set(option, mount);
      }
    }
  }
  if (unified?.mountPoint === "/sys/fs/cgroup") return { mode: "v2", mounts: new Map([["", unified]]) };
  return { mode: "v1", mounts: v1 };
}

export function detectCgroupLayout(): CgroupLayout {
  return parseCgroupMounts(readFileSync("/proc/self/mountinfo", "utf8"));
}

/**
 * The directories of the cgroups `pid` is in: v1 controller → dir, v2 "" → dir.
 * Throws when the process is gone (ENOENT) — the caller decides what that means.
 */
export function cgroupDirsOf(layout: CgroupLayout, pid: number): Map<string, string> {
  const dirs = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
    // hierarchy-id:controller,controller:path (the path itself may contain ':')
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    const names = layout.mode === "v2" ? (controllers === "" ? [""] : []) : controllers.split(",").filter(Boolean);
    for (const name of names) {
      const mount = layout.mounts.get(name);
      if (!mount) continue;
      const inside = relative(mount.root, path);
      // A path outside the mounted sub-tree cannot be reached through this mount.
      if (inside.startsWith("..")) continue;
      dirs.set(name, join(mount.mountPoint, inside));
    }
  }
  return dirs;
}

/**
 * Whether the freezer has stopped the cgroup `pid` is in (v1 freezer.state FROZEN, v2
 * cgroup.events "frozen 1"): what `runc pause` does. False when that cannot be read.
 */
export function isFrozen(layout: CgroupLayout, pid: number): boolean {
  try {
    const dirs = cgroupDirsOf(layout, pid);
    if (layout.mode === "v2") {
      const dir = dirs.get("");
      return dir !== undefined && /^frozen 1$/m.test(readFileSync(join(dir, "cgroup.events"), "utf8"));
    }
    const freezer = dirs.get("freezer");
    return freezer !== undefined && readFileSync(join(freezer, "freezer.state"), "utf8").trim() === "FROZEN";
  } catch {
    return false;
  }
}
