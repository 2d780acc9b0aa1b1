// Named volumes of the local driver: a directory <root>/volumes/<name>/_data each (what
// containers mount), and a record in the shared metadata database's engine_volumes table
// (labels, options, creation time). Removal first renames the directory into a trash
// name, then drops the record, then deletes the files, so a crash at any point leaves
// neither a record without data nor old data under a name that is created again; trash
// left by a crash is swept when the store opens.
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cachedStatement, openDatabase, transaction, type Database } from "../../../core/sqlite.ts";
import { badRequest, notFoundError } from "../http.ts";

export interface Volume {
  CreatedAt: string;
  Driver: string;
  Labels: Record<string, string> | null;
  Mountpoint: string;
  Name: string;
  Options: Record<string, string> | null;
  Scope: "local";
}

export interface VolumeCreateRequest {
  Name?: string;
  Driver?: string;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

const schema = `
CREATE TABLE IF NOT EXISTS engine_volumes (
  name    TEXT PRIMARY KEY,
  created TEXT NOT NULL,
  record  TEXT NOT NULL
);
`;

/** Docker's rule for local volume names. */
const validName = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const trashPrefix = ".trash-";

/** Docker's 400 for a name the local driver cannot use (a path is the usual mistake). */
export function checkVolumeName(name: string, action = "create"): void {
  if (!validName.test(name)) {
    throw badRequest(
      `${action} ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
    );
  }
}

export const noSuchVolume = (name: string) => notFoundError(`get ${name}: no such volume`);

export class VolumeStore {
  private readonly db: Database;
  readonly dir: string;

  constructor(root: string) {
    this.db = openDatabase(join(root, "metadata.db"), schema);
    this.dir = join(root, "volumes");
    mkdirSync(this.dir, { recursive: true, mode: 0o701 });
    for (const entry of readdirSync(this.dir)) {
      if (entry.startsWith(trashPrefix)) rmSync(join(this.dir, entry), { recursive: true, force: true });
    }
  }

  close(): void {
    this.db.close();
  }

  mountpoint(name: string): string {
    return join(this.dir, name, "_data");
  }

  /**
   * Creates the volume, or returns the one of that name (Docker answers an existing name
   * with the existing volume). An empty name makes an anonymous volume (64 hex digits).
   */
  create(request: VolumeCreateRequest): { volume: Volume; created: boolean } {
    const name = request.Name || randomBytes(32).toString("hex");
    checkVolumeName(name);
    const driver = request.Driver || "local";
    if (driver !== "local") throw notFoundError(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const options = request.DriverOpts && Object.keys(request.DriverOpts).length > 0 ? request.DriverOpts : null;
    if (options) throw badRequest(`create ${name}: the local driver's options (${Object.keys(options).join(", ")}) are not supported by Berth`);
    const existing = this.get(name);
    if (existing) return { volume: existing, created: false };
    const volume: Volume = {
      CreatedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      Driver: driver,
      Labels: request.Labels && Object.keys(request.Labels).length > 0 ? request.Labels : null,
      Mountpoint: this.mountpoint(name),
      Name: name,
      Options: options,
      Scope: "local",
    };
    // A directory with no record is what a crash between these two steps leaves: nothing
    // used it, so it starts afresh.
    rmSync(join(this.dir, name), { recursive: true, force: true });
    mkdirSync(volume.Mountpoint, { recursive: true, mode: 0o755 });
    const won = transaction(this.db, () => {
      if (cachedStatement(this.db, "SELECT 1 FROM engine_volumes WHERE name = ?").get(name)) return false;
      cachedStatement(this.db, "INSERT INTO engine_volumes (name, created, record) VALUES (?, ?, ?)").run(name, volume.CreatedAt, JSON.stringify(volume));
      return true;
    });
    if (!won) return { volume: this.get(name)!, created: false };
    return { volume, created: true };
  }

  get(name: string): Volume | undefined {
    const row = cachedStatement(this.db, "SELECT record FROM engine_volumes WHERE name = ?").get(name) as { record: string } | undefined;
    if (!row) return undefined;
    const volume = JSON.parse(row.record) as Volume;
    // A record whose directory went (a crash mid-remove of an older version, a user's rm -rf) is usable again.
    if (!existsSync(volume.Mountpoint)) mkdirSync(volume.Mountpoint, { recursive: true, mode: 0o755 });
    return volume;
  }

  list(): Volume[] {
    const rows = cachedStatement(this.db, "SELECT record FROM engine_volumes ORDER BY name").all() as { record: string }[];
    return rows.map((row) => JSON.parse(row.record) as Volume);
  }

  /** Removes the volume and its data; returns the bytes freed. Callers check it is unused first. */
  remove(name: string): number {
    const volume = this.get(name);
    if (!volume) throw noSuchVolume(name);
    const data = join(this.dir, name);
    const size = existsSync(data) ? diskUsage(data) : 0;
    const trash = join(this.dir, `${trashPrefix}${randomBytes(8).toString("hex")}`);
    if (existsSync(data)) renameSync(data, trash);
    cachedStatement(this.db, "DELETE FROM engine_volumes WHERE name = ?").run(name);
    rmSync(trash, { recursive: true, force: true });
    return size;
  }
}

/** Bytes used by the files under `path` (not following symlinks). */
export function diskUsage(path: string): number {
  const stat = lstatSync(path);
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const entry of readdirSync(path)) total += diskUsage(join(path, entry));
  return total;
}
