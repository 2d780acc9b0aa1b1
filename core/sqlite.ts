// SQLite helpers: WAL mode, one transaction per change (core/metadata-db.ts opens the
// one database every service shares).
//
// synchronous = NORMAL, not FULL. In WAL mode NORMAL writes every commit to the WAL
// before COMMIT returns but fsyncs only at checkpoints, so:
// - a process crash (kill -9, what "crashes lose nothing" means for us, and what the
//   tests do) loses nothing: the committed WAL frames are in the kernel's page cache;
// - a power loss or kernel crash may roll back the last transactions, never corrupt the
//   file; every store already makes its files durable (or sweepable) before a row
//   refers to them, so a lost row leaves at most an orphan that start-up clean-up or a
//   retry handles.
// FULL fsyncs the WAL on every commit, on the event loop (node:sqlite is synchronous):
// measured 0.3 ms per commit on an idle disk, but a commit's fsync queues behind the
// other fsyncs on the disk, and an import makes big ones (every blob is fsynced at
// commit): 5 commits took 10-14 ms while a 19 MiB blob was being fsynced, against
// 0.2 ms with NORMAL. In a 54 MiB import the metadata service's AddResource calls took
// 35-52 ms in all (up to 14 ms each) with FULL, 6-9 ms (at most 1.6 ms) with NORMAL;
// a slow Content/Update is the same wait on its commit.
// containerd's bbolt fsyncs every commit; we trade power-loss durability of the last
// few changes for not stalling every service behind the disk.
import { DatabaseSync } from "node:sqlite";
import { ensurePrivateFile, tightenIfPresent } from "./private-files.ts";

export type Database = DatabaseSync;

export function openDatabase(file: string, schema: string): DatabaseSync {
  // SQLite would create the file 0644; made 0600 first, it gives new -wal and -shm
  // files the database file's mode. Ones left by an older version are tightened.
  ensurePrivateFile(file);
  for (const suffix of ["-wal", "-shm"]) tightenIfPresent(`${file}${suffix}`);
  const db = new DatabaseSync(file);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;");
  db.exec(schema);
  return db;
}

/**
 * Runs fn inside BEGIN IMMEDIATE … COMMIT; any throw rolls everything back. Called
 * inside a transaction already, fn simply joins it (a store method can then be part of
 * a larger atomic change, see NamespacedWrites).
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  if (db.isTransaction) return fn();
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    // SQLite has already rolled back on some errors (a full disk): rolling back again
    // would replace the real cause with "no transaction is active".
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

export function parseLabels(json: unknown): Record<string, string> {
  return typeof json === "string" && json !== "" ? (JSON.parse(json) as Record<string, string>) : {};
}
