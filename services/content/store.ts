// Committed content: blob files shared by every namespace under
// <root>/content/blobs/sha256/<hex>, and one row per (namespace, digest) in the shared
// metadata database that makes a blob visible in a namespace. A blob file is written
// once (by rename) and unlinked only when no namespace refers to it any more — by
// delete(), or by sweep() after the garbage collector removed rows. Only this process
// inserts blob rows, so checking rows and unlinking in one synchronous step is safe.
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { alreadyExists, notFound } from "../../core/errors.ts";
import { digestHex } from "../../core/digest.ts";
import { labelsAfterUpdate } from "../../core/labels.ts";
import type { Database, NamespacedWrites } from "../../core/metadata-db.ts";
import { cachedStatement, freeingTransaction, parseLabels, transaction } from "../../core/sqlite.ts";
import { makePrivateDir } from "../../core/private-files.ts";
import { sharedBlobDir } from "./layout.ts";

export interface BlobInfo {
  digest: string;
  size: number;
  createdAt: number;
  updatedAt: number;
  labels: Record<string, string>;
}

/** What the content service needs from committed content, per namespace. */
export interface ContentStore {
  info(namespace: string, digest: string): BlobInfo;
  /** Every blob of the namespace, ordered by digest. */
  list(namespace: string): BlobInfo[];
  /** Changes labels (the only mutable field) under a field mask; empty mask = all. */
  update(namespace: string, digest: string, labels: Record<string, string>, paths: readonly string[]): BlobInfo;
  /** Removes the namespace's row; reports whether the shared blob file went too. */
  delete(namespace: string, digest: string): { blobRemoved: boolean };
  has(namespace: string, digest: string): boolean;
  /** Size of the blob in the shared store, whatever namespace holds it. */
  sharedSize(digest: string): number | undefined;
  blobPath(digest: string): string;
  /**
   * Makes a verified blob visible in the namespace. `dataFile` (fsynced, already
   * verified against digest and size) is renamed into the shared store unless the
   * blob is there already; without it the shared blob must exist. Throws
   * already-exists when the namespace held the digest before (the data file is
   * consumed either way).
   */
  commit(
    namespace: string,
    digest: string,
    size: number,
    labels: Record<string, string>,
    dataFile?: string,
    lease?: string,
  ): Promise<BlobInfo>;
  /** Unlinks blob files no namespace refers to (after garbage collection); returns their digests. */
  sweep(): string[];
  /** Keeps the shared blob file from being unlinked until the returned function is called. */
  claim(digest: string): () => void;
}


interface BlobRow {
  digest: string;
  size: number;
  created_at: number;
  updated_at: number;
  labels: string;
}

