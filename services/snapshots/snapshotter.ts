// What the Snapshots service asks of a snapshotter: containerd's snapshots.Snapshotter
// as its metadata layer offers it, every key in a namespace (see metadata-layer.ts,
// which implements it over a backend).
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import type { SnapshotRecord, Usage } from "./store.ts";

export type { Mount, SnapshotRecord, Usage };

export interface Snapshotter {
  /** NOT_FOUND when the key is missing. */
  stat(namespace: string, key: string): SnapshotRecord;
  /** Changes labels only (a snapshot is otherwise immutable); see labelsAfterUpdate. */
  update(namespace: string, key: string, labels: Record<string, string>, paths: readonly string[]): SnapshotRecord;
  usage(namespace: string, key: string): Promise<Usage>;
  mounts(namespace: string, key: string): Mount[];
  /** `lease`, when given, takes the new key in the same transaction (a missing lease creates nothing). */
  prepare(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Promise<Mount[]>;
  view(namespace: string, key: string, parent: string, labels: Record<string, string>, lease?: string): Promise<Mount[]>;
  /**
   * Commits the active snapshot `key` as `name`; `lease` trades the key for the name.
   * `parent` (a committed snapshot) chains a parentless active snapshot at commit;
   * FAILED_PRECONDITION where the backend cannot rebase (see SnapshotBackend.rebase).
   * `copyUpDirs` (with `parent` only) take the parent chain's metadata (SnapshotBackend.rebase).
   */
  commit(namespace: string, name: string, key: string, labels: Record<string, string>, lease?: string, parent?: string, copyUpDirs?: readonly Uint8Array[]): Promise<void>;
  /** Removes the record at once; the directory goes in the background (see removing(), settled()). */
  remove(namespace: string, key: string, lease?: string): Promise<void>;
  /** Whether directories of removed snapshots are still being deleted. */
  removing(): boolean;
  /** Resolves once the directory deletions under way have ended. */
  settled(): Promise<void>;
  /** All snapshots of a namespace, ordered by key. */
  list(namespace: string): SnapshotRecord[];
  /** Removes directories no snapshot owns; returns their paths. */
  cleanup(): Promise<string[]>;
}
