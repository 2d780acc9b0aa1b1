// The metadata service's records — namespaces, leases and the resources leases
// hold — in the shared metadata database, so that deleting a namespace checks every
// service's table and deletes in one transaction.
import { ensureNamespace, type Database, type LeaseResource } from "../../core/metadata-db.ts";
import { cachedStatement, freeingTransaction, parseLabels, transaction } from "../../core/sqlite.ts";

export type { LeaseResource };

export interface NamespaceRecord {
  name: string;
  labels: Record<string, string>;
}

export interface LeaseRecord {
  id: string;
  createdAtMs: number;
  labels: Record<string, string>;
}

/** "deleted", "not found", or what the namespace still holds, e.g. ["2 images", "4 blobs"]. */
export type NamespaceDeleteResult = "deleted" | "not found" | string[];

export interface NamespaceStore {
  get(name: string): NamespaceRecord | undefined;
  list(): NamespaceRecord[];
  /** False when the name exists already. */
  create(namespace: NamespaceRecord): boolean;
  /** Replaces the labels through `change`; undefined when the namespace is missing. */
  updateLabels(name: string, change: (current: Record<string, string>) => Record<string, string>): NamespaceRecord | undefined;
  /**
   * Deletes the namespace unless it still holds images, containers, blobs or
   * snapshots; its leases go with it (as containerd's do).
   */
  delete(name: string): NamespaceDeleteResult;
}

export interface LeaseStore {
  /** Creates the lease (and its namespace, implicitly); false when the id exists. */
  create(namespace: string, lease: LeaseRecord): boolean;
  /** False when there was no such lease. Its resources go with it (the collector frees what they held). */
  delete(namespace: string, id: string): boolean;
  get(namespace: string, id: string): LeaseRecord | undefined;
  list(namespace: string): LeaseRecord[];
  /** False when the lease is missing. Adding a resource twice is harmless. */
  addResource(namespace: string, lease: string, resource: LeaseResource): boolean;
  /** False when the lease is missing; removing a resource the lease lacks is harmless. */
  deleteResource(namespace: string, lease: string, resource: LeaseResource): boolean;
  /** Undefined when the lease is missing. */
  listResources(namespace: string, lease: string): LeaseResource[] | undefined;
}


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

export function metadataStore(db: Database): MetadataStore {
  return { namespaces: new SqliteNamespaceStore(db), leases: new SqliteLeaseStore(db), close: () => db.close() };
}

const ensureNamespaceSql = "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, ?, ?)";

/** The objects that keep a namespace from being deleted, by table, in containerd's words. */
const holders = [
  { table: "images", word: "image" },
  { table: "containers", word: "container" },
  { table: "blobs", word: "blob" },
  { table: "snapshots", word: "snapshot" },
] as const;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

class SqliteNamespaceStore implements NamespaceStore {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  get(name: string): NamespaceRecord | undefined {
    const row = cachedStatement(this.db, "SELECT name, labels FROM namespaces WHERE name = ?").get(name) as NamespaceRow | undefined;
    return row && toNamespace(row);
  }

  list(): NamespaceRecord[] {
    const rows = cachedStatement(this.db, "SELECT name, labels FROM namespaces ORDER BY name").all() as unknown as NamespaceRow[];
    return rows.map(toNamespace);
  }

  create(ns: NamespaceRecord): boolean {
    return cachedStatement(this.db, ensureNamespaceSql).run(ns.name, JSON.stringify(ns.labels), Date.now()).changes === 1;
  }

  updateLabels(name: string, change: (current: Record<string, string>) => Record<string, string>): NamespaceRecord | undefined {
    return transaction(this.db, () => {
      const current = this.get(name);
      if (!current) return undefined;
      const labels = change(current.labels);
      cachedStatement(this.db, "UPDATE namespaces SET labels = ? WHERE name = ?").run(JSON.stringify(labels), name);
      return { name, labels };
    });
  }

  delete(name: string): NamespaceDeleteResult {
    return freeingTransaction(this.db, () => {
      if (!this.get(name)) return "not found";
      const held: string[] = [];
      for (const { table, word } of holders) {
        const { n } = cachedStatement(this.db, `SELECT COUNT(*) AS n FROM ${table} WHERE namespace = ?`).get(name) as { n: number };
        if (Number(n) > 0) held.push(plural(Number(n), word));
      }
      if (held.length > 0) return held;
      cachedStatement(this.db, "DELETE FROM leases WHERE namespace = ?").run(name);
      cachedStatement(this.db, "DELETE FROM namespaces WHERE name = ?").run(name);
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
      ensureNamespace(this.db, namespace);
      const result = cachedStatement(this.db, "INSERT OR IGNORE INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)")
        .run(namespace, lease.id, JSON.stringify(lease.labels), lease.createdAtMs);
      return result.changes === 1;
    });
  }

  delete(namespace: string, id: string): boolean {
    return freeingTransaction(this.db, () => cachedStatement(this.db, "DELETE FROM leases WHERE namespace = ? AND id = ?").run(namespace, id).changes === 1);
  }

  get(namespace: string, id: string): LeaseRecord | undefined {
    const row = cachedStatement(this.db, "SELECT id, labels, created_at FROM leases WHERE namespace = ? AND id = ?")
      .get(namespace, id) as LeaseRow | undefined;
    return row && toLease(row);
  }

  list(namespace: string): LeaseRecord[] {
    const rows = cachedStatement(this.db, "SELECT id, labels, created_at FROM leases WHERE namespace = ? ORDER BY id")
      .all(namespace) as unknown as LeaseRow[];
    return rows.map(toLease);
  }

  addResource(namespace: string, lease: string, resource: LeaseResource): boolean {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return false;
      cachedStatement(this.db, "INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)")
        .run(namespace, lease, resource.type, resource.id);
      return true;
    });
  }

  deleteResource(namespace: string, lease: string, resource: LeaseResource): boolean {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return false;
      cachedStatement(this.db, "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?")
        .run(namespace, lease, resource.type, resource.id);
      return true;
    });
  }

  listResources(namespace: string, lease: string): LeaseResource[] | undefined {
    return transaction(this.db, () => {
      if (!this.get(namespace, lease)) return undefined;
      return cachedStatement(this.db, "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY type, id")
        .all(namespace, lease) as unknown as LeaseResource[];
    });
  }
}
