// The overlayfs backend (containerd's "overlayfs"): snapshot <id> lives in
// <root>/snapshots/<id>/{fs,work}; fs is the upper layer of an active snapshot and the
// layer itself once committed, so a chain is mounted as an overlay of its fs dirs.
import { existsSync, lchownSync, lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Kind } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { SnapshotDirs, type NewKind, type SnapshotBackend } from "./backend.ts";
import { diskUsage } from "./disk-usage.ts";
import { byteStringOf, lstat } from "../../core/tar/byte-fs.ts";
import { copyUpDirInfo } from "../../core/tar/copy-up.ts";
import * as native from "../../native/index.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import type { SnapshotKind, Usage } from "./store.ts";

/**
 * The host path of `components` under `root` when each is a real directory (no symlink
 * followed: the applier reports real paths, and anything else changed since is not the
 * directory it made), else undefined.
 */
function realDirBelow(root: string, components: readonly string[]): string | undefined {
  let path = root;
  for (const component of components) {
    path = join(path, component);
    if (!lstat(path)?.isDirectory()) return undefined;
  }
  return path;
}

/** containerd adds index=off whenever the kernel's overlay module has the knob. */
function supportsIndexOption(): boolean {
  return existsSync("/sys/module/overlay/parameters/index");
}

export class OverlayBackend extends SnapshotDirs implements SnapshotBackend {
  private readonly indexOff = supportsIndexOption();

  private upperPath(id: number): string {
    return join(this.pathOf(id), "fs");
  }

  private workPath(id: number): string {
    return join(this.pathOf(id), "work");
  }

  stage(kind: NewKind, parents: readonly number[]): Promise<string> {
    return this.stageWith((temp) => {
      mkdirSync(join(temp, "fs"), { mode: 0o755 });
      if (kind === "active") mkdirSync(join(temp, "work"), { mode: 0o700 });
      if (parents.length > 0) {
        // The new upper layer belongs to whoever owns the layer below (containerd does
        // the same), so a rootfs owned by a remapped user stays writable for it.
        const below = lstatSync(join(this.parentPath(parents[0]!), "fs"));
        lchownSync(join(temp, "fs"), below.uid, below.gid);
      }
    });
  }

  rebase(id: number, parents: readonly number[], copyUpDirs: readonly Uint8Array[]): void {
    if (parents.length === 0) return;
    // What stage() gives an upper dir on a parent, unless the layer set its root's
    // owner itself (a "./" entry): a layer made parentless has the staging default.
    const below = lstatSync(join(this.parentPath(parents[0]!), "fs"));
    const upper = this.upperPath(id);
    const own = lstatSync(upper);
    if (own.uid === 0 && own.gid === 0 && (below.uid !== 0 || below.gid !== 0)) lchownSync(upper, below.uid, below.gid);
    if (copyUpDirs.length === 0) return;
    // What Apply onto a mounted parent gives a directory the layer needs but lacks.
    const root = byteStringOf(upper);
    const lowers = parents.map((parent) => byteStringOf(this.upperPath(parent)));
    const warn = (message: string) => this.log.warn({ snapshot: id }, `rebase: ${message}`);
    for (const dir of copyUpDirs) {
      const components = Buffer.from(dir).toString("latin1").split("/");
      const path = realDirBelow(root, components);
      if (path !== undefined) copyUpDirInfo(path, components, lowers, native, warn);
    }
  }

  /** containerd's overlay mount shapes (see snapshots/overlay/overlay.go). */
  mounts(id: number, kind: SnapshotKind, parents: readonly number[]): Mount[] {
    if (parents.length === 0) {
      return [{ type: "bind", source: this.upperPath(id), target: "", options: [kind === Kind.VIEW ? "ro" : "rw", "rbind"] }];
    }
    const options = this.indexOff ? ["index=off"] : [];
    if (kind === Kind.ACTIVE) {
      options.push(`workdir=${this.workPath(id)}`, `upperdir=${this.upperPath(id)}`);
    } else if (parents.length === 1) {
      // A read-only view of a single layer needs no overlay at all.
      return [{ type: "bind", source: this.upperPath(parents[0]!), target: "", options: ["ro", "rbind"] }];
    }
    options.push(`lowerdir=${parents.map((parent) => this.upperPath(parent)).join(":")}`);
    return [{ type: "overlay", source: "overlay", target: "", options }];
  }

  usage(id: number): Promise<Usage> {
    return diskUsage(this.upperPath(id));
  }
}
