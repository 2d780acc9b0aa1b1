// The namespaced metadata layer over a snapshotter backend (containerd's
// metadata/snapshot.go over a snapshotter plugin): keys, namespaces, labels, kinds,
// parents and leases live in the shared metadata database (SqliteSnapshotStore); the
// backend only makes, mounts and deletes directories named by the row's numeric id.
//
// Crash safety: a new snapshot's directory is built under a temp name (outside any
// transaction: a native copy may take a while) and renamed to its id inside the
// transaction that inserts its row; a removal deletes the row first and the directory
// after. A crash at any point therefore leaves at most a directory without a row, which
// cleanup() (run at start-up, by Cleanup and by the collector's sweep) deletes.
//
// Layer sharing (docs/snapshotters.md): a Prepare labelled containerd.io/snapshot.ref
// with a chain id another namespace has committed from an unpack gets that chain as
// rows of its own over the same directories and ALREADY_EXISTS, as when the chain id is
// in its own namespace already; one whose chain id is being extracted elsewhere waits
// for that first. A directory goes with the last row that names it.
import { existsSync, writeFileSync } from "node:fs";
import { Kind } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { alreadyExists, BerthError, failedPrecondition, invalidArgument } from "../../core/errors.ts";
import type { Database } from "../../core/metadata-db.ts";
import type { NewKind, SnapshotBackend } from "./backend.ts";
import { labelsAfterUpdate } from "../../core/labels.ts";
import type { Mount, Snapshotter } from "./snapshotter.ts";
import { snapshotNotFound, snapshotRefLabel, SqliteSnapshotStore, type NewSnapshot, type SnapshotRecord, type SnapshotStore, type Usage } from "./store.ts";
import { ExtractionClaims, waitAtMost, type Claim } from "./extraction-claims.ts";
import { sharedTargetNote } from "../../core/image/layer-share.ts";

/** A copy-up dir must name a path below the snapshot's root: relative, clean, no NUL. */
function checkCopyUpDir(key: string, dir: Uint8Array): void {
  const parts = Buffer.from(dir).toString("latin1").split("/");
  const clean = dir.length > 0 && dir.length <= 4096 && !dir.includes(0) && parts.every((part) => part !== "" && part !== "." && part !== "..");
  if (!clean) {
    const shown = JSON.stringify(Buffer.from(dir.subarray(0, 256)).toString("utf8"));
    throw invalidArgument(`failed to commit snapshot ${JSON.stringify(key)}: copy-up dir ${shown} is not a clean relative path`);
  }
}

/**
 * BERTH_SNAPSHOTS_CRASH_AT=after-remove:<file> kills this process once (the file records
 * that it did) between a removal's row delete and its directory's: the crash test in
 * test/snapshot-layer-share.test.ts proves the next start deletes a directory no row names.
 */
function crashPoint(point: string): void {
  const [at, marker] = (process.env.BERTH_SNAPSHOTS_CRASH_AT ?? "").split(":");
  if (at !== point || !marker || existsSync(marker)) return;
  writeFileSync(marker, point);
  process.kill(process.pid, "SIGKILL");
}

/** Another request replaced the parent while the new snapshot was being built on it. */
class ParentChanged extends Error {}

/** How often a create is retried when its parent was replaced meanwhile. */
const parentChangeRetries = 3;

/**
 * How long a Prepare waits for another extraction of its chain id before extracting
 * itself: bounds the wait on a client that died with its extraction snapshot unremoved.
 */
const shareWaitMs = () => Number(process.env.BERTH_LAYER_SHARE_WAIT_MS) || 10 * 60_000;

export class NamespacedSnapshotter implements Snapshotter {
  private readonly store: SnapshotStore;
  private readonly backend: SnapshotBackend;
  /** Directory deletions of removed snapshots still under way. */
  private readonly removals = new Set<Promise<void>>();
  private readonly claims = new ExtractionClaims();

  /** The snapshots of `backend`, recorded under `name` in the shared metadata database. */
  constructor(name: string, db: Database, backend: SnapshotBackend) {
    this.store = new SqliteSnapshotStore(db, name);
    this.backend = backend;
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
    return this.backend.usage(record.dir);
  }

  mounts(namespace: string, key: string): Mount[] {
    const record = this.stat(namespace, key);
    if (record.kind !== Kind.ACTIVE && record.kind !== Kind.VIEW) {
      throw failedPrecondition(`failed to get active mount: requested snapshot ${key} not active or view`);
    }
    return this.mountsOf(record);
  }

