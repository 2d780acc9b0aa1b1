// A COPY's new small files put straight into its snapshot's upper dir: a file of the inode
// pool (inode-pool.ts) is filled, given its owner, mode and times, and renamed there, so
// the step makes no inode of its own. Only where the result is the one writing through
// the mounted overlay gives: the name is in no layer (so the overlay would have made a
// new file, and has not looked the name up: nothing of it is cached), and its directory
// is already a real directory of the upper dir (made or copied up through the overlay).
// Anything else (a name to replace, a directory only a lower layer has) is left to the
// caller, which writes through the mount as before.
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lstatSync, openSync, readdirSync, realpathSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import type { InodePool } from "./inode-pool.ts";

export interface FileMeta {
  uid: number;
  gid: number;
  mode: number;
  atime: Date;
  mtime: Date;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export class UpperPlacer {
  private readonly mountPoint: string;
  private readonly upper: string;
  private readonly lowers: readonly string[];
  private readonly pool: InodePool;
  /**
   * Upper dirs found to be real directories: a step only adds to them (a name that is a
   * directory is never replaced by a file or a link), so each is looked at once.
   */
  private readonly realDirs = new Set<string>();
  /** The names each lower layer has in a directory (by its path below the root), read once per directory. */
  private readonly lowerNames = new Map<string, Set<string>>();
  /** Small new files the step asked to place (placed or not): what the pool should hold. */
  asked = 0;
  placed = 0;

  constructor(mountPoint: string, upper: string, lowers: readonly string[], pool: InodePool) {
    this.mountPoint = mountPoint;
    this.upper = realpathSync.native(upper);
    this.lowers = lowers;
    this.pool = pool;
  }

  /** Puts `data` at `target` (a path under the mount point) if it can; false: the caller writes it through the mount. */
  place(target: string, data: Buffer, meta: FileMeta): boolean {
    this.asked++;
    const rel = relative(this.mountPoint, target);
    if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) return false;
    const upperTarget = join(this.upper, rel);
    const parent = dirname(upperTarget);
    if (!this.realDirs.has(parent)) {
      // Every component a real directory of the upper dir: a symlink there would lead anywhere.
      try {
        if (realpathSync.native(parent) !== parent || !lstatSync(parent).isDirectory()) return false;
      } catch {
        return false;
      }
      this.realDirs.add(parent);
    }
    if (exists(upperTarget) || this.inLowers(rel)) return false;
    const file = this.pool.take();
    if (!file) return false;
    try {
      const fd = openSync(file, constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW);
      try {
        for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset);
        // chown first: it clears set-id bits that the mode may ask for.
        fchownSync(fd, meta.uid, meta.gid);
        fchmodSync(fd, meta.mode);
        futimesSync(fd, meta.atime, meta.mtime);
      } finally {
        closeSync(fd);
      }
      renameSync(file, upperTarget);
    } catch (err) {
      rmSync(file, { force: true });
      if ((err as NodeJS.ErrnoException).code === "EXDEV") {
        this.pool.disable();
        return false;
      }
      throw err;
    }
    this.placed++;
    return true;
  }

  private inLowers(rel: string): boolean {
    const dir = dirname(rel);
    let names = this.lowerNames.get(dir);
    if (!names) {
      names = new Set();
      for (const lower of this.lowers) {
        try {
          for (const name of readdirSync(join(lower, dir))) names.add(name);
        } catch {
          // not a directory of this layer: it has nothing there
        }
      }
      this.lowerNames.set(dir, names);
    }
    return names.has(basename(rel));
  }
}

/** A placer for a rootfs mounted at `mountPoint` from `mounts`, when they are an overlay with an upper dir (or a writable bind of one dir). */
export function upperPlacer(mountPoint: string, mounts: readonly Mount[], pool: InodePool): UpperPlacer | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === "bind") return m.options.includes("ro") ? undefined : new UpperPlacer(mountPoint, m.source, [], pool);
  if (m.type !== "overlay") return undefined;
  const upper = m.options.find((o) => o.startsWith("upperdir="))?.slice("upperdir=".length);
  const lowers = m.options.find((o) => o.startsWith("lowerdir="))?.slice("lowerdir=".length).split(":").filter(Boolean) ?? [];
  if (!upper) return undefined;
  return new UpperPlacer(mountPoint, upper, lowers, pool);
}
