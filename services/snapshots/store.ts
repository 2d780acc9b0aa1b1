// Snapshot records per namespace, for one snapshotter. Keys are arbitrary strings, so
// each snapshot gets a numeric id (never reused: AUTOINCREMENT) and the snapshotter
// names its directory after that id. A parent is referenced by id, so committing (which
// renames key → name) keeps every link valid. Kinds use the proto's numbers.
//
// Layer sharing: a committed snapshot an unpack made (Prepare labelled
// containerd.io/snapshot.ref with the name it was then committed under, a chain id) is
// a layer row in snapshot_layers, naming the directory that holds its files. Another
// namespace's unpack of the same chain id gets rows of its own over that directory
// (share()) instead of extracting again: the chain id hashes the whole layer chain, so
// the bytes are the same. A directory is in use while any row names it; rows are only
// ever added or deleted in one transaction each, so there is no count to drift.
import type { StatementSync } from "node:sqlite";
import { Kind } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../../core/errors.ts";
import { addLeaseResource, NamespacedWrites, removeLeaseResource, type Database } from "../../core/metadata-db.ts";
import { freeingTransaction, parseLabels, transaction } from "../../core/sqlite.ts";
import { snapshotRefLabel } from "../../core/image/layer-share.ts";

export type SnapshotKind = typeof Kind.VIEW | typeof Kind.ACTIVE | typeof Kind.COMMITTED;

export interface SnapshotRecord {
  id: number;
  /** The snapshot directory holding its files: its own id, or a shared layer's. */
  dir: number;
  /** The key (active, view) or name (committed) in its namespace. */
  key: string;
  /** The parent's key, "" when none. */
  parent: string;
  parentId: number | undefined;
  kind: SnapshotKind;
  labels: Record<string, string>;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  /** Usage recorded at commit (0 for active snapshots and views). */
  size: bigint;
  inodes: bigint;
}

export interface NewSnapshot {
  key: string;
  parent: string;
  kind: typeof Kind.VIEW | typeof Kind.ACTIVE;
  labels: Record<string, string>;
  now: number;
}

export interface SnapshotStore {
  get(namespace: string, key: string): SnapshotRecord | undefined;
  /** A namespace's snapshots ordered by key (byte order, like containerd's bolt buckets). */
  list(namespace: string): SnapshotRecord[];
  /**
   * The rules a new snapshot must meet in its namespace (snapshot.ref target and key
   * free, parent present and committed); returns the parent. create() checks them again
   * inside its transaction; calling this first refuses a bad request before any work.
   */
  check(namespace: string, snapshot: Pick<NewSnapshot, "key" | "parent" | "labels">): SnapshotRecord | undefined;
  /**
   * Checks the new snapshot against the namespace (key free, parent present and
   * committed), inserts it (with its namespace, and on `lease` when given) and calls
   * `materialize(id)` inside the same transaction, so the row only exists if
   * materialize (making its directory) succeeded and the lease took it.
   */
  create(namespace: string, snapshot: NewSnapshot, materialize: (record: SnapshotRecord) => void, lease?: string): SnapshotRecord;
  /** Turns the active snapshot `key` into the committed snapshot `name`; the lease trades key for name. */
  commit(
    namespace: string,
    key: string,
    name: string,
    labels: Record<string, string>,
    usage: Usage,
    now: number,
    lease?: string,
    parent?: string,
  ): SnapshotRecord;
  /**
   * The committed snapshot `parent` that the parentless active snapshot `active` may be
   * committed on: FAILED_PRECONDITION when `active` has a parent already, NOT_FOUND /
   * INVALID_ARGUMENT when `parent` is missing or not committed.
   */
  rebaseParent(namespace: string, active: SnapshotRecord, parent: string): SnapshotRecord;
  /**
   * Deletes the row (and its entry on `lease`); FAILED_PRECONDITION while the snapshot
   * has children. `dirFreed`: no row names its directory any more, so it may go.
   */
  remove(namespace: string, key: string, lease?: string): SnapshotRecord & { dirFreed: boolean };
  /** Reads, changes and writes the labels in one transaction. */
  updateLabels(
    namespace: string,
    key: string,
    change: (current: SnapshotRecord) => Record<string, string>,
    now: number,
  ): SnapshotRecord;
  /** The parents' directories, nearest first. */
  parentChain(record: SnapshotRecord): number[];
  /** Every directory of this snapshotter that a row in any namespace names (what Cleanup must keep). */
  ids(): Set<number>;
  /**
   * Gives `namespace` the committed layer `target` (and those of its parents it lacks)
   * over the directories of another namespace's layer rows, in one transaction, on
   * `lease` when given. `parent` is the Prepare's: "" (any), else the name target's
   * parent must have. Returns the names it added, bottom first (none when no other
   * namespace shares such a chain).
   */
  share(namespace: string, target: string, parent: string, now: number, lease?: string): string[];
  /** Whether a namespace keeps its layers to itself (label containerd.io/namespace.shareable=false). */
  isolated(namespace: string): boolean;
}