  prepare(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Promise<Mount[]> {
    return this.create(namespace, { key, parent, kind: Kind.ACTIVE, labels }, lease);
  }

  view(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Promise<Mount[]> {
    return this.create(namespace, { key, parent, kind: Kind.VIEW, labels }, lease);
  }

  async commit(namespace: string, name: string, key: string, labels: Record<string, string>, lease?: string, parent = "", copyUpDirs: readonly Uint8Array[] = []): Promise<void> {
    if (copyUpDirs.length > 0 && parent === "") throw invalidArgument(`failed to commit snapshot ${JSON.stringify(key)}: copy-up dirs are given only with a parent`);
    for (const dir of copyUpDirs) checkCopyUpDir(key, dir);
    const active = this.stat(namespace, key);
    let rebaseOnto: SnapshotRecord | undefined;
    if (parent !== "") {
      if (!this.backend.rebase) throw failedPrecondition(`failed to commit snapshot ${JSON.stringify(key)}: this snapshotter cannot set a parent at commit`);
      rebaseOnto = this.store.rebaseParent(namespace, active, parent);
    }
    const usage = await this.backend.usage(active.dir);
    if (rebaseOnto) this.backend.rebase!(active.dir, [rebaseOnto.dir, ...this.store.parentChain(rebaseOnto)], copyUpDirs);
    // The store checks again inside its transaction: the snapshot may have changed meanwhile.
    this.store.commit(namespace, key, name, labels, usage, Date.now(), lease, parent);
    this.claims.release(namespace, key);
  }

  async remove(namespace: string, key: string, lease?: string): Promise<void> {
    const record = this.store.remove(namespace, key, lease);
    this.claims.release(namespace, key);
    crashPoint("after-remove");
    // Another namespace's row still names a shared layer's directory.
    if (!record.dirFreed) return;
    // The backend moves the directory aside at once and deletes it after the answer
    // (see SnapshotDirs.remove); the process stays until that is done (removing()).
    const removal: Promise<void> = this.backend.remove(record.dir).finally(() => this.removals.delete(removal));
    this.removals.add(removal);
  }

  removing(): boolean {
    return this.removals.size > 0;
  }

  async settled(): Promise<void> {
    await Promise.all(this.removals);
  }

  list(namespace: string): SnapshotRecord[] {
    return this.store.list(namespace);
  }

  cleanup(): Promise<string[]> {
    // ids() and the backend's directory listing run in one synchronous step (see SnapshotDirs.sweep).
    return this.backend.sweep(this.store.ids());
  }

  private async create(namespace: string, snapshot: Omit<NewSnapshot, "now">, lease: string | undefined): Promise<Mount[]> {
    const target = snapshot.kind === Kind.ACTIVE ? snapshot.labels[snapshotRefLabel] : undefined;
    if (!target || this.store.isolated(namespace)) return this.createRetrying(namespace, snapshot, lease);
    const claim = await this.shareOrClaim(namespace, snapshot, target, lease);
    try {
      return await this.createRetrying(namespace, snapshot, lease);
    } catch (err) {
      this.claims.end(claim);
      throw err;
    }
  }

  /**
   * For a Prepare of an extraction of chain id `target`: ALREADY_EXISTS once the chain is
   * this namespace's (there already, or shared from another's layer rows), after waiting
   * for an extraction of it under way; else the claim this extraction now holds
   * (undefined when the wait timed out and another still holds it).
   */
  private async shareOrClaim(namespace: string, snapshot: Omit<NewSnapshot, "now">, target: string, lease: string | undefined): Promise<Claim | undefined> {
    const deadline = Date.now() + shareWaitMs();
    for (;;) {
      // The target here already answers ALREADY_EXISTS, as it always did.
      this.store.check(namespace, snapshot);
      const taken = this.store.share(namespace, target, snapshot.parent, Date.now(), lease);
      if (taken.length > 0) throw alreadyExists(`target snapshot ${JSON.stringify(target)} ${sharedTargetNote}: ${JSON.stringify(taken)}`);
      const holder = this.claims.holder(target);
      const left = deadline - Date.now();
      // Taken in the same synchronous step as the look: two waiters woken together cannot both extract.
      if (!holder) return this.claims.take(target, namespace, snapshot.key);
      if (left <= 0) return undefined;
      await waitAtMost(holder, left);
    }
  }

  private async createRetrying(namespace: string, snapshot: Omit<NewSnapshot, "now">, lease: string | undefined): Promise<Mount[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.createOnce(namespace, snapshot, lease);
      } catch (err) {
        if (!(err instanceof ParentChanged)) throw err;
        if (attempt >= parentChangeRetries) throw new BerthError("unavailable", `parent snapshot ${snapshot.parent} keeps changing`);
      }
    }
  }

  private async createOnce(namespace: string, snapshot: Omit<NewSnapshot, "now">, lease: string | undefined): Promise<Mount[]> {
    // Refuse a bad request before building anything.
    const parent = this.store.check(namespace, snapshot);
    const kind: NewKind = snapshot.kind === Kind.ACTIVE ? "active" : "view";
    const parents = parent ? [parent.dir, ...this.store.parentChain(parent)] : [];
    let staged: string;
    try {
      staged = await this.backend.stage(kind, parents);
    } catch (err) {
      // A parent removed while it was being copied fails the copy: report what happened
      // to the parent (NOT_FOUND, or a build on its replacement), not the copy's error.
      if (parent && this.store.get(namespace, snapshot.parent)?.id !== parent.id) throw new ParentChanged();
      throw err;
    }
    let placed: number | undefined;
    let record: SnapshotRecord;
    try {
      record = this.store.create(
        namespace,
        { ...snapshot, now: Date.now() },
        (created) => {
          // The directory was built on this parent: a parent removed and made again under
          // the same key meanwhile is another snapshot.
          if (created.parentId !== parent?.id) throw new ParentChanged();
          this.backend.place(staged, created.id);
          placed = created.id;
        },
        lease,
      );
    } catch (err) {
      // Placed, then the transaction failed to commit: that directory has no row.
      this.backend.discard(placed === undefined ? staged : this.backend.pathOf(placed));
      throw err;
    }
    return this.backend.mounts(record.dir, record.kind, parents);
  }

  private mountsOf(record: SnapshotRecord): Mount[] {
    return this.backend.mounts(record.dir, record.kind, this.store.parentChain(record));
  }
}
