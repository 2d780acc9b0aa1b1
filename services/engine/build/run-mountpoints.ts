// What runc leaves in a RUN's rootfs that the step did not make: a mount needs something
// to mount on, and where the image has no /etc/hosts, /etc/resolv.conf, /etc/hostname,
// /proc, /dev or /sys (or a heredoc script's path), runc creates an empty file or
// directory there, in the overlay's upper dir, with /etc copied up to hold the new files.
// The step's layer would then carry them. Docker keeps them out with an init layer under
// the container's; here they are taken out of the upper dir once the run has ended and
// its rootfs is unmounted, before the diff.
//
// An entry at a mount's destination can only be runc's: the mount hid it from the step
// for the whole run. A directory above one is the step's unless it is empty, not opaque,
// and owned and moded as the parent image has it (or the parent has none): then it was
// only copied up or made to hold the mount point.
import { lstatSync, readdirSync, rmdirSync, unlinkSync, type Stats } from "node:fs";
import { join, posix } from "node:path";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { lgetxattr } from "../../../native/index.ts";

interface OverlayDirs {
  upper: string;
  /** Topmost first, as overlayfs lists them. */
  lowers: string[];
}

function overlayDirs(mounts: readonly Mount[]): OverlayDirs | undefined {
  if (mounts.length !== 1 || mounts[0]!.type !== "overlay") return undefined;
  const option = (name: string) => mounts[0]!.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = option("upperdir");
  if (!upper) return undefined;
  return { upper, lowers: (option("lowerdir") ?? "").split(":").filter(Boolean) };
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The parent image's entry at `rel`: the topmost lower dir's (a whiteout is no entry). */
function parentEntry(lowers: readonly string[], rel: string): Stats | undefined {
  for (const lower of lowers) {
    const st = lstatOrUndefined(join(lower, rel));
    if (!st) continue;
    if (st.isCharacterDevice() && st.rdev === 0) return undefined;
    return st;
  }
  return undefined;
}

function isOpaque(dir: string): boolean {
  for (const name of ["trusted.overlay.opaque", "user.overlay.opaque"]) {
    try {
      if (lgetxattr(dir, name)?.toString() === "y") return true;
    } catch {
      // unreadable: kept, as if opaque (removing an opaque directory would bring back what it hides)
      return true;
    }
  }
  return false;
}

/** An empty file or directory, as runc makes a mount point. */
function isBareMountPoint(st: Stats, path: string): boolean {
  if (st.isFile()) return st.size === 0;
  if (st.isDirectory()) return readdirSync(path).length === 0;
  return false;
}

/**
 * Removes from the step's upper dir the mount points runc made for `destinations` (the
 * spec's mount destinations) and the directories only they needed. Does nothing for a
 * rootfs that is not an overlay with an upper dir.
 */
export function removeRunMountPoints(mounts: readonly Mount[], destinations: readonly string[]): void {
  const dirs = overlayDirs(mounts);
  if (!dirs) return;
  const parents = new Set<string>();
  for (const destination of destinations) {
    const rel = posix.normalize(destination).replace(/^\/+/, "");
    if (!rel || rel.startsWith("..")) continue;
    const path = join(dirs.upper, rel);
    const st = lstatOrUndefined(path);
    if (st && isBareMountPoint(st, path)) {
      if (st.isDirectory()) rmdirSync(path);
      else unlinkSync(path);
    }
    for (let dir = posix.dirname(rel); dir !== "." && dir !== "/"; dir = posix.dirname(dir)) parents.add(dir);
  }
  // Deepest first: a directory emptied by removing its child may go too.
  for (const rel of [...parents].sort((a, b) => b.split("/").length - a.split("/").length)) {
    const path = join(dirs.upper, rel);
    const st = lstatOrUndefined(path);
    if (!st?.isDirectory() || readdirSync(path).length > 0 || isOpaque(path)) continue;
    const before = parentEntry(dirs.lowers, rel);
    if (before && !(before.isDirectory() && before.mode === st.mode && before.uid === st.uid && before.gid === st.gid)) continue;
    rmdirSync(path);
  }
}
