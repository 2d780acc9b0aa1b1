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
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from "node:fs";
import { DatabaseSync, type StatementSync } from "node:sqlite";
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

const statements = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

/**
 * `sql` prepared on `db` once, then reused: preparing took ~60 µs of a ~250 µs
 * Content/Info, on every call. Callers must not change its settings (setReadBigInts
 * and the like would reach every other user of the same SQL): such a statement is
 * prepared, and kept, by its owner.
 */
export function cachedStatement(db: DatabaseSync, sql: string): StatementSync {
  let cache = statements.get(db);
  if (!cache) statements.set(db, (cache = new Map()));
  let statement = cache.get(sql);
  if (!statement) cache.set(sql, (statement = db.prepare(sql)));
  return statement;
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

// A full disk must not stop what frees it: a delete appends to the WAL like any write,
// so with no byte left SQLite refuses it ("database or disk is full") and nothing can
// ever be removed through the API. Each database keeps a reserve file beside it; a
// freeing transaction that hits a full disk gives the reserve back and tries again,
// and the reserve is made again once there is room.
const reserveBytes = 4 * 1024 * 1024;
const reserves = new WeakMap<DatabaseSync, string>();
/** Databases whose reserve this process took or could not make: refilled after the next freeing transaction. */
const missingReserves = new WeakSet<DatabaseSync>();

function isDiskFull(err: unknown): boolean {
  return (err as { errcode?: number }).errcode === 13 || /database or disk is full|ENOSPC/.test(String((err as Error)?.message));
}

/** Keeps `file` as the database's reserve: written in full now if there is room (best effort). */
export function keepReserve(db: DatabaseSync, file: string): void {
  reserves.set(db, file);
  refillReserve(db);
}

function refillReserve(db: DatabaseSync): void {
  const file = reserves.get(db);
  if (!file) return;
  let fd: number | undefined;
  try {
    fd = openSync(file, "wx", 0o600);
    // Real blocks (zeros written), not a sparse file, or it would hold no space at all.
    const chunk = Buffer.alloc(1024 * 1024);
    for (let written = 0; written < reserveBytes; written += chunk.length) writeSync(fd, chunk);
    closeSync(fd);
    missingReserves.delete(db);
  } catch (err) {
    if (fd !== undefined) {
      // No room for all of it: none of it, rather than a reserve that reserves less.
      ftruncateSync(fd, 0);
      closeSync(fd);
      rmSync(file, { force: true });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") missingReserves.delete(db);
    else if (code === "ENOSPC") missingReserves.add(db);
    else throw err;
  }
}

/**
 * A transaction that frees space (deletes): on a full disk it takes the reserve's
 * space and tries once more, so deleting works when nothing else does.
 */
export function freeingTransaction<T>(db: DatabaseSync, fn: () => T): T {
  let result: T;
  try {
    result = transaction(db, fn);
  } catch (err) {
    const reserve = reserves.get(db);
    if (db.isTransaction || !reserve || !isDiskFull(err)) throw err;
    rmSync(reserve, { force: true });
    missingReserves.add(db);
    result = transaction(db, fn);
  }
  if (missingReserves.has(db)) refillReserve(db);
  return result;
}

export function parseLabels(json: unknown): Record<string, string> {
  return typeof json === "string" && json !== "" ? (JSON.parse(json) as Record<string, string>) : {};
}