export interface Usage {
  size: bigint;
  inodes: bigint;
}


interface SnapshotRow {
  id: bigint;
  dir: bigint;
  key: string;
  parent: string | null;
  parent_id: bigint | null;
  kind: bigint;
  labels: string;
  created_at: bigint;
  updated_at: bigint;
  size: bigint;
  inodes: bigint;
}

const select = `SELECT s.id, COALESCE(l.dir_id, s.id) AS dir, s.key, p.key AS parent, s.parent_id, s.kind, s.labels, s.created_at, s.updated_at, s.size, s.inodes
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id LEFT JOIN snapshot_layers l ON l.snapshot_id = s.id`;

/** A snapshot's lease resource type (the id is its key), as containerd names it. */
export const snapshotLeaseType = (snapshotter: string) => `snapshots/${snapshotter}`;

function recordFromRow(row: SnapshotRow): SnapshotRecord {
  return {
    id: Number(row.id),
    dir: Number(row.dir),
    key: row.key,
    parent: row.parent ?? "",
    parentId: row.parent_id === null ? undefined : Number(row.parent_id),
    kind: Number(row.kind) as SnapshotKind,
    labels: parseLabels(row.labels),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    size: BigInt(row.size),
    inodes: BigInt(row.inodes),
  };
}

export const snapshotNotFound = (key: string) => notFound(`snapshot ${key} does not exist`);

/** Label the Go client's unpacker sets to the target chain id, so a shared layer is found. */
export { snapshotRefLabel };

/** containerd's namespace label for sharing; Berth shares unless it is "false" (see docs/snapshotters.md). */
const shareableLabel = "containerd.io/namespace.shareable";

/** A row of a chain share() copies from. */
interface LayerSourceRow {
  id: bigint;
  key: string;
  parent_id: bigint | null;
  kind: bigint;
  size: bigint;
  inodes: bigint;
  dir_id: bigint | null;
}

export class SqliteSnapshotStore implements SnapshotStore {
  private readonly db: Database;
  private readonly writes: NamespacedWrites;
  private readonly selectOne: StatementSync;
  private readonly selectAll: StatementSync;
  private readonly selectChild: StatementSync;
  private readonly selectIds: StatementSync;
  private readonly insert: StatementSync;
  private readonly toCommitted: StatementSync;
  private readonly writeLabels: StatementSync;
  private readonly setParent: StatementSync;
  private readonly deleteOne: StatementSync;
  private readonly selectDirById: StatementSync;
  private readonly selectLayerSources: StatementSync;
  private readonly selectSourceRow: StatementSync;
  private readonly selectDirUser: StatementSync;
  private readonly selectNamespaceLabels: StatementSync;
  private readonly insertShared: StatementSync;
  private readonly insertLayer: StatementSync;
  private readonly snapshotter: string;
  private readonly leaseType: string;

