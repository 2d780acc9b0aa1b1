// The one metadata database every service process opens: <root>/metadata.db, SQLite
// in WAL mode (one writer at a time, readers never blocked). Each service owns its
// tables (content: blobs; images: images; snapshots: snapshots; metadata: namespaces,
// leases) and is the only one writing them, but they live in one file so that what
// must be atomic across services is one transaction:
// - deleting a namespace checks every table and deletes in the same transaction, and
//   every write ensures its namespace inside its own transaction, so a write racing a
//   namespace delete either lands first (and the delete is refused) or re-creates the
//   namespace (as containerd does implicitly) — never an object in a deleted namespace;
// - the garbage collector marks from every root and deletes every unreachable record
//   in one transaction, so a crash between mark and sweep rolls back to a consistent
//   store and the next run does the work.
// Files (blobs, snapshot directories) are removed by the process that owns them, after
// their rows are gone (see services/content/sweep.ts, the snapshotters' cleanup()).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { notFound } from "./errors.ts";
import { cachedStatement, keepReserve, openDatabase, transaction, type Database } from "./sqlite.ts";

export type { Database };

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
CREATE TABLE IF NOT EXISTS blobs (
  namespace  TEXT    NOT NULL REFERENCES namespaces(name),
  digest     TEXT    NOT NULL,
  size       INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  labels     TEXT    NOT NULL DEFAULT '{}',
  PRIMARY KEY (namespace, digest)
);
CREATE INDEX IF NOT EXISTS blobs_by_digest ON blobs (digest);
CREATE TABLE IF NOT EXISTS images (
  namespace   TEXT    NOT NULL REFERENCES namespaces(name),
  name        TEXT    NOT NULL,
  media_type  TEXT    NOT NULL,
  digest      TEXT    NOT NULL,
  size        INTEGER NOT NULL,
  annotations TEXT    NOT NULL DEFAULT '{}',
  labels      TEXT    NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  namespace   TEXT    NOT NULL REFERENCES namespaces(name),
  snapshotter TEXT    NOT NULL,
  key         TEXT    NOT NULL,
  parent_id   INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
  kind        INTEGER NOT NULL,
  labels      TEXT    NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  size        INTEGER NOT NULL DEFAULT 0,
  inodes      INTEGER NOT NULL DEFAULT 0,
  UNIQUE (namespace, snapshotter, key)
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots (parent_id);
-- Committed snapshots that hold an unpacked layer chain (named by its chain id), and the
-- snapshot directory that holds their files: their own, or one another namespace's
-- unpack made (services/snapshots/store.ts share()). A directory lives while any row names it.
CREATE TABLE IF NOT EXISTS snapshot_layers (
  snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id) ON DELETE CASCADE,
  dir_id      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshot_layers_dir ON snapshot_layers (dir_id);
CREATE TABLE IF NOT EXISTS containers (
  namespace   TEXT    NOT NULL REFERENCES namespaces(name),
  id          TEXT    NOT NULL,
  image       TEXT    NOT NULL DEFAULT '',
  snapshotter TEXT    NOT NULL DEFAULT '',
  snapshot_key TEXT   NOT NULL DEFAULT '',
  labels      TEXT    NOT NULL DEFAULT '{}',
  record      BLOB,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
`;

/** Opens (creating if needed) <root>/metadata.db with every service's tables. */
export function openMetadataDatabase(root: string): Database {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const db = openDatabase(join(root, "metadata.db"), schema);
  keepReserve(db, join(root, "metadata.reserve"));
  return db;
}

const ensureNamespaceSql = "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, '{}', ?)";

/**
 * Makes the namespace exist. Call it inside the transaction that writes into the
 * namespace, so that write and namespace are one atomic step (see the header).
 */
export function ensureNamespace(db: Database, namespace: string): void {
  cachedStatement(db, ensureNamespaceSql).run(namespace, Date.now());
}

/** A lease resource type: "content", "ingests" or "snapshots/<snapshotter>". */
export interface LeaseResource {
  type: string;
  id: string;
}

/** Adds the resource to the lease; NOT_FOUND when the lease does not exist. Idempotent. */
export function addLeaseResource(db: Database, namespace: string, lease: string, resource: LeaseResource): void {
  const exists = cachedStatement(db, "SELECT 1 FROM leases WHERE namespace = ? AND id = ?").get(namespace, lease);
  if (!exists) throw notFound(`lease "${lease}"`);
  cachedStatement(db, "INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)").run(
    namespace,
    lease,
    resource.type,
    resource.id,
  );
}

/** Drops the resource from the lease; a missing lease or resource is harmless. */
export function removeLeaseResource(db: Database, namespace: string, lease: string, resource: LeaseResource): void {
  cachedStatement(db, "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?").run(
    namespace,
    lease,
    resource.type,
    resource.id,
  );
}

/**
 * What a write into a namespace needs from the metadata model, bound to one
 * process's connection: the namespace made to exist, and the written object put on
 * the caller's lease, in one transaction with the write itself when called from it.
 */
export class NamespacedWrites {
  readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  /** Runs `write` in one transaction after making the namespace exist and leasing `resource`. */
  write<T>(namespace: string, lease: string | undefined, resource: LeaseResource | undefined, write: () => T): T {
    return transaction(this.db, () => {
      ensureNamespace(this.db, namespace);
      if (lease && resource) addLeaseResource(this.db, namespace, lease, resource);
      return write();
    });
  }

  /** Leases `resource` (and so the namespace exists) in a transaction of its own. */
  lease(namespace: string, lease: string, resource: LeaseResource): void {
    transaction(this.db, () => addLeaseResource(this.db, namespace, lease, resource));
  }

  ensureNamespace(namespace: string): void {
    ensureNamespace(this.db, namespace);
  }

  release(namespace: string, lease: string, resource: LeaseResource): void {
    removeLeaseResource(this.db, namespace, lease, resource);
  }
}
