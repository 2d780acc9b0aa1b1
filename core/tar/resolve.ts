// Path handling that keeps extraction inside its root. Entry names are cleaned
// lexically (a leading "/" means the root, as docker and containerd treat it; ".."
// that climbs above the root is refused). Existing components are then resolved
// like a chroot would: a symlink met on the way is followed, but an absolute target
// or ".." at the top lands on the root again, never outside it.
// Synchronous syscalls on purpose: see apply.ts. Paths are byte strings (./byte-fs.ts).
import { join } from "node:path";
import { invalidArgument } from "../errors.ts";
import { displayPath, lstat, readlink } from "./byte-fs.ts";

const maxSymlinks = 255;

/**
 * The components of a tar entry name relative to the root. Throws invalid-argument when
 * the name climbs above the root or holds a NUL byte.
 */
export function entryComponents(name: string, what = "entry"): string[] {
  if (name.includes("\0")) throw invalidArgument(`${what} ${displayPath(name)}: NUL byte in name`);
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) throw invalidArgument(`${what} ${displayPath(name)}: path escapes the root`);
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/**
 * The host path of `components` under `root`, with every existing component resolved
 * inside the root (symlinks followed chroot-style, including the last component when
 * `followLast`). Components that do not exist are appended as they are. Throws
 * invalid-argument when a non-directory sits where a directory is needed, or on a
 * symlink loop.
 */
export function resolveInRoot(root: string, components: readonly string[], followLast = true): string {
  const resolved: string[] = [];
  // Work list, last element next: symlink targets are pushed in front of what remains.
  const todo = [...components].reverse();
  let links = 0;
  let missing = false;
  while (todo.length > 0) {
    const part = todo.pop()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const isLast = todo.length === 0;
    if (missing) {
      resolved.push(part);
      continue;
    }
    const path = join(root, ...resolved, part);
    const stat = lstat(path);
    if (stat === undefined) {
      missing = true;
      resolved.push(part);
      continue;
    }
    if (stat.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > maxSymlinks) throw invalidArgument(`path ${displayPath(components.join("/"))}: too many levels of symbolic links`);
      const target = readlink(path);
      if (target.startsWith("/")) resolved.length = 0;
      for (const next of target.split("/").reverse()) todo.push(next);
      continue;
    }
    if (!isLast && !stat.isDirectory()) {
      throw invalidArgument(`path ${displayPath(components.join("/"))}: ${displayPath([...resolved, part].join("/"))} is not a directory`);
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

/** Whether `path` is `root` or below it (lexically; both already resolved). */
export function isWithin(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}