  /** The records of one snapshotter (by name) in the shared metadata database. */
  constructor(db: Database, snapshotter: string) {
    this.db = db;
    this.writes = new NamespacedWrites(db);
    this.snapshotter = snapshotter;
    this.leaseType = snapshotLeaseType(snapshotter);
    const mine = `s.snapshotter = '${snapshotter.replaceAll("'", "''")}'`;
    this.selectOne = this.db.prepare(`${select} WHERE ${mine} AND s.namespace = ? AND s.key = ?`);
    this.selectAll = this.db.prepare(`${select} WHERE ${mine} AND s.namespace = ? ORDER BY s.key`);
    this.selectChild = this.db.prepare(`SELECT id FROM snapshots WHERE parent_id = ? LIMIT 1`);
    this.selectIds = this.db.prepare(`SELECT COALESCE(l.dir_id, s.id) AS id FROM snapshots s LEFT JOIN snapshot_layers l ON l.snapshot_id = s.id WHERE ${mine}`);
    this.selectDirById = this.db.prepare(`SELECT s.parent_id, COALESCE(l.dir_id, s.id) AS dir FROM snapshots s LEFT JOIN snapshot_layers l ON l.snapshot_id = s.id WHERE s.id = ?`);
    this.selectLayerSources = this.db.prepare(
      `SELECT s.id, s.namespace FROM snapshots s JOIN snapshot_layers l ON l.snapshot_id = s.id WHERE ${mine} AND s.key = ? AND s.namespace != ? AND s.kind = ${Kind.COMMITTED} ORDER BY s.id`,
    );
    this.selectSourceRow = this.db.prepare(
      `SELECT s.id, s.key, s.parent_id, s.kind, s.size, s.inodes, l.dir_id FROM snapshots s LEFT JOIN snapshot_layers l ON l.snapshot_id = s.id WHERE s.id = ?`,
    );
    // A directory is named by its own row (while that row is not a shared one) or by layer rows.
    this.selectDirUser = this.db.prepare(
      `SELECT 1 FROM snapshot_layers WHERE dir_id = ?1 UNION ALL SELECT 1 FROM snapshots s WHERE s.id = ?1 AND NOT EXISTS (SELECT 1 FROM snapshot_layers l WHERE l.snapshot_id = s.id) LIMIT 1`,
    );
    this.selectNamespaceLabels = this.db.prepare(`SELECT labels FROM namespaces WHERE name = ?`);
    this.insertShared = this.db.prepare(
      `INSERT INTO snapshots (namespace, snapshotter, key, parent_id, kind, labels, created_at, updated_at, size, inodes) VALUES (?, ?, ?, ?, ${Kind.COMMITTED}, '{}', ?, ?, ?, ?)`,
    );
    this.insertLayer = this.db.prepare(`INSERT INTO snapshot_layers (snapshot_id, dir_id) VALUES (?, ?)`);
    this.insert = this.db.prepare(
      `INSERT INTO snapshots (namespace, snapshotter, key, parent_id, kind, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.toCommitted = this.db.prepare(
      `UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, updated_at = ?, size = ?, inodes = ? WHERE id = ?`,
    );
    this.writeLabels = this.db.prepare(`UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?`);
    this.deleteOne = this.db.prepare(`DELETE FROM snapshots WHERE id = ?`);
    this.setParent = this.db.prepare(`UPDATE snapshots SET parent_id = ? WHERE id = ?`);
    for (const statement of [this.selectOne, this.selectAll, this.selectIds, this.selectChild, this.selectDirById, this.selectLayerSources, this.selectSourceRow]) {
      statement.setReadBigInts(true);
    }
  }

  get(namespace: string, key: string): SnapshotRecord | undefined {
    const row = this.selectOne.get(namespace, key) as SnapshotRow | undefined;
    return row ? recordFromRow(row) : undefined;
  }

  list(namespace: string): SnapshotRecord[] {
    return (this.selectAll.all(namespace) as unknown as SnapshotRow[]).map(recordFromRow);
  }

  check(namespace: string, snapshot: Pick<NewSnapshot, "key" | "parent" | "labels">): SnapshotRecord | undefined {
    const target = snapshot.labels[snapshotRefLabel];
    if (target !== undefined && target !== "" && this.get(namespace, target)) {
      throw alreadyExists(`target snapshot ${JSON.stringify(target)}`);
    }
    if (this.get(namespace, snapshot.key)) throw alreadyExists(`snapshot ${JSON.stringify(snapshot.key)}`);
    if (snapshot.parent === "") return undefined;
    const parent = this.get(namespace, snapshot.parent);
    if (!parent) throw notFound(`parent snapshot ${snapshot.parent} does not exist`);
    if (parent.kind !== Kind.COMMITTED) {
      throw invalidArgument(`failed to create snapshot: parent ${JSON.stringify(snapshot.parent)} is not committed snapshot`);
    }
    return parent;
  }

  create(namespace: string, snapshot: NewSnapshot, materialize: (record: SnapshotRecord) => void, lease?: string): SnapshotRecord {
    return this.writes.write(namespace, lease, { type: this.leaseType, id: snapshot.key }, () => {
      const parentId = this.check(namespace, snapshot)?.id;
      const result = this.insert.run(
        namespace,
        this.snapshotter,
        snapshot.key,
        parentId ?? null,
        snapshot.kind,
        JSON.stringify(snapshot.labels),
        snapshot.now,
        snapshot.now,
      );
      const id = Number(result.lastInsertRowid);
      const record: SnapshotRecord = {
        id,
        dir: id,
        key: snapshot.key,
        parent: snapshot.parent,
        parentId,
        kind: snapshot.kind,
        labels: snapshot.labels,
        createdAt: snapshot.now,
        updatedAt: snapshot.now,
        size: 0n,
        inodes: 0n,
      };
      materialize(record);
      return record;
    });
  }

  commit(
    namespace: string,
    key: string,
    name: string,
    labels: Record<string, string>,
    usage: Usage,
    now: number,
    lease?: string,
    parent = "",
  ): SnapshotRecord {
    return transaction(this.db, () => {
      if (lease) {
        addLeaseResource(this.db, namespace, lease, { type: this.leaseType, id: name });
        removeLeaseResource(this.db, namespace, lease, { type: this.leaseType, id: key });
      }
      if (this.get(namespace, name)) throw alreadyExists(`snapshot ${JSON.stringify(name)}`);
      const active = this.get(namespace, key);
      if (!active) throw snapshotNotFound(key);
      if (active.kind !== Kind.ACTIVE) throw failedPrecondition(`failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`);
      const rebased = parent === "" ? undefined : this.rebaseParent(namespace, active, parent);
      // containerd gives the committed snapshot fresh timestamps and only the commit's labels.
      this.toCommitted.run(name, Kind.COMMITTED, JSON.stringify(labels), now, now, usage.size, usage.inodes, active.id);
      // An unpack's layer: prepared for the chain id it is now committed as.
      if (active.labels[snapshotRefLabel] === name) this.insertLayer.run(active.id, active.dir);
      if (rebased) this.setParent.run(rebased.id, active.id);
      const chained = rebased ? { parent, parentId: rebased.id } : {};
      return { ...active, ...chained, key: name, kind: Kind.COMMITTED, labels, createdAt: now, updatedAt: now, size: usage.size, inodes: usage.inodes };
    });
  }

  rebaseParent(namespace: string, active: SnapshotRecord, parent: string): SnapshotRecord {
    if (active.parentId !== undefined) {
      throw failedPrecondition(`failed to commit snapshot ${JSON.stringify(active.key)}: it has parent ${JSON.stringify(active.parent)} already`);
    }
    const found = this.get(namespace, parent);
    if (!found) throw notFound(`parent snapshot ${parent} does not exist`);
    if (found.kind !== Kind.COMMITTED) throw invalidArgument(`failed to commit snapshot: parent ${JSON.stringify(parent)} is not committed snapshot`);
    return found;
  }

  remove(namespace: string, key: string, lease?: string): SnapshotRecord & { dirFreed: boolean } {
    return freeingTransaction(this.db, () => {
      const record = this.get(namespace, key);
      if (!record) throw snapshotNotFound(key);
      if (this.selectChild.get(record.id)) throw failedPrecondition("cannot remove snapshot with child");
      this.deleteOne.run(record.id);
      if (lease) removeLeaseResource(this.db, namespace, lease, { type: this.leaseType, id: key });
      return { ...record, dirFreed: this.selectDirUser.get(record.dir) === undefined };
    });
  }

  updateLabels(
    namespace: string,
    key: string,
    change: (current: SnapshotRecord) => Record<string, string>,
    now: number,
  ): SnapshotRecord {
    return transaction(this.db, () => {
      const current = this.get(namespace, key);
      if (!current) throw snapshotNotFound(key);
      const labels = change(current);
      this.writeLabels.run(JSON.stringify(labels), now, current.id);
      return { ...current, labels, updatedAt: now };
    });
  }

  parentChain(record: SnapshotRecord): number[] {
    const chain: number[] = [];
    let next = record.parentId;
    while (next !== undefined) {
      const row = this.selectDirById.get(next) as { parent_id: bigint | null; dir: bigint } | undefined;
      if (!row) throw notFound(`parent of snapshot ${record.key} is missing`);
      chain.push(Number(row.dir));
      next = row.parent_id === null ? undefined : Number(row.parent_id);
    }
    return chain;
  }

  ids(): Set<number> {
    return new Set((this.selectIds.all() as { id: bigint }[]).map((row) => Number(row.id)));
  }

  isolated(namespace: string): boolean {
    const row = this.selectNamespaceLabels.get(namespace) as { labels: string } | undefined;
    return row !== undefined && parseLabels(row.labels)[shareableLabel] === "false";
  }

  share(namespace: string, target: string, parent: string, now: number, lease?: string): string[] {
    return transaction(this.db, () => {
      if (this.isolated(namespace) || this.get(namespace, target)) return [];
      const sources = this.selectLayerSources.all(target, namespace) as { id: bigint; namespace: string }[];
      for (const source of sources) {
        if (this.isolated(source.namespace)) continue;
        const chain = this.missingChain(namespace, source.id);
        if (!chain) continue;
        // A Prepare on a parent takes the layer only where that parent is the one below it.
        if (parent !== "" && (chain.missing.length !== 1 || chain.base?.key !== parent)) return [];
        this.writes.ensureNamespace(namespace);
        let parentId: number | bigint | null = chain.base?.id ?? null;
        for (const row of chain.missing.reverse()) {
          const id: number | bigint = this.insertShared.run(namespace, this.snapshotter, row.key, parentId, now, now, row.size, row.inodes).lastInsertRowid;
          this.insertLayer.run(id, row.dir_id);
          if (lease) addLeaseResource(this.db, namespace, lease, { type: this.leaseType, id: row.key });
          parentId = id;
        }
        return chain.missing.map((row) => row.key);
      }
      return [];
    });
  }

  /**
   * The source's chain, top first, down to the first snapshot `namespace` has already
   * (`base`, by name): undefined when a row on the way is not a committed layer there.
   */
  private missingChain(namespace: string, sourceId: bigint): { missing: LayerSourceRow[]; base: SnapshotRecord | undefined } | undefined {
    const missing: LayerSourceRow[] = [];
    let next: bigint | null = sourceId;
    while (next !== null) {
      const row = this.selectSourceRow.get(next) as LayerSourceRow | undefined;
      if (!row) return undefined;
      // The namespace's own snapshot of that name is the same bytes (the chain id), layer row or not.
      const here = this.get(namespace, row.key);
      if (here) return here.kind === Kind.COMMITTED ? { missing, base: here } : undefined;
      if (row.dir_id === null || Number(row.kind) !== Kind.COMMITTED) return undefined;
      missing.push(row);
      next = row.parent_id;
    }
    return { missing, base: undefined };
  }

}
