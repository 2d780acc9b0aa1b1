// Image records (name → target descriptor + labels) per namespace. The service talks
// to the ImageStore interface; SqliteImageStore keeps them in the shared metadata
// database's images table, one transaction per change (which also makes the namespace
// exist, see core/metadata-db.ts).
import type { StatementSync } from "node:sqlite";
import { ensureNamespace, type Database } from "../../core/metadata-db.ts";
import { freeingTransaction, parseLabels, transaction } from "../../core/sqlite.ts";
import { alreadyExists, notFound } from "../../core/errors.ts";

export interface ImageTarget {
  mediaType: string;
  digest: string;
  size: bigint;
  annotations: Record<string, string>;
}

export interface ImageRecord {
  name: string;
  labels: Record<string, string>;
  target: ImageTarget;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
}

export interface ImageStore {
  get(namespace: string, name: string): ImageRecord | undefined;
  /** All images of a namespace, ordered by name (byte order, like containerd's bolt keys). */
  list(namespace: string): ImageRecord[];
  /** Inserts a new record; ALREADY_EXISTS when the name is taken. */
  create(namespace: string, image: ImageRecord): ImageRecord;
  /**
   * Reads the current record, lets `change` compute the new one and writes it, all in
   * one transaction. NOT_FOUND when the name is missing; a throw from `change` leaves
   * the store untouched.
   */
  update(namespace: string, name: string, change: (current: ImageRecord) => ImageRecord): ImageRecord;
  /** NOT_FOUND when the name is missing. */
  delete(namespace: string, name: string): void;
}


interface ImageRow {
  name: string;
  media_type: string;
  digest: string;
  size: bigint;
  annotations: string;
  labels: string;
  created_at: bigint;
  updated_at: bigint;
}

const columns = "name, media_type, digest, size, annotations, labels, created_at, updated_at";

function recordFromRow(row: ImageRow): ImageRecord {
  return {
    name: row.name,
    labels: parseLabels(row.labels),
    target: {
      mediaType: row.media_type,
      digest: row.digest,
      size: BigInt(row.size),
      annotations: parseLabels(row.annotations),
    },
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** The columns after `name`, in schema order (INSERT takes them after namespace and name, UPDATE before). */
function rowValues(image: ImageRecord) {
  const { target } = image;
  return [
    target.mediaType,
    target.digest,
    target.size,
    JSON.stringify(target.annotations),
    JSON.stringify(image.labels),
    image.createdAt,
    image.updatedAt,
  ] as const;
}

export const imageNotFound = (name: string) => notFound(`image ${JSON.stringify(name)}`);

export class SqliteImageStore implements ImageStore {
  private readonly db: Database;
  private readonly selectOne: StatementSync;
  private readonly selectAll: StatementSync;
  private readonly insert: StatementSync;
  private readonly replace: StatementSync;
  private readonly remove: StatementSync;

  constructor(db: Database) {
    this.db = db;
    this.selectOne = this.db.prepare(`SELECT ${columns} FROM images WHERE namespace = ? AND name = ?`);
    this.selectAll = this.db.prepare(`SELECT ${columns} FROM images WHERE namespace = ? ORDER BY name`);
    // int64 sizes must survive beyond 2^53.
    this.selectOne.setReadBigInts(true);
    this.selectAll.setReadBigInts(true);
    this.insert = this.db.prepare(
      `INSERT INTO images (namespace, ${columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.replace = this.db.prepare(
      `UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, labels = ?, created_at = ?, updated_at = ?
       WHERE namespace = ? AND name = ?`,
    );
    this.remove = this.db.prepare(`DELETE FROM images WHERE namespace = ? AND name = ?`);
  }

  get(namespace: string, name: string): ImageRecord | undefined {
    const row = this.selectOne.get(namespace, name) as ImageRow | undefined;
    return row ? recordFromRow(row) : undefined;
  }

  list(namespace: string): ImageRecord[] {
    return (this.selectAll.all(namespace) as unknown as ImageRow[]).map(recordFromRow);
  }

  create(namespace: string, image: ImageRecord): ImageRecord {
    return transaction(this.db, () => {
      ensureNamespace(this.db, namespace);
      if (this.selectOne.get(namespace, image.name)) throw alreadyExists(`image ${JSON.stringify(image.name)}`);
      this.insert.run(namespace, image.name, ...rowValues(image));
      return image;
    });
  }

  update(namespace: string, name: string, change: (current: ImageRecord) => ImageRecord): ImageRecord {
    return transaction(this.db, () => {
      const row = this.selectOne.get(namespace, name) as ImageRow | undefined;
      if (!row) throw imageNotFound(name);
      const next = change(recordFromRow(row));
      this.replace.run(...rowValues(next), namespace, name);
      return next;
    });
  }

  delete(namespace: string, name: string): void {
    const result = freeingTransaction(this.db, () => this.remove.run(namespace, name));
    if (Number(result.changes) === 0) throw imageNotFound(name);
  }

}
