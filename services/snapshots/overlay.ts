// The overlayfs snapshotter (containerd's "overlayfs"): snapshot <id> lives in
// <root>/snapshots/<id>/{fs,work}; fs is the upper layer of an active snapshot and the
// layer itself once committed. The records live in the shared metadata database.
//
// Crash safety: a new snapshot's directory is built under a temp name and renamed to
// its id inside the transaction that inserts its row; a removal deletes the row first
// and the directory after. A crash at any point therefore leaves at most a directory
// without a row, which cleanup() (run at start-up and by Cleanup) deletes.
import { existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Kind } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { failedPrecondition } from "../../core/errors.ts";
import { makePrivateDir } from "../../core/private-files.ts";
import type { Logger } from "../../core/log.ts";
import type { Database } from "../../core/metadata-db.ts";
import { diskUsage } from "./disk-usage.ts";
import { labelsAfterUpdate } from "../../core/labels.ts";
import type { Mount, Snapshotter } from "./snapshotter.ts";
import { snapshotNotFound, SqliteSnapshotStore, type SnapshotRecord, type SnapshotStore, type Usage } from "./store.ts";

/** containerd adds index=off whenever the kernel's overlay module has the knob. */
function supportsIndexOption(): boolean {
  return existsSync("/sys/module/overlay/parameters/index");
}

export class OverlaySnapshotter implements Snapshotter {
  private readonly store: SnapshotStore;
  private readonly snapshotsDir: string;
  private readonly indexOff: boolean;
  private readonly log: Logger;

  constructor(root: string, db: Database, log: Logger) {
    this.snapshotsDir = join(root, "snapshots");
    makePrivateDir(this.snapshotsDir);
    this.store = new SqliteSnapshotStore(db, "overlayfs");
    this.indexOff = supportsIndexOption();
    this.log = log;
  }

  private upperPath(id: number): string {
    return join(this.snapshotsDir, String(id), "fs");
  }

  private workPath(id: number): string {
    return join(this.snapshotsDir, String(id), "work");
  }

  find(namespace: string, key: string): SnapshotRecord | undefined {
    return this.store.get(namespace, key);
  }

  stat(namespace: string, key: string): SnapshotRecord {
    const record = this.store.get(namespace, key);
    if (!record) throw snapshotNotFound(key);
    return record;
  }

  update(namespace: string, key: string, labels: Record<string, string>, paths: readonly string[]): SnapshotRecord {
    return this.store.updateLabels(namespace, key, (current) => labelsAfterUpdate(`snapshot ${JSON.stringify(key)}`, current.labels, labels, paths), Date.now());
  }

  async usage(namespace: string, key: string): Promise<Usage> {
    const record = this.stat(namespace, key);
    // Only an active snapshot still changes; the others keep what commit measured.
    if (record.kind !== Kind.ACTIVE) return { size: record.size, inodes: record.inodes };
    return diskUsage(this.upperPath(record.id));
  }

  mounts(namespace: string, key: string): Mount[] {
    const record = this.stat(namespace, key);
    if (record.kind !== Kind.ACTIVE && record.kind !== Kind.VIEW) {
      throw failedPrecondition(`failed to get active mount: requested snapshot ${key} not active or view`);
    }
    return this.mountsOf(record);
  }

  prepare(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Mount[] {
    return this.create(namespace, Kind.ACTIVE, key, parent, labels, lease);
  }

  view(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Mount[] {
    return this.create(namespace, Kind.VIEW, key, parent, labels, lease);
  }

  async commit(namespace: string, name: string, key: string, labels: Record<string, string>, lease?: string): Promise<void> {
    const active = this.stat(namespace, key);
    const usage = await diskUsage(this.upperPath(active.id));
    // The store checks again inside its transaction: the snapshot may have changed meanwhile.
    this.store.commit(namespace, key, name, labels, usage, Date.now(), lease);
  }

  async remove(namespace: string, key: string, lease?: string): Promise<void> {
    const record = this.store.remove(namespace, key, lease);
    const dir = join(this.snapshotsDir, String(record.id));
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      // The row is gone, so the next cleanup() retries this directory.
      this.log.warn({ err: (err as Error).message, path: dir }, "failed to remove snapshot directory");
    }
  }

  list(namespace: string): SnapshotRecord[] {
    return this.store.list(namespace);
  }

  async cleanup(): Promise<string[]> {
    // Read both sides in one synchronous step: a snapshot being created builds and
    // renames its directory within one synchronous transaction, so it cannot be caught
    // half made here.
    const ids = this.store.ids();
    const orphans = readdirSync(this.snapshotsDir)
      .filter((name) => !(/^\d+$/.test(name) && ids.has(Number(name))))
      .map((name) => join(this.snapshotsDir, name));
    const removed: string[] = [];
    for (const dir of orphans) {
      try {
        await rm(dir, { recursive: true, force: true });
        removed.push(dir);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, path: dir }, "failed to remove orphan snapshot directory");
      }
    }
    return removed;
  }

  private create(
    namespace: string,
    kind: typeof Kind.ACTIVE | typeof Kind.VIEW,
    key: string,
    parent: string,
    labels: Record<string, string>,
    lease: string | undefined,
  ): Mount[] {
    const temp = mkdtempSync(join(this.snapshotsDir, "new-"));
    let renamedTo: string | undefined;
    let record: SnapshotRecord;
    try {
      mkdirSync(join(temp, "fs"), { mode: 0o755 });
      if (kind === Kind.ACTIVE) mkdirSync(join(temp, "work"), { mode: 0o700 });
      record = this.store.create(namespace, { key, parent, kind, labels, now: Date.now() }, (created) => {
        if (created.parentId !== undefined) {
          // The new upper layer belongs to whoever owns the layer below (containerd does
          // the same), so a rootfs owned by a remapped user stays writable for it.
          const below = lstatSync(this.upperPath(created.parentId));
          lchownSync(join(temp, "fs"), below.uid, below.gid);
        }
        const final = join(this.snapshotsDir, String(created.id));
        renameSync(temp, final);
        renamedTo = final;
      }, lease);
    } catch (err) {
      rmSync(temp, { recursive: true, force: true });
      // Renamed, then the transaction failed to commit: that directory has no row.
      if (renamedTo !== undefined) rmSync(renamedTo, { recursive: true, force: true });
      throw err;
    }
    return this.mountsOf(record);
  }

  /** containerd's overlay mount shapes (see snapshots/overlay/overlay.go). */
  private mountsOf(record: SnapshotRecord): Mount[] {
    const parents = this.store.parentChain(record);
    if (parents.length === 0) {
      return [{ type: "bind", source: this.upperPath(record.id), target: "", options: [record.kind === Kind.VIEW ? "ro" : "rw", "rbind"] }];
    }
    const options = this.indexOff ? ["index=off"] : [];
    if (record.kind === Kind.ACTIVE) {
      options.push(`workdir=${this.workPath(record.id)}`, `upperdir=${this.upperPath(record.id)}`);
    } else if (parents.length === 1) {
      // A read-only view of a single layer needs no overlay at all.
      return [{ type: "bind", source: this.upperPath(parents[0]!), target: "", options: ["ro", "rbind"] }];
    }
    options.push(`lowerdir=${parents.map((id) => this.upperPath(id)).join(":")}`);
    return [{ type: "overlay", source: "overlay", target: "", options }];
  }
}
