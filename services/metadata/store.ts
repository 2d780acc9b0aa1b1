// The metadata service's records — namespaces, leases and the resources leases
// hold — in one SQLite file, so that "delete a namespace only while it has no
// leases" is a single transaction.
import { openDatabase, parseLabels, transaction, type Database } from "../../core/sqlite.ts";

export interface NamespaceRecord {
  name: string;
  labels: Record<string, string>;
}

export interface LeaseRecord {
  id: string;
  createdAtMs: number;
  labels: Record<string, string>;
}

export interface LeaseResource {
  type: string;
  id: string;
}

export type NamespaceDeleteResult = "deleted" | "not found" | "has leases";

export interface NamespaceStore {
  get(name: string): NamespaceRecord | undefined;
  list(): NamespaceRecord[];
  /** False when the name exists already. */
  create(namespace: NamespaceRecord): boolean;
  /** Replaces the labels through `change`; undefined when the namespace is missing. */
  updateLabels(name: string, change: (current: Record<string, string>) => Record<string, string>): NamespaceRecord | undefined;
  /** Deletes the namespace unless it still has leases. */
  delete(name: string): NamespaceDeleteResult;
}

export interface LeaseStore {
  /** Creates the lease (and its namespace, implicitly); false when the id exists. */
  create(namespace: string, lease: LeaseRecord): boolean;
  /** False when there was no such lease. Its resources go with it (nothing is collected). */
  delete(namespace: string, id: string): boolean;
  get(namespace: string, id: string): LeaseRecord | undefined;
  list(namespace: string): LeaseRecord[];
  count(namespace: string): number;
  /** False when the lease is missing. Adding a resource twice is harmless. */
  addResource(namespace: string, lease: string, resource: LeaseResource): boolean;
  /** False when the lease is missing; removing a resource the lease lacks is harmless. */
  deleteResource(namespace: string, lease: string, resource: LeaseResource): boolean;
  /** Undefined when the lease is missing. */
  listResources(namespace: string, lease: string): LeaseResource[] | undefined;
}

const schema = `
CREATE TABLE IF NOT EXISTS namespaces (
  name TEXT PRIMARY KEY,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
  namespace TEXT NOT NULL REFERENCES namespaces(name),
  id TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS lease_resources (
  namespace TEXT NOT NULL,
  lease TEXT NOT NULL,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (namespace, lease, type, id),
  FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
);
`;

interface NamespaceRow {
  name: string;
  labels: string;
}

interface LeaseRow {
  id: string;
  labels: string;
  created_at: number;
}

const toNamespace = (row: NamespaceRow): NamespaceRecord => ({ name: row.name, labels: parseLabels(row.labels) });
const toLease = (row: LeaseRow): LeaseRecord => ({ id: row.id, createdAtMs: row.created_at, labels: parseLabels(row.labels) });

export interface MetadataStore {
  namespaces: NamespaceStore;
  leases: LeaseStore;
  close(): void;
}

export function openMetadataStore(file: string): MetadataStore {
  const db = openDatabase(file, schema);
  return { namespaces: new SqliteNamespaceStore(db), leases: new SqliteLeaseStore(db), close: () => db.close() };
}

const countLeasesSql = "SELECT COUNT(*) AS n FROM leases WHERE namespace = ?";
const ensureNamespaceSql = "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, ?, ?)";

class SqliteNamespaceStore implements NamespaceStore {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  get(name: string): NamespaceRecord | undefined {
    const row = this.db.prepare("SELECT name, labels FROM namespaces WHERE name = ?").get(name) as NamespaceRow | undefined;
    return row && toNamespace(row);
  }

  list(): NamespaceRecord[] {
    const rows = this.db.prepare("SELECT name, labels FROM namespaces ORDER BY name").all() as unknown as NamespaceRow[];
    return rows.map(toNamespace);
  }

  create(ns: NamespaceRecord): boolean {
    return this.db.prepare(ensureNamespaceSql).run(ns.name, JSON.stringify(ns.labels), Date.now()).changes === 1;
  }

  updateLabels(name: string, change: (current: Record<string, string>) => Record<string, string>): NamespaceRecord | undefined {
    return transaction(this.db, () => {
      const current = this.get(name);
      if (!current) return undefined;
      const labels = change(current.labels);
      this.db.prepare("UPDATE namespaces SET labels = ? WHERE name = ?").run(JSON.stringify(labels), name);
      return { name, labels };
    });
  }

  delete(name: string): NamespaceDeleteResult {
    return transaction(this.db, () => {
      if (!this.get(name)) return "not found";
      const { n } = this.db.prepare(countLeasesSql).get(name) as { n: number };
      if (n > 0) return "has leases";
      this.db.prepare("DELETE FROM namespaces WHERE name = ?").run(name);
      return "deleted";
    });
  }
}

class SqliteLeaseStore implements LeaseStore {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  create(namespace: string, lease: LeaseRecord): boolean {
    return transaction(this.db, () => {
      this.db.prepare(ensureNamespaceSql).run(namespace, "{}", Date.now());
      const result = this.db
        .prepare("INSERT OR IGNORE INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)")
        .run(namespace, lease.id, JSON.stringify(lease.labels), lease.createdAtMs);
      return result.changes === 1;
    });
  }

  delete(namespace: string, id: string): boolean {
    return this.db.prepare("DELETE FROM leases WHERE namespace = ? AND id = ?").run(namespace, id).changes === 1;
  }

  get(namespace: string, id: string): LeaseRecord | undefined {
    const row = this.db
      .prepare("SELECT id, labels, created_at FROM leases WHERE namespace = ? AND id = ?")
      .get(namespace, id) as LeaseRow | undefined;
    return row && toLease(row);
  }

  list(namespace: string): LeaseRecord[] {
    const rows = this.db
      .prepare("SELECT id, labels, created_at FROM leases WHERE namespace = ? ORDER BY created_at, id")
      .all(namespace) as unknown as LeaseRow[];
    return rows.map(toLease);
  }

  count(namespace: string): number {
    return (this.db.prepare(countLeasesSql).get(namespace) as { n: number }).n;
  }

  addResource(namespace: string, lease: string, resource: LeaseResource): boolean {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return false;
      this.db
        .prepare("INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)")
        .run(namespace, lease, resource.type, resource.id);
      return true;
    });
  }

  deleteResource(namespace: string, lease: string, resource: LeaseResource): boolean {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return false;
      this.db
        .prepare("DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?")
        .run(namespace, lease, resource.type, resource.id);
      return true;
    });
  }

  listResources(namespace: string, lease: string): LeaseResource[] | undefined {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return undefined;
      return this.db
        .prepare("SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY type, id")
        .all(namespace, lease) as unknown as LeaseResource[];
    });
  }
}