function fromRow(row: BlobRow): BlobInfo {
  return {
    digest: row.digest,
    size: Number(row.size),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    labels: parseLabels(row.labels),
  };
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class SqliteContentStore implements ContentStore {
  private readonly db: Database;
  private readonly writes: NamespacedWrites;
  private readonly blobDir: string;
  /**
   * Digests whose file must stay although no row may refer to it yet: renamed into the
   * store with the row still to come, or an existing file a write session is about to
   * link into its namespace. delete() and sweep() leave them alone.
   */
  private readonly linking = new Map<string, number>();

  constructor(contentRoot: string, writes: NamespacedWrites) {
    this.blobDir = sharedBlobDir(contentRoot);
    for (const dir of [contentRoot, join(contentRoot, "blobs"), this.blobDir]) makePrivateDir(dir);
    this.writes = writes;
    this.db = writes.db;
  }

  blobPath(digest: string): string {
    return join(this.blobDir, digestHex(digest));
  }

  private row(namespace: string, digest: string): BlobRow | undefined {
    return cachedStatement(this.db, "SELECT digest, size, created_at, updated_at, labels FROM blobs WHERE namespace = ? AND digest = ?")
      .get(namespace, digest) as BlobRow | undefined;
  }

  has(namespace: string, digest: string): boolean {
    return this.row(namespace, digest) !== undefined;
  }

  info(namespace: string, digest: string): BlobInfo {
    const row = this.row(namespace, digest);
    if (!row) throw notFound(`content digest ${digest}`);
    return fromRow(row);
  }

  list(namespace: string): BlobInfo[] {
    const rows = cachedStatement(this.db, "SELECT digest, size, created_at, updated_at, labels FROM blobs WHERE namespace = ? ORDER BY digest")
      .all(namespace) as unknown as BlobRow[];
    return rows.map(fromRow);
  }

  update(namespace: string, digest: string, labels: Record<string, string>, paths: readonly string[]): BlobInfo {
    return transaction(this.db, () => {
      const current = this.info(namespace, digest);
      const next = labelsAfterUpdate(`content info "${digest}"`, current.labels, labels, paths);
      const updatedAt = Date.now();
      cachedStatement(this.db, "UPDATE blobs SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?")
        .run(JSON.stringify(next), updatedAt, namespace, digest);
      return { ...current, labels: next, updatedAt };
    });
  }

  delete(namespace: string, digest: string): { blobRemoved: boolean } {
    // No await between the row check and the unlink: a commit in another namespace
    // cannot link the blob in between (see commit()).
    const stillUsed = freeingTransaction(this.db, () => {
      const result = cachedStatement(this.db, "DELETE FROM blobs WHERE namespace = ? AND digest = ?").run(namespace, digest);
      if (Number(result.changes) === 0) throw notFound(`content digest ${digest}`);
      return cachedStatement(this.db, "SELECT 1 FROM blobs WHERE digest = ? LIMIT 1").get(digest) !== undefined;
    });
    if (stillUsed || this.linking.has(digest)) return { blobRemoved: false };
    rmSync(this.blobPath(digest), { force: true });
    return { blobRemoved: true };
  }

  sharedSize(digest: string): number | undefined {
    try {
      return statSync(this.blobPath(digest)).size;
    } catch {
      return undefined;
    }
  }

  async commit(
    namespace: string,
    digest: string,
    size: number,
    labels: Record<string, string>,
    dataFile?: string,
    lease?: string,
  ): Promise<BlobInfo> {
    const target = this.blobPath(digest);
    // A blob already in the store: synchronous from the check to the row insert, so
    // delete() cannot unlink it in between.
    if (existsSync(target)) {
      if (dataFile) rmSync(dataFile, { force: true });
    } else if (dataFile) {
      // The rename is made durable before a row refers to the blob; meanwhile (the
      // directory fsync runs off the event loop) `linking` keeps delete() off the file.
      const release = this.claim(digest);
      try {
        renameSync(dataFile, target);
        await fsyncDir(this.blobDir);
        return this.insertRow(namespace, digest, size, labels, lease);
      } finally {
        release();
      }
    } else {
      throw notFound(`content ${digest} (removed from the shared store during the ingest)`);
    }
    return this.insertRow(namespace, digest, size, labels, lease);
  }

  /** The row, the namespace and the lease entry in one transaction: a missing lease stores nothing. */
  private insertRow(namespace: string, digest: string, size: number, labels: Record<string, string>, lease?: string): BlobInfo {
    return this.writes.write(namespace, lease, { type: "content", id: digest }, () => {
      if (this.has(namespace, digest)) throw alreadyExists(`content ${digest}`);
      const now = Date.now();
      cachedStatement(this.db, "INSERT INTO blobs (namespace, digest, size, created_at, updated_at, labels) VALUES (?, ?, ?, ?, ?, ?)")
        .run(namespace, digest, size, now, now, JSON.stringify(labels));
      return { digest, size, createdAt: now, updatedAt: now, labels };
    });
  }

  claim(digest: string): () => void {
    this.linking.set(digest, (this.linking.get(digest) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.linking.get(digest) ?? 1) - 1;
      if (left > 0) this.linking.set(digest, left);
      else this.linking.delete(digest);
    };
  }

  sweep(): string[] {
    const used = cachedStatement(this.db, "SELECT 1 FROM blobs WHERE digest = ? LIMIT 1");
    const removed: string[] = [];
    for (const hex of readdirSync(this.blobDir)) {
      const digest = `sha256:${hex}`;
      if (this.linking.has(digest) || used.get(digest)) continue;
      rmSync(join(this.blobDir, hex), { force: true });
      removed.push(digest);
    }
    return removed;
  }
}
