// What a snapshotter backend does (containerd's snapshotter plugins, under the
// metadata layer): directories on disk, addressed only by a snapshot's numeric id and
// its parents' ids. It knows nothing of namespaces, keys, labels, leases or events;
// services/snapshots/metadata-layer.ts puts those on top.
//
// The directory layout shared by the backends: <root>/snapshots/<id> per snapshot,
// and <root>/snapshots/new-* while one is being built (staged) and not yet placed.
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { failedPrecondition } from "../../core/errors.ts";
import { makePrivateDir } from "../../core/private-files.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import type { Logger } from "../../core/log.ts";
import type { SnapshotKind, Usage } from "./store.ts";

export type NewKind = "active" | "view";

export interface SnapshotBackend {
  /**
   * Builds a new snapshot's directory under a temp name, on top of `parents` (ids,
   * nearest first; empty for a first snapshot). Nothing refers to it until place().
   */
  stage(kind: NewKind, parents: readonly number[]): Promise<string>;
  /**
   * Moves a staged directory to snapshot `id`'s place. Synchronous, so it runs inside
   * the transaction that inserts the row: a row never exists without its directory.
   */
  place(staged: string, id: number): void;
  /** Deletes a staged directory, or a placed one whose row was never committed. */
  discard(path: string): void;
  /** Where snapshot `id` was placed (discard() of a placed snapshot). */
  pathOf(id: number): string;
  /** The mounts that show snapshot `id` (of `kind`) over its parents (nearest first). */
  mounts(id: number, kind: SnapshotKind, parents: readonly number[]): Mount[];
  /**
   * Makes snapshot `id` (made without parents) fit on top of `parents` (nearest first)
   * before it is committed there: `copyUpDirs` (checked clean relative paths, bytes)
   * take the metadata of the topmost parent that has them. Only where a snapshot's
   * directory holds its own layer alone (overlayfs); undefined where it holds the whole
   * tree (native).
   */
  rebase?(id: number, parents: readonly number[], copyUpDirs: readonly Uint8Array[]): void;
  /** The disk usage of what snapshot `id` itself holds. */
  usage(id: number): Promise<Usage>;
  /**
   * Deletes snapshot `id`'s directory (its row is already gone): moved out of the
   * snapshots directory before this returns, deleted by the time the promise settles.
   */
  remove(id: number): Promise<void>;
  /** Deletes every directory that is neither in `keep` nor being staged; returns their paths. */
  sweep(keep: ReadonlySet<number>): Promise<string[]>;
}

/**
 * The <root>/snapshots/<id> directories every backend keeps, with staging and the
 * sweep (backends extend it). A staging in progress (an async copy) is remembered, so a
 * sweep running meanwhile leaves it alone; one left by a crashed process is not, so it goes.
 */
export class SnapshotDirs {
  readonly dir: string;
  /**
   * Where removed snapshots' directories wait to be deleted: beside `dir`, so neither a
   * listing nor a sweep of `dir` sees them once their snapshot is gone.
   */
  private readonly removedDir: string;
  protected readonly log: Logger;
  private readonly staging = new Set<string>();
  /** Directories in removedDir this process is deleting now. */
  private readonly deleting = new Set<string>();

  constructor(root: string, log: Logger) {
    this.dir = join(root, "snapshots");
    this.removedDir = join(root, "removed");
    makePrivateDir(this.dir);
    makePrivateDir(this.removedDir);
    this.log = log;
  }

  pathOf(id: number): string {
    return join(this.dir, String(id));
  }

  /** Snapshot `id`'s directory, which a new snapshot is built on; FAILED_PRECONDITION when it is gone from disk. */
  parentPath(id: number): string {
    const path = this.pathOf(id);
    if (!existsSync(path)) throw failedPrecondition(`parent snapshot directory ${path} is missing`);
    return path;
  }

  /** Runs `build` on a fresh temp directory; on failure the directory is gone again. */
  protected async stageWith(build: (temp: string) => Promise<void> | void): Promise<string> {
    const temp = mkdtempSync(join(this.dir, "new-"));
    this.staging.add(temp);
    try {
      await build(temp);
      return temp;
    } catch (err) {
      this.staging.delete(temp);
      rmSync(temp, { recursive: true, force: true });
      throw err;
    }
  }

  place(staged: string, id: number): void {
    renameSync(staged, this.pathOf(id));
    this.staging.delete(staged);
  }

  discard(path: string): void {
    this.staging.delete(path);
    rmSync(path, { recursive: true, force: true });
  }

  /**
   * One rename on the caller's path; the deletion (5-27 ms for a container's upper and
   * work dirs on a loaded machine, on every `ctr run --rm`) runs meanwhile, off the
   * call's path. containerd also leaves directories to its collector.
   */
  async remove(id: number): Promise<void> {
    const path = this.pathOf(id);
    const removed = join(this.removedDir, String(id));
    try {
      renameSync(path, removed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      // The row is gone, so the next sweep retries this directory.
      this.log.warn({ err: (err as Error).message, path }, "failed to remove snapshot directory");
      return;
    }
    this.deleting.add(removed);
    try {
      // In the thread pool: synchronous deletes (even of a few entries) held the event
      // loop, and with it the answer's trailers, for up to 47 ms.
      await rm(removed, { recursive: true, force: true });
    } catch (err) {
      // Out of the snapshots directory already; the next sweep deletes it.
      this.log.warn({ err: (err as Error).message, path: removed }, "failed to remove snapshot directory");
    } finally {
      this.deleting.delete(removed);
    }
  }

  async sweep(keep: ReadonlySet<number>): Promise<string[]> {
    // Chosen in one synchronous step with the caller's read of the ids: a snapshot is
    // placed and its row inserted in one synchronous transaction, so it cannot be
    // caught half made; a staging still building is in this.staging.
    const orphans = readdirSync(this.dir)
      .map((name) => ({ name, path: join(this.dir, name) }))
      .filter(({ name, path }) => !(/^\d+$/.test(name) && keep.has(Number(name))) && !this.staging.has(path))
      .map(({ path }) => path);
    // Removed snapshots' directories a crash (or a failed delete) left behind.
    orphans.push(...readdirSync(this.removedDir).map((name) => join(this.removedDir, name)).filter((path) => !this.deleting.has(path)));
    const removed: string[] = [];
    for (const path of orphans) {
      try {
        await rm(path, { recursive: true, force: true });
        removed.push(path);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, path }, "failed to remove orphan snapshot directory");
      }
    }
    return removed;
  }
}
