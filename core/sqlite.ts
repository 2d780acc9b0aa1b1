// One SQLite file per service, WAL mode, one transaction per change.
import { DatabaseSync } from "node:sqlite";

export type Database = DatabaseSync;

export function openDatabase(file: string, schema: string): DatabaseSync {
  const db = new DatabaseSync(file);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;");
  db.exec(schema);
  return db;
}

/** Runs fn inside BEGIN IMMEDIATE … COMMIT; any throw rolls everything back. */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}

export function parseLabels(json: unknown): Record<string, string> {
  return typeof json === "string" && json !== "" ? (JSON.parse(json) as Record<string, string>) : {};
}
