// The native backend (containerd's "native"): every snapshot is a whole tree in
// <root>/snapshots/<id>, a new active one starting as a full copy of its parent, so it
// works on any filesystem and needs no overlayfs. A snapshot is mounted as one bind
// mount, read-write while active; a view is its parent's tree bound read-only.
//
// The copy is GNU cp's archive mode: ownership, modes, times, xattrs (file
// capabilities among them), hard links within the tree, device nodes, FIFOs and
// symlinks as they are; reflinks where the filesystem shares extents. Both cp and
// setpriv come with every Debian system (coreutils, util-linux).
import { execFile } from "node:child_process";
import { chmodSync } from "node:fs";
import { promisify } from "node:util";
import { Kind } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import { SnapshotDirs, type NewKind, type SnapshotBackend } from "./backend.ts";
import { diskUsage } from "./disk-usage.ts";
import type { SnapshotKind, Usage } from "./store.ts";

const execFileAsync = promisify(execFile);

/** Copies the tree `from` into the existing directory `to`, `to` taking `from`'s own attributes. */
async function copyTree(from: string, to: string): Promise<void> {
  try {
    // "from/." copies the directory itself onto `to` (its mode, owner, times, xattrs) and
    // then its entries; path.join would drop the "." and copy `from` into `to` instead.
    // setpriv's parent-death signal ends the copy with this process: a copy left running
    // after a crash would go on writing into the directory the restart sweeps away (its
    // delete then fails, "Directory not empty", and the staging directory stays). The
    // signal only fires for a death after setpriv set it, so the shell then checks that
    // its parent is still this process: a kill that landed in between (as a kill -9 right
    // when a build starts does) leaves no orphaned copy either.
    await execFileAsync(
      "setpriv",
      ["--pdeathsig", "KILL", "--", "sh", "-c", 'test "$PPID" = "$1" || exit 1; exec cp -a --reflink=auto -- "$2" "$3"', "sh", String(process.pid), `${from}/.`, to],
      { maxBuffer: 1024 * 1024 },
    );
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`copying snapshot ${from} to ${to}: ${stderr || (err as Error).message}`);
  }
}

export class NativeBackend extends SnapshotDirs implements SnapshotBackend {
  stage(kind: NewKind, parents: readonly number[]): Promise<string> {
    return this.stageWith(async (temp) => {
      if (parents.length === 0) {
        chmodSync(temp, 0o755);
      } else if (kind === "active") {
        // The nearest parent already holds its whole chain.
        await copyTree(this.parentPath(parents[0]!), temp);
      } else {
        // A view shows its parent's tree read-only (see mounts): nothing to copy. The
        // parent must still be there, and the empty directory marks the view as owned.
        this.parentPath(parents[0]!);
      }
    });
  }

  /** containerd's native shapes: a view of a parent binds the parent's tree, which a committed snapshot never changes. */
  mounts(id: number, kind: SnapshotKind, parents: readonly number[]): Mount[] {
    const view = kind === Kind.VIEW;
    const source = view && parents.length > 0 ? this.pathOf(parents[0]!) : this.pathOf(id);
    return [{ type: "bind", source, target: "", options: [view ? "ro" : "rw", "rbind"] }];
  }

  usage(id: number): Promise<Usage> {
    return diskUsage(this.pathOf(id));
  }
}
