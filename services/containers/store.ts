// Container records per namespace in the shared metadata database's containers table:
// the columns the garbage collector and filters read (image, snapshotter, snapshot key,
// labels) and the whole record as protobuf bytes (runtime, spec and extensions are Anys
// we keep as the client sent them).
import { alreadyExists, notFound } from "../../core/errors.ts";
import { Container } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { NamespacedWrites, type Database } from "../../core/metadata-db.ts";
import { cachedStatement, freeingTransaction, parseLabels, transaction } from "../../core/sqlite.ts";
import { millisFromTimestamp, timestampFromMillis } from "../../core/timestamp.ts";

interface ContainerRow {
  record: Uint8Array;
  labels: string;
  created_at: number;
  updated_at: number;
}

/** The labels that make an object reference content or snapshots for the collector (services/jobs/gc/collector.ts). */
const gcReferencePrefix = "containerd.io/gc.ref.";

const containerNotFound = (namespace: string, id: string) => notFound(`container "${id}" in namespace "${namespace}"`);

function fromRow(row: ContainerRow): Container {
  return {
    ...Container.decode(row.record),
    labels: parseLabels(row.labels),
    createdAt: timestampFromMillis(Number(row.created_at)),
    updatedAt: timestampFromMillis(Number(row.updated_at)),
  };
}

export class ContainerStore {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  private row(namespace: string, id: string): ContainerRow | undefined {
    return cachedStatement(this.db, "SELECT record, labels, created_at, updated_at FROM containers WHERE namespace = ? AND id = ?").get(namespace, id) as
      | ContainerRow
      | undefined;
  }

  get(namespace: string, id: string): Container {
    const row = this.row(namespace, id);
    if (!row) throw containerNotFound(namespace, id);
    return fromRow(row);
  }

  /** Ordered by id (byte order, like containerd's bolt keys). */
  list(namespace: string): Container[] {
    const rows = cachedStatement(this.db, "SELECT record, labels, created_at, updated_at FROM containers WHERE namespace = ? ORDER BY id").all(namespace);
    return (rows as unknown as ContainerRow[]).map(fromRow);
  }

  create(namespace: string, container: Container, now: number): Container {
    return new NamespacedWrites(this.db).write(namespace, undefined, undefined, () => {
      if (this.row(namespace, container.id)) throw alreadyExists(`container "${container.id}"`);
      this.write("INSERT", namespace, container, now, now);
      return { ...container, createdAt: timestampFromMillis(now), updatedAt: timestampFromMillis(now) };
    });
  }

  /** Reads, changes (through `change`, which may throw) and writes in one transaction. */
  update(namespace: string, id: string, change: (current: Container) => Container, now: number): Container {
    return transaction(this.db, () => {
      const current = this.get(namespace, id);
      const next = change(current);
      this.write("UPDATE", namespace, next, millisFromTimestamp(current.createdAt) ?? now, now);
      return { ...next, createdAt: current.createdAt, updatedAt: timestampFromMillis(now) };
    });
  }

  delete(namespace: string, id: string): void {
    const { changes } = freeingTransaction(this.db, () => cachedStatement(this.db, "DELETE FROM containers WHERE namespace = ? AND id = ?").run(namespace, id));
    if (Number(changes) === 0) throw containerNotFound(namespace, id);
  }

  /**
   * Whether deleting `container` may leave something for the garbage collector: what it
   * references itself (its snapshot while that exists, its gc.ref labels), or, with its
   * image record gone, the snapshot chain and content its removed snapshot sat on. After
   * `ctr run --rm` none holds (ctr removed the snapshot, the image stays), and the
   * collection asked for every run found nothing while it took the CPU of the next run.
   */
  mayLeaveGarbage(namespace: string, container: Container): boolean {
    if (Object.keys(container.labels).some((label) => label.startsWith(gcReferencePrefix))) return true;
    if (container.snapshotKey !== "") {
      const snapshot = cachedStatement(this.db, "SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?").get(namespace, container.snapshotter, container.snapshotKey);
      if (snapshot !== undefined) return true;
    }
    if (container.image === "") return false;
    return cachedStatement(this.db, "SELECT 1 FROM images WHERE namespace = ? AND name = ?").get(namespace, container.image) === undefined;
  }

  private write(how: "INSERT" | "UPDATE", namespace: string, c: Container, createdAt: number, updatedAt: number): void {
    const record = Container.encode({ ...c, labels: {}, createdAt: undefined, updatedAt: undefined }).finish();
    const values = [c.image, c.snapshotter, c.snapshotKey, JSON.stringify(c.labels), record, createdAt, updatedAt] as const;
    if (how === "INSERT") {
      cachedStatement(this.db, "INSERT INTO containers (image, snapshotter, snapshot_key, labels, record, created_at, updated_at, namespace, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .run(...values, namespace, c.id);
    } else {
      cachedStatement(this.db, "UPDATE containers SET image = ?, snapshotter = ?, snapshot_key = ?, labels = ?, record = ?, created_at = ?, updated_at = ? WHERE namespace = ? AND id = ?")
        .run(...values, namespace, c.id);
    }
  }
}
